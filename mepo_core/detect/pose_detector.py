"""BlazePose person detector (pose_detection.tflite, 224x224) run on the full frame and on overlapping tiles.

The detector's box is around the *face*; its 4 keypoints are mid-hip, a point on the full-body circle,
mid-shoulder and a point on the upper-body circle. A person is found only when the body spans a good part
of the 224 input, so small people need zoomed-in tiles.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .roi import box_iou, roi_from_alignment_points, sigmoid, transform_roi
from mepo_core.engine.backends import load_model

INPUT_SIZE = 224


def ssd_anchor_centres(input_size: int = INPUT_SIZE, strides=(8, 16, 32, 32, 32)) -> np.ndarray:
    """MediaPipe ``SsdAnchorsCalculator`` for the pose detector (fixed anchor size, aspect ratio 1 plus the
    interpolated scale -> 2 anchors per layer; consecutive layers with the same stride share a grid).

    Returns (2254, 2) normalised anchor centres."""
    centres = []
    layer = 0
    while layer < len(strides):
        same = 0
        while layer + same < len(strides) and strides[layer + same] == strides[layer]:
            same += 1
        grid = int(np.ceil(input_size / strides[layer]))
        ys, xs = np.meshgrid((np.arange(grid) + 0.5) / grid, (np.arange(grid) + 0.5) / grid, indexing="ij")
        cell = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell, 2 * same, axis=0))
        layer += same
    return np.concatenate(centres).astype(np.float32)


@dataclass
class PoseDetections:
    """Detections in full-frame pixels: ``boxes`` (N, 4) face boxes x0 y0 x1 y1, ``keypoints`` (N, 4, 2),
    ``scores`` (N,)."""
    boxes: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls) -> "PoseDetections":
        return cls(np.zeros((0, 4)), np.zeros((0, 4, 2)), np.zeros(0))

    @classmethod
    def concatenate(cls, parts: list["PoseDetections"]) -> "PoseDetections":
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("boxes", "keypoints", "scores")))

    def __len__(self) -> int:
        return len(self.scores)

    def rois(self) -> list[np.ndarray]:
        """Body ROIs as MediaPipe's pose_detection_to_roi: centre mid-hip, side 2*|kp1-kp0|*1.25, upright."""
        return [transform_roi(roi_from_alignment_points(k[0], k[1], 90.0), scale=1.25) for k in self.keypoints]


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, min_score: float) -> PoseDetections:
    """(2254, 12) raw regressors + (2254, 1) logits -> detections in 224-input pixels."""
    scores = sigmoid(np.clip(raw_scores[:, 0], -100, 100))
    keep = scores >= min_score
    raw, anchor = raw_boxes[keep], anchors[keep] * INPUT_SIZE
    centre = raw[:, 0:2] + anchor
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = raw[:, 4:12].reshape(-1, 4, 2) + anchor[:, None, :]
    return PoseDetections(boxes, keypoints, scores[keep])


def weighted_nms(dets: PoseDetections, iou_threshold: float = 0.3) -> PoseDetections:
    """MediaPipe's WEIGHTED non-max suppression: each cluster is replaced by the score-weighted mean of its
    boxes and keypoints, keeping the top score."""
    order = np.argsort(-dets.scores)
    boxes, kps, scores = dets.boxes[order], dets.keypoints[order], dets.scores[order]
    remaining = np.ones(len(scores), bool)
    out_b, out_k, out_s = [], [], []
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        cluster = remaining & (box_iou(boxes[i], boxes)[0] > iou_threshold)
        cluster[i] = True
        w = scores[cluster][:, None]
        out_b.append((boxes[cluster] * w).sum(0) / w.sum())
        out_k.append((kps[cluster] * w[:, :, None]).sum(0) / w.sum())
        out_s.append(scores[i])
        remaining &= ~cluster
    if not out_s:
        return PoseDetections.empty()
    return PoseDetections(np.array(out_b), np.array(out_k), np.array(out_s))


def tile_regions(height: int, width: int, zooms=(1, 2, 3), overlap: float = 0.3) -> list[tuple[int, int, int]]:
    """Square regions ``(x0, y0, side)`` covering the frame: zoom 1 is the whole frame (letterboxed),
    zoom z > 1 uses squares of side short_side/z with at least ``overlap`` overlap, zoom z < 1 one centred
    square of side long_side/z (shrinks close-ups whose body circle overflows the frame)."""
    regions = []
    short, long = min(height, width), max(height, width)
    for zoom in zooms:
        if zoom == 1:
            regions.append((0, 0, long))
            continue
        if zoom < 1:
            side = int(round(long / zoom))
            regions.append(((width - side) // 2, (height - side) // 2, side))
            continue
        side = int(round(short / zoom))
        step = side * (1 - overlap)
        for y in _starts(height, side, step):
            for x in _starts(width, side, step):
                regions.append((x, y, side))
    return regions


def _starts(length: int, side: int, step: float) -> list[int]:
    count = max(1, int(np.ceil((length - side) / step)) + 1)
    return [int(round(v)) for v in np.linspace(0, max(length - side, 0), count)]


class PoseDetector:
    """Tiled BlazePose detection.

    ``detect(image)`` with image (H, W, 3) uint8 RGB -> ``PoseDetections`` in frame pixels."""

    def __init__(self, num_threads: int = 2, zooms=(1, 2, 3), min_score: float = 0.5, iou_threshold: float = 0.3,
                 overlap: float = 0.3, backend: str = "litert"):
        self.model = load_model("pose_detection/pose_detection.tflite", backend, num_threads)
        self.anchors = ssd_anchor_centres()
        self.zooms, self.min_score, self.iou_threshold, self.overlap = zooms, min_score, iou_threshold, overlap

    def _region_input(self, image: np.ndarray, side: int, x0: int, y0: int) -> np.ndarray:
        """The detector's input for the square (x0, y0, side) of the frame; parts outside it are black."""
        scale = INPUT_SIZE / side
        to_input = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]])
        crop = cv2.warpAffine(image, to_input, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_AREA if scale < 1
                              else cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return crop.astype(np.float32) * (1 / 127.5) - 1.0

    def _decode(self, raw_boxes, raw_scores, x0: int, y0: int, side: int) -> PoseDetections:
        scale = INPUT_SIZE / side
        dets = decode(raw_boxes, raw_scores, self.anchors, self.min_score)
        dets.boxes = dets.boxes / scale + np.array([x0, y0, x0, y0])
        dets.keypoints = dets.keypoints / scale + np.array([x0, y0])
        return dets

    def regions(self, height: int, width: int, zooms=None) -> list[tuple[int, int, int]]:
        return tile_regions(height, width, self.zooms if zooms is None else zooms, self.overlap)

    def detect(self, image: np.ndarray, zooms=None, regions=None) -> PoseDetections:
        """All regions of ``zooms`` (default: the detector's), or the given ``(x0, y0, side)`` regions; the
        detections of all regions are merged by weighted NMS."""
        if regions is None:
            regions = self.regions(*image.shape[:2], zooms)
        if not regions:
            return PoseDetections.concatenate([])
        raw_boxes, raw_scores = self.model.run_batch(np.stack([self._region_input(image, s, x, y)
                                                               for x, y, s in regions]))   # all tiles, one batch
        found = [self._decode(raw_boxes[i], raw_scores[i], x, y, s) for i, (x, y, s) in enumerate(regions)]
        return weighted_nms(PoseDetections.concatenate(found), self.iou_threshold)
