"""BlazePose GHUM full landmark model (pose_landmark_full.tflite, 256x256) on a rotated body ROI.

Outputs (sorted by name): Identity (195,) = 39 x (x, y, z, visibility logit, presence logit) in crop pixels,
Identity_1 (1,) pose presence logit, Identity_2 (256, 256, 1) segmentation logits,
Identity_3 (64, 64, 39) heatmap, Identity_4 (117,) = 39 x 3 world landmarks (metres, hip-centred).
Landmarks 33 and 34 are auxiliary: they give the next frame's ROI.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mepo_core.records import Landmarks

from .roi import crop_points_to_frame, crop_to_frame_matrix, roi_from_alignment_points, sigmoid, transform_roi
from mepo_core.engine.backends import load_model

NUM_BODY = 33


def refine_from_heatmap(xy_norm: np.ndarray, heatmap: np.ndarray, kernel: int = 7, min_confidence: float = 0.5):
    """MediaPipe ``RefineLandmarksFromHeatmapCalculator``: (33, 2) crop-normalised xy, (64, 64, 39) logits ->
    refined (33, 2), the confidence-weighted mean of the kernel window when its peak is confident."""
    size = heatmap.shape[0]
    out = xy_norm.copy()
    half = kernel // 2
    for i, (x, y) in enumerate(xy_norm):
        col, row = int(x * size), int(y * size)
        if not (0 <= col < size and 0 <= row < size):
            continue
        r0, r1, c0, c1 = max(row - half, 0), min(row + half + 1, size), max(col - half, 0), min(col + half + 1, size)
        conf = sigmoid(heatmap[r0:r1, c0:c1, i])
        if conf.max() < min_confidence or conf.sum() <= 0:
            continue
        rows, cols = np.mgrid[r0:r1, c0:c1]
        out[i] = [(cols * conf).sum() / conf.sum() / size, (rows * conf).sum() / conf.sum() / size]
    return out


def mask_support(xy_crop: np.ndarray, visibility: np.ndarray, seg_logits: np.ndarray) -> float:
    """Mean segmentation probability at the visible landmarks (crop pixels): a real body's landmarks lie on its
    own silhouette; landmarks hallucinated over background (a wrong, e.g. sideways, ROI) mostly do not."""
    size = seg_logits.shape[0]
    idx = np.clip(xy_crop.astype(int), 0, size - 1)
    vis = visibility > 0.5
    if vis.sum() < 4:
        vis = np.ones_like(vis)
    return float(sigmoid(seg_logits[idx[vis, 1], idx[vis, 0]]).mean())


@dataclass
class BodyResult:
    landmarks: Landmarks        # body fields filled, hands/face None
    presence: float
    next_roi: np.ndarray        # (5,) ROI for the next frame from the auxiliary landmarks
    mask_support: float = 1.0   # mean segmentation probability under the visible landmarks (low = not a body)


class PoseLandmarkModel:
    """``estimate_many(image (H, W, 3) uint8 RGB, [roi (5,), ...]) -> [BodyResult, ...]``."""

    def __init__(self, num_threads: int = 2, with_mask: bool = False, refine: bool = True, backend: str = "litert"):
        self.model = load_model("pose_landmark/pose_landmark_full.tflite", backend, num_threads)
        self.size = self.model.input_size
        self.with_mask, self.refine = with_mask, refine

    def estimate_many(self, image: np.ndarray, rois: list[np.ndarray]) -> list[BodyResult]:
        """Every ROI's crop of the frame in one batched model run."""
        if not rois:
            return []
        outputs = self.model.run_crops(image, rois)
        return [self._result(image, roi, *(o[i] for o in outputs)) for i, roi in enumerate(rois)]

    def _result(self, image, roi, raw, presence, segmentation, heatmap, world) -> BodyResult:
        raw = raw.reshape(39, 5).copy()
        if self.refine:
            raw[:NUM_BODY, :2] = refine_from_heatmap(raw[:NUM_BODY, :2] / self.size, heatmap) * self.size
        points = crop_points_to_frame(raw[:, :3], roi, self.size)
        visibility = sigmoid(raw[:, 3])
        cos, sin = np.cos(roi[4]), np.sin(roi[4])
        world = world.reshape(39, 3)[:NUM_BODY]
        world = np.column_stack([cos * world[:, 0] - sin * world[:, 1], sin * world[:, 0] + cos * world[:, 1],
                                 world[:, 2]])
        landmarks = Landmarks(
            body_2d=np.column_stack([points[:NUM_BODY, :2], visibility[:NUM_BODY]]).astype(np.float32),
            body_world=world.astype(np.float32),
            body_score=float(presence[0]),   # already a probability
            heatmap=heatmap,
            mask=self._mask(segmentation[..., 0], roi, image.shape) if self.with_mask else None,
            roi=np.asarray(roi, np.float32))
        next_roi = transform_roi(roi_from_alignment_points(points[33, :2], points[34, :2], 90.0), scale=1.25)
        return BodyResult(landmarks, landmarks.body_score, next_roi,
                          mask_support(raw[:NUM_BODY, :2], visibility[:NUM_BODY], segmentation[..., 0]))

    def _mask(self, logits: np.ndarray, roi: np.ndarray, shape) -> np.ndarray:
        """(256, 256) logits -> (H, W) float32 probability in frame pixels (0 outside the ROI)."""
        matrix = crop_to_frame_matrix(roi, self.size)
        return cv2.warpAffine(sigmoid(logits).astype(np.float32), matrix, (shape[1], shape[0]),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
