"""Face mesh of one person from their body's face landmarks.

``face_landmark_with_attention.tflite`` needs MediaPipe's custom ops (Landmarks2TransformMatrix, ...), which
LiteRT's Python interpreter cannot register, so the 478 points are built the pre-attention way:
face_landmark.tflite (192x192 -> 468 x (x, y, z) crop pixels + presence logit) plus iris_landmark.tflite
(64x64 eye crop -> output_iris (15,) = 5 x (x, y, z), output_eyes_contours_and_brows (213,)) for each eye, giving 468 + 5 + 5 points.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .roi import crop_points_to_frame, crop_roi, crop_to_frame_matrix, roi_from_alignment_points, sigmoid, transform_roi
from mepo_core.engine.backends import load_model

# BlazePose face indices.
NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR, MOUTH_LEFT, MOUTH_RIGHT = 0, 2, 5, 7, 8, 9, 10
# Face-mesh eye corners: (outer, inner) of the eye on the image left (person's right), then the other one.
EYE_CORNERS = ((33, 133), (362, 263))
FACE_ROI_SCALE = 1.5     # face mesh expects its ROI ~1.5x the face box (MediaPipe face_landmark_landmarks_to_roi)
# Face-mesh points compared with the body's face points: nose tip, eye centres (person's left, right), mouth
# corners (person's left, right), as the BlazePose indices NOSE, LEFT_EYE, RIGHT_EYE, MOUTH_LEFT, MOUTH_RIGHT.
MESH_NOSE, MESH_LEFT_EYE, MESH_RIGHT_EYE, MESH_MOUTH_LEFT, MESH_MOUTH_RIGHT = 1, (362, 263), (33, 133), 291, 61


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


def short_range_anchors(size: int = 128) -> np.ndarray:
    """(896, 2) anchor centres in input pixels of face_detection_short_range.tflite (MediaPipe SsdAnchorsCalculator:
    strides 8, 16, 16, 16, fixed anchor size, 2 anchors per layer, layers of one stride share a grid)."""
    centres = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = size // stride
        yx = (np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2) + 0.5) * stride
        centres.append(np.repeat(yx[:, ::-1], per_cell, axis=0))
    return np.concatenate(centres).astype(np.float64)


class FaceDetector:
    """face_detection_short_range.tflite on a crop (input in [-1, 1]) -> best face: (4,) box x0, y0, x1, y1 and
    (6, 2) keypoints (person's right eye, left eye, nose, mouth, right ear, left ear) in crop pixels, score."""

    def __init__(self, num_threads: int = 2, backend: str = "litert"):
        self.model = load_model("face_detection/face_detection_short_range.tflite", backend, num_threads)
        self.size = self.model.input_size
        self.anchors = short_range_anchors(self.size)

    def detect(self, crop01: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        raw, scores = self.model.run(crop01 * 2.0 - 1.0)     # regressors (896, 16), classificators (896, 1)
        scores = sigmoid(np.clip(scores[:, 0], -100, 100))
        best = int(np.argmax(scores))
        # Weighted average of the overlapping candidates, as MediaPipe's weighted NMS does for the top one.
        r = raw.astype(np.float64)
        centre = r[:, :2] + self.anchors
        boxes = np.concatenate([centre - r[:, 2:4] / 2, centre + r[:, 2:4] / 2], 1)
        keypoints = r[:, 4:16].reshape(-1, 6, 2) + self.anchors[:, None]
        # Head crops of people in groups hold their neighbours' faces too: of the confident faces, the one
        # nearest the crop centre (where the body puts this person's face).
        confident = np.flatnonzero(scores >= 0.5)
        if len(confident):
            best = int(confident[np.argmin(np.linalg.norm(centre[confident] - self.size / 2, axis=1))])
        lt, rb = np.maximum(boxes[:, :2], boxes[best, :2]), np.minimum(boxes[:, 2:], boxes[best, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), 1)
        area = np.prod(boxes[:, 2:] - boxes[:, :2], 1)
        group = (inter / np.maximum(area + area[best] - inter, 1e-9) > 0.3) & (scores > 0.1)
        group[best] = True
        w = scores[group] / scores[group].sum()
        return (w @ boxes[group]), np.einsum("n,nkd->kd", w, keypoints[group]), float(scores[best])


@dataclass
class FaceResult:
    points: np.ndarray   # (478, 3) x, y frame pixels + relative z pixels
    presence: float
    roi: np.ndarray      # the ROI the mesh was found in
    next_roi: np.ndarray | None = None   # ROI from this mesh, to track the face into the next frame
    detection: float = 0.0               # face-detector score on the head crop (0 when it did not run)


def head_crop_roi(body_2d: np.ndarray, scale: float = 6.0) -> np.ndarray:
    """(5,) square crop around the head for the face detector: ``scale`` x the eyes-mouth distance (or 0.35 x
    the ear distance, whichever is larger), centred between eyes and mouth, upright along mouth->eyes."""
    p = body_2d[:, :2].astype(np.float64)
    eyes, mouth = (p[LEFT_EYE] + p[RIGHT_EYE]) / 2, (p[MOUTH_LEFT] + p[MOUTH_RIGHT]) / 2
    side = scale * max(np.linalg.norm(eyes - mouth), 0.35 * np.linalg.norm(p[LEFT_EAR] - p[RIGHT_EAR]), 2.0)
    rotation = roi_from_alignment_points((eyes + mouth) / 2, eyes + (eyes - mouth), 90.0)[4]
    return np.array([*((eyes + mouth) / 2), side, side, rotation])


def mesh_keypoints(mesh: np.ndarray) -> np.ndarray:
    """(4, 2) person's right eye, left eye, nose tip, mouth centre of a (468, >=2) mesh (the detector's order)."""
    return np.array([mesh[list(MESH_RIGHT_EYE), :2].mean(0), mesh[list(MESH_LEFT_EYE), :2].mean(0),
                     mesh[MESH_NOSE, :2], mesh[[13, 14], :2].mean(0)])


class FaceLandmarker:
    """``estimate_many(image, [body_2d, ...], previous=None) -> [FaceResult | None, ...]``.

    The face ROI comes, in order of preference, from the previous frame's mesh of this face (``previous``: the
    ``next_roi`` of last frame's results; one mesh pass), from face_detection_short_range.tflite run on a head
    crop placed by the body's face landmarks (as MediaPipe's face pipeline gets it from its detector), or from
    the body's face landmarks alone (two passes). The mesh model's presence is low (0.001-0.3) on faces in
    profile, looking down or small and blurred, even when its points sit on the face; such a mesh is kept when
    the detector found a face there (``min_detection``) and the mesh's eyes/nose/mouth agree with the
    detector's keypoints within ``max_disagreement`` x the face-box size, down to ``low_presence``."""

    def __init__(self, num_threads: int = 2, iris: bool = True, min_presence: float = 0.5,
                 detector: bool = True, low_presence: float = 0.02, min_detection: float = 0.6,
                 max_disagreement: float = 0.15, backend: str = "litert"):
        self.model = load_model("face_landmark/face_landmark.tflite", backend, num_threads)
        self.iris = load_model("iris_landmark/iris_landmark.tflite", backend, num_threads) if iris else None
        self.detector = FaceDetector(num_threads, backend) if detector else None
        self.min_presence, self.low_presence = min_presence, low_presence
        self.min_detection, self.max_disagreement = min_detection, max_disagreement

    def estimate_many(self, image: np.ndarray, bodies: list[np.ndarray], previous: list[np.ndarray] | None = None
                      ) -> list[FaceResult | None]:
        """One result per body of a frame: the tracked faces' meshes in one batch, then the detector / body
        fallbacks one face at a time for the rest, then all irises in one batch."""
        heads = [head_crop_roi(body) for body in bodies]
        tracked = {i: roi for i, head in enumerate(heads) if head[2] >= 12
                   and (roi := self._tracked_roi(head, previous)) is not None}
        found = dict.fromkeys(range(len(bodies)))
        if tracked:
            for i, (mesh, score), roi in zip(tracked, self._meshes(image, list(tracked.values())), tracked.values()):
                if score >= self.min_presence:
                    found[i] = (mesh, score, roi, 0.0)
        for i, (body, head) in enumerate(zip(bodies, heads)):
            if found[i] is None and head[2] >= 12:
                found[i] = self._detect(image, head) or self._from_body(image, body)
        done = [i for i in found if found[i] is not None]
        irises = self._irises(image, [found[i][0] for i in done])
        results = [None] * len(bodies)
        for i, (left, right) in zip(done, irises):
            mesh, score, roi, detection = found[i]
            results[i] = FaceResult(np.concatenate([mesh, left, right]).astype(np.float32), score, roi,
                                    face_roi_from_mesh(mesh), detection)
        return results

    @staticmethod
    def _tracked_roi(head, previous):
        """Last frame's mesh ROI nearest this head (within half that ROI's side), if it is this face's."""
        if not previous:
            return None
        distance = [np.linalg.norm(r[:2] - head[:2]) / max(r[2], 1e-9) for r in previous]
        roi = previous[int(np.argmin(distance))]
        if min(distance) > 0.5 or not 0.3 < roi[2] / head[2] < 1.5:   # lost, or a face of another size
            return None
        return roi

    def _detect(self, image, head):
        """ROI from the face detector on the head crop (rotation from its eye keypoints, box x 1.5)."""
        if self.detector is None:
            return None
        size = self.detector.size
        box, keypoints, detection = self.detector.detect(crop_roi(image, head, size))
        if detection < 0.5:
            return None
        matrix = crop_to_frame_matrix(head, size)
        keypoints = keypoints @ matrix[:2, :2].T + matrix[:, 2]
        centre = matrix[:2, :2] @ ((box[:2] + box[2:]) / 2) + matrix[:, 2]
        side = float(np.max(box[2:] - box[:2])) * head[2] / size
        if np.linalg.norm(centre - head[:2]) > 0.5 * side + head[2] / 12:   # someone else's face
            return None
        rotation = roi_from_alignment_points(keypoints[0], keypoints[1], 0.0)[4]
        roi = np.array([centre[0], centre[1], side * FACE_ROI_SCALE, side * FACE_ROI_SCALE, rotation])
        mesh, score = self._mesh(image, roi)
        if self.low_presence <= score < self.min_presence:   # a second look in the mesh's own ROI
            roi2 = face_roi_from_mesh(mesh)
            mesh2, score2 = self._mesh(image, roi2)
            if score2 > score:
                mesh, score, roi = mesh2, score2, roi2
        if score >= self.min_presence:
            return mesh, score, roi, detection
        disagreement = np.linalg.norm(mesh_keypoints(mesh) - keypoints[:4], axis=1).max() / max(side, 1e-9)
        if score >= self.low_presence and detection >= self.min_detection and disagreement <= self.max_disagreement:
            return mesh, score, roi, detection
        return None

    def _from_body(self, image, body_2d):
        """Mesh in the ROI from the body, then again in the ROI from that mesh (as MediaPipe tracks faces)."""
        roi = face_roi_from_body(body_2d)
        mesh, score = self._mesh(image, roi)
        roi = face_roi_from_mesh(mesh)
        mesh, score = self._mesh(image, roi)
        return (mesh, score, roi, 0.0) if score >= self.min_presence else None

    def _mesh(self, image: np.ndarray, roi: np.ndarray) -> tuple[np.ndarray, float]:
        """(468, 3) frame pixels + presence."""
        return self._meshes(image, [roi])[0]

    def _meshes(self, image: np.ndarray, rois: list[np.ndarray]) -> list[tuple[np.ndarray, float]]:
        size = self.model.input_size
        raw, presence = self.model.run_crops(image, rois)
        return [(crop_points_to_frame(r.reshape(468, 3), roi, size), float(sigmoid(p.ravel()[0])))
                for r, p, roi in zip(raw, presence, rois)]

    def _irises(self, image: np.ndarray, meshes: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each mesh's two (5, 3) irises (centre + 4 rim points; right eyes mirrored), all eyes in one batch;
        without the iris model, the eye-corner midpoint repeated."""
        corners = [(mesh[i], mesh[j]) for mesh in meshes for i, j in EYE_CORNERS]
        if self.iris is None:
            points = [np.repeat(((a + b) / 2)[None], 5, axis=0) for a, b in corners]
            return list(zip(points[0::2], points[1::2]))
        if not corners:
            return []
        size = self.iris.input_size
        rois = [transform_roi(roi_from_alignment_points((a[:2] + b[:2]) / 2, b[:2], 0.0), scale=2.3 / 2)
                for a, b in corners]
        flips = [k % 2 == 1 for k in range(len(rois))]
        outputs = self.iris.run_crops(image, rois, flips=flips)
        irises = min(outputs, key=lambda o: o.shape[1])          # (2N, 15); the other output is (2N, 213)
        points = []
        for k, ((a, b), roi) in enumerate(zip(corners, rois)):
            iris = irises[k].reshape(5, 3).copy()
            if flips[k]:
                iris[:, 0] = size - iris[:, 0]
            p = crop_points_to_frame(iris, roi, size)
            p[:, 2] += (a[2] + b[2]) / 2   # iris depth is relative to the eye, put it on the mesh's scale
            points.append(p)
        return list(zip(points[0::2], points[1::2]))
