"""Rotated square regions of interest (MediaPipe ``NormalizedRect`` in pixels) and crops through them.

A ROI is a (5,) float array ``cx, cy, w, h, rotation`` in full-frame pixels / radians. ``rotation`` turns the
crop's axes clockwise on screen (y down), as MediaPipe's rects do.
"""
from __future__ import annotations

import cv2
import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80, 80)))


def normalize_radians(angle: float) -> float:
    return float(angle - 2 * np.pi * np.floor((angle + np.pi) / (2 * np.pi)))


def roi_from_alignment_points(centre: np.ndarray, edge: np.ndarray, target_angle_deg: float) -> np.ndarray:
    """MediaPipe ``AlignmentPointsRectsCalculator``: square of side 2*|edge-centre| around ``centre``,
    rotated so the centre->edge vector points at ``target_angle_deg`` (90 = up)."""
    dx, dy = float(edge[0] - centre[0]), float(edge[1] - centre[1])
    size = 2.0 * np.hypot(dx, dy)
    rotation = normalize_radians(np.radians(target_angle_deg) - np.arctan2(-dy, dx))
    return np.array([centre[0], centre[1], size, size, rotation], np.float64)


def roi_from_box(x0: float, y0: float, x1: float, y1: float, rotation: float = 0.0) -> np.ndarray:
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, rotation], np.float64)


def transform_roi(roi: np.ndarray, scale: float = 1.0, shift_y: float = 0.0, square_long: bool = True) -> np.ndarray:
    """MediaPipe ``RectTransformationCalculator``: shift along the ROI's own y axis (fraction of its height),
    make it square on the long side, then scale."""
    cx, cy, w, h, rot = roi
    cx, cy = cx - h * shift_y * np.sin(rot), cy + h * shift_y * np.cos(rot)
    if square_long:
        w = h = max(w, h)
    return np.array([cx, cy, w * scale, h * scale, rot], np.float64)


def crop_to_frame_matrix(roi: np.ndarray, size: int) -> np.ndarray:
    """(2, 3) affine taking crop pixels (of a size x size crop) to frame pixels."""
    cx, cy, w, h, rot = roi
    c, s = np.cos(rot), np.sin(rot)
    linear = np.array([[c, -s], [s, c]]) @ np.diag([w / size, h / size])
    offset = np.array([cx, cy]) - linear @ np.array([size / 2.0, size / 2.0])
    return np.hstack([linear, offset[:, None]])


def crop_matrix(roi: np.ndarray, size: int, flip: bool = False) -> np.ndarray:
    """``crop_to_frame_matrix``, optionally for the crop mirrored left-right."""
    matrix = crop_to_frame_matrix(roi, size)
    if flip:
        matrix = matrix @ np.array([[-1, 0, size], [0, 1, 0], [0, 0, 1]], np.float64)
    return matrix


def crop_roi(image: np.ndarray, roi: np.ndarray, size: int, flip: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 frame -> (size, size, 3) float32 crop in [0, 1] (zero border), optionally mirrored."""
    matrix = crop_matrix(roi, size, flip)
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return crop.astype(np.float32) * (1.0 / 255.0)


def crop_points_to_frame(points: np.ndarray, roi: np.ndarray, size: int) -> np.ndarray:
    """(N, >=2) crop pixels -> (N, 3) frame pixels x, y and relative depth z (crop z scaled like x)."""
    matrix = crop_to_frame_matrix(roi, size)
    xy = points[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    z = points[:, 2] * (roi[2] / size) if points.shape[1] > 2 else np.zeros(len(points))
    return np.column_stack([xy, z])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (N, 4) boxes against (M, 4) boxes (x0, y0, x1, y1) -> (N, M)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
