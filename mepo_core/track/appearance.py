"""Cheap image cues for tracking: a torso colour histogram per person and a shot-cut detector per frame."""
from __future__ import annotations

import cv2
import numpy as np

TORSO = (11, 12, 23, 24)          # MediaPipe body landmarks: shoulders, hips
HIST_BINS = (8, 3, 3)             # hue x saturation x value: value bins keep black/white/grey clothes apart


def hist_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya (Hellinger) distance of two normalised histograms: 0 same .. 1 disjoint."""
    return float(np.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(a * b))))))


def color_histogram(pixels_rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 RGB -> flattened normalised HSV histogram (72,)."""
    hsv = cv2.cvtColor(np.ascontiguousarray(pixels_rgb), cv2.COLOR_RGB2HSV)
    h = cv2.calcHist([hsv], [0, 1, 2], None, list(HIST_BINS), [0, 180, 0, 256, 0, 256]).reshape(-1)
    return (h / max(float(h.sum()), 1.0)).astype(np.float32)


def torso_histogram(image: np.ndarray, body_2d: np.ndarray, min_visibility: float = 0.5) -> np.ndarray | None:
    """Colour histogram of the inner torso (shoulders to hips, shrunk to stay on the clothes), or None when the
    torso is not seen well enough (occluded, out of frame or too small) to describe the person."""
    pts = body_2d[list(TORSO)]
    if float(pts[:, 2].min()) < min_visibility:
        return None
    x0, x1 = float(pts[:, 0].min()), float(pts[:, 0].max())
    y0, y1 = float(pts[:2, 1].mean()), float(pts[2:, 1].mean())
    if y1 <= y0:
        y0, y1 = y1, y0
    w, h = x1 - x0, y1 - y0
    x0, x1, y0, y1 = x0 + 0.2 * w, x1 - 0.2 * w, y0 + 0.15 * h, y1 - 0.1 * h
    H, W = image.shape[:2]
    xa, xb, ya, yb = max(int(x0), 0), min(int(x1), W), max(int(y0), 0), min(int(y1), H)
    if xb - xa < 4 or yb - ya < 4:
        return None
    crop = image[ya:yb, xa:xb]
    step = max(1, int(max(crop.shape[:2]) // 32))          # ~32 px is plenty for a colour histogram
    return color_histogram(crop[::step, ::step])


class CutDetector:
    """Flags shot changes. A hard cut: colour histogram *and* downscaled pixels both jump from the previous frame
    (two cues so fast pans - pixels change, colours stay - and flicker do not count). A dissolve: the histogram
    drifts far from the one ``window`` frames back (pans stay well below). One cut per ``refractory_s``."""

    def __init__(self, hist_threshold: float = 0.35, pixel_threshold: float = 0.12, drift_threshold: float = 0.45,
                 window: int = 6, refractory_s: float = 1.0):
        self.hist_threshold, self.pixel_threshold, self.drift_threshold = hist_threshold, pixel_threshold, drift_threshold
        self.window, self.refractory_s = window, refractory_s
        self.reset()

    def reset(self) -> None:
        self._hists: list[np.ndarray] = []
        self._gray: np.ndarray | None = None
        self._last_cut = -np.inf
        self.last_scores = (0.0, 0.0, 0.0)

    def update(self, image: np.ndarray, timestamp: float = 0.0) -> bool:
        small = cv2.resize(image, (64, 36), interpolation=cv2.INTER_AREA)
        hist = color_histogram(small)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        prev_gray, self._gray = self._gray, gray
        self._hists = (self._hists + [hist])[-(self.window + 1):]
        if prev_gray is None:
            return False
        self.last_scores = (hist_distance(hist, self._hists[-2]), float(np.abs(gray - prev_gray).mean()),
                            hist_distance(hist, self._hists[0]))
        hard = self.last_scores[0] > self.hist_threshold and self.last_scores[1] > self.pixel_threshold
        cut = (hard or self.last_scores[2] > self.drift_threshold) and timestamp - self._last_cut > self.refractory_s
        if cut:
            self._last_cut = timestamp
        return cut
