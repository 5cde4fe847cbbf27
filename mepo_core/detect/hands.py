"""Hands of one person from their body landmarks, as MediaPipe Holistic does.

ROI from the body's wrist / pinky / index landmarks (HandDetectionsFromPoseToRects, x2.7, shifted -0.1),
optionally refined by hand_recrop.tflite (256x256 -> 2 alignment points), then hand_landmark_full.tflite
(224x224). Hand model outputs (sorted by name): Identity (63,) = 21 x (x, y, z) crop pixels,
Identity_1 (1,) presence, Identity_2 (1,) handedness (probability of a right hand), Identity_3 (63,) world.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .roi import crop_points_to_frame, roi_from_alignment_points, transform_roi
from mepo_core.engine.backends import load_model

# BlazePose indices of (wrist, pinky, index) per side of the person.
BODY_HAND_POINTS = {"left": (15, 17, 19), "right": (16, 18, 20)}


def hand_roi_from_body(body_2d: np.ndarray, side: str) -> np.ndarray:
    """(33, 3) body landmarks -> (5,) hand search ROI: centre at the estimated middle-finger knuckle."""
    wrist, pinky, index = (body_2d[i, :2].astype(np.float64) for i in BODY_HAND_POINTS[side])
    middle = (2.0 * index + pinky) / 3.0
    roi = roi_from_alignment_points(middle, 2.0 * middle - wrist, 90.0)   # side 2*|middle - wrist|
    return transform_roi(roi, scale=2.7, shift_y=-0.1)


# Hand landmarks MediaPipe uses for the next frame's ROI (wrist, thumb base, finger bases and first joints).
ROI_POINTS = [0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18]


def hand_roi_from_landmarks(points: np.ndarray) -> np.ndarray:
    """(21, >=2) hand landmarks in frame pixels -> (5,) ROI for the next frame, as MediaPipe's
    HandLandmarksToRectCalculator + RectTransformation (upright wrist->middle knuckle, box x2.0, shift -0.1)."""
    roi = roi_from_alignment_points(points[0, :2], points[9, :2], 90.0)
    c, s_ = np.cos(roi[4]), np.sin(roi[4])
    rot = np.array([[c, -s_], [s_, c]])
    local = (points[ROI_POINTS, :2] - points[0, :2]) @ rot
    lo, hi = local.min(0), local.max(0)
    centre = points[0, :2] + rot @ ((lo + hi) / 2)
    side = float(max(hi - lo))
    return transform_roi(np.array([centre[0], centre[1], side, side, roi[4]]), scale=2.0, shift_y=-0.1)


@dataclass
class HandResult:
    points: np.ndarray    # (21, 3) x, y frame pixels + relative z pixels
    presence: float
    right_prob: float     # the model's probability that this is a right hand
    roi: np.ndarray


class HandLandmarker:
    """``estimate_many(image, [(body_2d, side, previous), ...]) -> [HandResult | None, ...]`` for side in
    {"left", "right"} (the person's)."""

    def __init__(self, num_threads: int = 2, recrop: bool = True, min_presence: float = 0.5,
                 min_wrist_visibility: float = 0.1, model: str = "full", min_search_px: float = 40.0,
                 backend: str = "litert"):
        """``model``: "full" or "lite" (hand_landmark_lite.tflite: ~4 vs ~7.5 ms, but on 32 real hands its
        presence agreed with full in only 62% and its points moved by 4.6% (median) of the hand size)."""
        self.model = load_model(f"hand_landmark/hand_landmark_{model}.tflite", backend, num_threads)
        self.recrop = load_model("holistic_landmark/hand_recrop.tflite", backend, num_threads) if recrop else None
        self.min_presence, self.min_wrist_visibility = min_presence, min_wrist_visibility
        # A search ROI under ~40 px holds a hand ~15 px across: measured on the shared clips at 640x480 the model
        # found 4 hands in 131 such attempts, so they are skipped (about half of all hand runs there).
        self.min_search_px = min_search_px

    def _recropped(self, image: np.ndarray, search_rois: list[np.ndarray]) -> list[np.ndarray]:
        """Body-derived search ROIs -> hand ROIs from the re-crop model (all in one batch)."""
        if self.recrop is None:   # without the re-crop model: a tighter box around the pose-estimated hand
            return [transform_roi(roi, scale=0.75) for roi in search_rois]
        if not search_rois:
            return []
        size = self.recrop.input_size
        (points,) = self.recrop.run_crops(image, search_rois)
        rois = []
        for roi, p in zip(search_rois, points):
            centre, edge = crop_points_to_frame(p.reshape(2, 2), roi, size)[:, :2]
            rois.append(transform_roi(roi_from_alignment_points(centre, edge, -90.0), shift_y=-0.1))
        return rois

    def estimate_many(self, image: np.ndarray, requests: list[tuple]) -> list[HandResult | None]:
        """One result per (body_2d, side, previous) request, each model's crops in one batch. None without
        running a model when the wrist is hidden or the hand's search ROI is mostly outside the frame (as
        MediaPipe Holistic skips hands whose ROI is off-screen). ``previous`` (21, 3): this hand's landmarks in
        the last frame; its ROI replaces the body-derived one + re-crop model (video tracking)."""
        searches = {}
        for i, (body_2d, side, previous) in enumerate(requests):
            if body_2d[BODY_HAND_POINTS[side][0], 2] < self.min_wrist_visibility:
                continue
            search = hand_roi_from_body(body_2d, side)
            if search[2] >= self.min_search_px and _centre_in_frame(search, image.shape, margin=0.25):
                searches[i] = search
        rois = {i: hand_roi_from_landmarks(requests[i][2]) for i in searches if requests[i][2] is not None}
        fresh = [i for i in searches if requests[i][2] is None]
        rois.update(zip(fresh, self._recropped(image, [searches[i] for i in fresh])))
        rois = {i: roi for i, roi in sorted(rois.items())
                if roi[2] >= 4 and _centre_in_frame(roi, image.shape, margin=0.25)}
        results: list[HandResult | None] = [None] * len(requests)
        if not rois:
            return results
        size = self.model.input_size
        raw, presence, handedness, _world = self.model.run_crops(image, list(rois.values()))
        for k, (i, roi) in enumerate(rois.items()):
            if presence[k, 0] >= self.min_presence:
                points = crop_points_to_frame(raw[k].reshape(21, 3), roi, size)
                results[i] = HandResult(points, float(presence[k, 0]), float(handedness[k, 0]), roi)
        return results


def _centre_in_frame(roi: np.ndarray, shape, margin: float) -> bool:
    """True when the ROI's centre is inside the frame grown by ``margin`` x the ROI's side."""
    pad = margin * roi[2]
    return bool(-pad <= roi[0] <= shape[1] + pad and -pad <= roi[1] <= shape[0] + pad)
