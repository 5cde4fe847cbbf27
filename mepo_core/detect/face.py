"""Face mesh of one person from their body's face landmarks.

``face_landmark_with_attention.tflite`` needs MediaPipe's custom ops (Landmarks2TransformMatrix, ...), which
LiteRT's Python interpreter cannot register, so the 478 points are built the pre-attention way:
face_landmark.tflite (192x192 -> 468 x (x, y, z) crop pixels + presence logit) plus iris_landmark.tflite
(64x64 eye crop -> output_iris (15,) = 5 x (x, y, z), output_eyes_contours_and_brows (213,)) for each eye, giving 468 + 5 + 5 points.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .roi import crop_points_to_frame, crop_roi, roi_from_alignment_points, sigmoid, transform_roi
from .tflite import TfliteModel

# BlazePose face indices.
NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR, MOUTH_LEFT, MOUTH_RIGHT = 0, 2, 5, 7, 8, 9, 10
# Face-mesh eye corners: (outer, inner) of the eye on the image left (person's right), then the other one.
EYE_CORNERS = ((33, 133), (362, 263))
FACE_ROI_SCALE = 1.5     # face mesh expects its ROI ~1.5x the face box (MediaPipe face_landmark_landmarks_to_roi)


def face_roi_from_body(body_2d: np.ndarray) -> np.ndarray:
    """(33, 3) body landmarks -> (5,) square face ROI, upright along the mouth->eyes direction."""
    p = body_2d[:, :2].astype(np.float64)
    eyes = (p[LEFT_EYE] + p[RIGHT_EYE]) / 2
    mouth = (p[MOUTH_LEFT] + p[MOUTH_RIGHT]) / 2
    centre = (eyes + mouth) / 2
    roi = roi_from_alignment_points(centre, centre + (eyes - mouth), 90.0)
    # Generous on purpose: the mesh found in it gives the tight ROI for the second pass.
    width = max(1.2 * np.linalg.norm(p[LEFT_EAR] - p[RIGHT_EAR]), 3.5 * np.linalg.norm(eyes - mouth))
    roi[2:4] = width
    return transform_roi(roi, scale=FACE_ROI_SCALE)


def face_roi_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """(468, >=2) face mesh in frame pixels -> (5,) ROI as MediaPipe's face_landmark_landmarks_to_roi."""
    centre = mesh[:, :2].mean(0)
    rotation_roi = roi_from_alignment_points(mesh[EYE_CORNERS[0][0], :2], mesh[EYE_CORNERS[1][1], :2], 0.0)
    c, s = np.cos(rotation_roi[4]), np.sin(rotation_roi[4])
    local = (mesh[:, :2] - centre) @ np.array([[c, -s], [s, c]])
    lo, hi = local.min(0), local.max(0)
    mid = centre + np.array([[c, -s], [s, c]]) @ ((lo + hi) / 2)
    return transform_roi(np.array([mid[0], mid[1], *(hi - lo), rotation_roi[4]]), scale=FACE_ROI_SCALE)


@dataclass
class FaceResult:
    points: np.ndarray   # (478, 3) x, y frame pixels + relative z pixels
    presence: float
    roi: np.ndarray


class FaceLandmarker:
    """``estimate(image, body_2d) -> FaceResult | None``."""

    def __init__(self, num_threads: int = 2, iris: bool = True, min_presence: float = 0.5):
        self.model = TfliteModel("face_landmark/face_landmark.tflite", num_threads)
        self.iris = TfliteModel("iris_landmark/iris_landmark.tflite", num_threads) if iris else None
        self.min_presence = min_presence

    def estimate(self, image: np.ndarray, body_2d: np.ndarray) -> FaceResult | None:
        """Mesh in the ROI from the body, then again in the ROI from that mesh (as MediaPipe tracks faces)."""
        roi = face_roi_from_body(body_2d)
        if roi[2] < 8:
            return None
        mesh, score = self._mesh(image, roi)
        roi = face_roi_from_mesh(mesh)
        mesh, score = self._mesh(image, roi)
        if score < self.min_presence:
            return None
        irises = [self._iris(image, mesh, corners, flip=i == 1) for i, corners in enumerate(EYE_CORNERS)]
        return FaceResult(np.concatenate([mesh, *irises]).astype(np.float32), score, roi)

    def _mesh(self, image: np.ndarray, roi: np.ndarray) -> tuple[np.ndarray, float]:
        """(468, 3) frame pixels + presence."""
        size = self.model.input_size
        raw, presence = self.model.run(crop_roi(image, roi, size))
        return crop_points_to_frame(raw.reshape(468, 3), roi, size), float(sigmoid(presence.ravel()[0]))

    def _iris(self, image: np.ndarray, mesh: np.ndarray, corners: tuple[int, int], flip: bool) -> np.ndarray:
        """(5, 3) iris centre + 4 rim points; without the iris model, the eye-corner midpoint repeated."""
        a, b = mesh[corners[0]], mesh[corners[1]]
        if self.iris is None:
            return np.repeat(((a + b) / 2)[None], 5, axis=0)
        centre = (a[:2] + b[:2]) / 2
        roi = transform_roi(roi_from_alignment_points(centre, b[:2], 0.0), scale=2.3 / 2)
        size = self.iris.input_size
        iris = min(self.iris.run(crop_roi(image, roi, size, flip=flip)), key=len)   # (15,); the other is (213,)
        iris = iris.reshape(5, 3).copy()
        if flip:
            iris[:, 0] = size - iris[:, 0]
        points = crop_points_to_frame(iris, roi, size)
        points[:, 2] += (a[2] + b[2]) / 2   # iris depth is relative to the eye, put it on the mesh's scale
        return points
