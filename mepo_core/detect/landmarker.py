"""Multi-person whole-body landmarks: tiled BlazePose detection, per-person pose landmarks tracked from frame
to frame by their ROI (as MediaPipe does for one person), then hands and face from each body."""
from __future__ import annotations

import time
from collections import defaultdict

import numpy as np

from mepo_core.records import FrameRecord, Landmarks, Person

from .face import FaceLandmarker
from .hands import HandLandmarker
from .pose_detector import PoseDetector
from .pose_landmarks import PoseLandmarkModel

WRIST = {"left": 15, "right": 16}


def landmark_box(body_2d: np.ndarray, min_visibility: float = 0.3) -> np.ndarray:
    """(33, 3) -> (4,) box around the body landmarks that are likely visible (all of them if too few)."""
    visible = body_2d[body_2d[:, 2] >= min_visibility]
    points = visible if len(visible) >= 4 else body_2d
    return np.concatenate([points[:, :2].min(0), points[:, :2].max(0)])


def keep_distinct(results: list, boxes: np.ndarray, iou_threshold: float, containment: float = 0.8) -> list[int]:
    """Indices of results left after dropping ROIs that converged on the same person: a landmark box that
    overlaps a kept one (IoU) or lies mostly inside a larger kept one (a "person" fitted to someone's legs).
    Larger, more confident bodies are kept first."""
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) if len(boxes) else np.zeros(0)
    order = sorted(range(len(results)), key=lambda i: (-round(results[i].presence, 2), -area[i]))
    kept: list[int] = []
    for i in order:
        if kept:
            lt = np.maximum(boxes[i, :2], boxes[kept, :2])
            rb = np.minimum(boxes[i, 2:], boxes[kept, 2:])
            inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
            iou = inter / np.maximum(area[i] + area[kept] - inter, 1e-9)
            inside = inter / np.maximum(area[i], 1e-9)
            if iou.max() > iou_threshold or (inside > containment).any():
                continue
        kept.append(i)
    return kept


class WholeBodyLandmarker:
    """Fills ``frame.people`` with ``Person(box, score, landmarks)``.

    Image mode (``still_image=True``) runs the detector on every region (whole frame + zoomed tiles) of every
    frame. Video mode tracks each person's ROI from the previous frame and spreads the detector over frames
    so that no frame pays for the whole tiled pass: the whole frame every ``detect_every`` frames, the next
    ``tiles_per_frame`` zoomed tiles round-robin every ``tile_every`` frames, and one region around each person lost in the
    previous frame. Only the first frame after ``reset()`` runs every region. Detections of people already
    tracked are dropped before the (costly) pose landmark model runs on them.
    ``timings`` holds the last frame's milliseconds per stage."""

    def __init__(self, hands: bool = True, face: bool = True, num_threads: int = 2, max_people: int = 30,
                 detect_every: int = 10, still_image: bool = False, zooms=(1, 2, 3), min_presence: float = 0.5,
                 dedupe_iou: float = 0.4, with_mask: bool = False, max_detection_tilt_deg: float = 100.0,
                 tiles_per_frame: int = 1, tile_every: int = 2, hand_model: str = "full", min_extent: float = 1 / 14,
                 backend: str = "litert"):
        self.detector = PoseDetector(num_threads, zooms=zooms, backend=backend)
        self.body = PoseLandmarkModel(num_threads, with_mask=with_mask, backend=backend)
        self.hands = HandLandmarker(num_threads, model=hand_model, backend=backend) if hands else None
        self.face = FaceLandmarker(num_threads, backend=backend) if face else None
        self.max_people, self.detect_every, self.still_image = max_people, detect_every, still_image
        self.tiles_per_frame = tiles_per_frame
        self.tile_every = max(1, tile_every)   # a tile pass every N frames: small newcomers are found within
                                               # (tiles x N) frames, and no frame pays for more than one tile
        self.min_presence, self.dedupe_iou = min_presence, dedupe_iou
        # People smaller than this fraction of the frame height are dropped: zoomed tiles otherwise turn small
        # objects (wall-mounted cameras, statues) into confident tiny "people". The promise is 1/8 of the height.
        self.min_extent = min_extent
        # New people are assumed roughly upright: tilted detections are mostly limbs seen in zoomed tiles.
        self.max_tilt = np.radians(max_detection_tilt_deg)
        self.timings: dict[str, float] = {}
        self.reset()

    def reset(self) -> None:
        self._tracked_rois: list[np.ndarray] = []
        self._lost_rois: list[np.ndarray] = []
        self._tracked_faces: list[np.ndarray] = []
        self._face_rois: list[np.ndarray] = []   # last frame's face-mesh ROIs (video mode: one mesh pass per face)
        self._prev_hands: list[np.ndarray] = []  # last frame's hand landmarks (video mode: ROI without re-crop)
        self._face_retry, self._hand_retry = RetryBackoff(), RetryBackoff()
        self._frames_since_full = 0
        self._tile_cursor = 0
        self._frame_count = 0
        self._first = True

    def _regions(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """Detector regions for this frame (see the class docstring)."""
        everything = self.detector.regions(height, width)
        if self.still_image or self._first:
            self._first = False
            self._frames_since_full = 1
            return everything
        full = [r for r in everything if r == (0, 0, max(height, width))]
        tiles = [r for r in everything if r not in full]
        regions = []
        if self._frames_since_full >= self.detect_every or not tiles:
            regions += full
            self._frames_since_full = 0
        self._frames_since_full += 1
        self._frame_count += 1
        if self._frame_count % self.tile_every == 0:
            for _ in range(min(self.tiles_per_frame, len(tiles))):
                regions.append(tiles[self._tile_cursor % len(tiles)])
                self._tile_cursor += 1
        for roi in self._lost_rois[:2]:   # re-detect where someone was just lost
            side = int(max(roi[2], 64))
            regions.append((int(roi[0] - side / 2), int(roi[1] - side / 2), side))
        return regions

    def process(self, frame: FrameRecord) -> FrameRecord:
        image = frame.image
        timings: dict[str, float] = defaultdict(float)
        rois = list(self._tracked_rois)
        regions = self._regions(*image.shape[:2])
        if regions:
            start = time.perf_counter()
            found = self.detector.detect(image, regions=regions)
            new = [roi for roi, face in zip(found.rois(), found.boxes) if abs(roi[4]) <= self.max_tilt
                   and not _face_is_tracked(face, self._tracked_faces)]
            rois += new
            timings["detect"] += _ms(start)
            timings["detect_regions"] = len(regions)

        start = time.perf_counter()
        results = [r for r in self.body.estimate_many(image, rois)      # all people's crops in one batch
                   if r.presence >= self.min_presence and _mostly_in_frame(r.landmarks.body_2d, image.shape)
                   and _plausible(r)]
        timings["pose"] += _ms(start)
        boxes = np.array([landmark_box(r.landmarks.body_2d) for r in results]).reshape(-1, 4)
        extent = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        big_enough = extent >= self.min_extent * image.shape[0]
        results, boxes = [r for r, ok in zip(results, big_enough) if ok], boxes[big_enough]
        kept = keep_distinct(results, boxes, self.dedupe_iou)[: self.max_people]
        kept_rois = [results[i].landmarks.roi for i in kept]
        self._lost_rois = [roi for roi in self._tracked_rois
                           if not any(np.allclose(roi, k) for k in kept_rois)]
        self._tracked_rois = [results[i].next_roi for i in kept]
        self._tracked_faces = [_face_box(results[i].landmarks.body_2d) for i in kept]

        people = [results[i].landmarks for i in kept]
        if self.hands is not None:
            start = time.perf_counter()
            self._prev_hands = self._add_hands(image, people)
            timings["hands"] += _ms(start)
        if self.face is not None:
            start = time.perf_counter()
            self._face_rois = self._add_faces(image, people)
            timings["face"] += _ms(start)
        frame.people = [Person(box=boxes[i].astype(np.float32), score=landmarks.body_score, landmarks=landmarks)
                        for i, landmarks in zip(kept, people)]
        self._face_retry.next_frame()
        self._hand_retry.next_frame()
        self.timings = dict(timings)
        return frame

    def _add_faces(self, image: np.ndarray, people: list[Landmarks]) -> list[np.ndarray]:
        """Face mesh + irises for every person due a look (all in batches); returns the meshes' next ROIs."""
        due = [p for p in people if self.still_image or self._face_retry.due(p.body_2d[0, :2])]
        faces = self.face.estimate_many(image, [p.body_2d for p in due],
                                        previous=None if self.still_image else self._face_rois)
        rois = []
        for landmarks, face in zip(due, faces):
            self._face_retry.record(landmarks.body_2d[0, :2], found=face is not None)
            if face is not None:
                rois.append(face.next_roi)
                landmarks.face_3d = face.points
                landmarks.face_2d = np.column_stack([face.points[:, :2], np.full(len(face.points), face.presence)])
        return rois

    def _add_hands(self, image: np.ndarray, people: list[Landmarks]) -> list[np.ndarray]:
        """Both hands of every person, all crops in one batch (a second batch retries, from the body, the hands
        that tracking lost). A hand is kept only if its wrist is nearer its own body wrist than the other one
        (an occluded hand's ROI often slides onto the visible hand) and the model's handedness agrees. Returns
        every hand found (kept or not): the next frame tracks from them."""
        requests, owners = [], []
        for landmarks in people:
            for side in ("left", "right"):
                wrist = landmarks.body_2d[WRIST[side], :2]
                if not self.still_image and not self._hand_retry.due(wrist):
                    continue
                previous = None if self.still_image else _previous_hand(self._prev_hands, wrist)
                requests.append((landmarks.body_2d, side, previous))
                owners.append((landmarks, side))
        hands = self.hands.estimate_many(image, requests)
        lost = [k for k, (hand, request) in enumerate(zip(hands, requests)) if hand is None and request[2] is not None]
        for k, hand in zip(lost, self.hands.estimate_many(image, [requests[k][:2] + (None,) for k in lost])):
            hands[k] = hand                                   # tracking lost it: searched from the body again
        for (landmarks, side), hand in zip(owners, hands):
            body, other = landmarks.body_2d, "right" if side == "left" else "left"
            if not self.still_image:
                self._hand_retry.record(body[WRIST[side], :2], found=hand is not None)
            if hand is None:
                continue
            own = np.linalg.norm(hand.points[0, :2] - body[WRIST[side], :2])
            far = np.linalg.norm(hand.points[0, :2] - body[WRIST[other], :2])
            contradicts = hand.right_prob > 0.9 if side == "left" else hand.right_prob < 0.1
            if own > far or (contradicts and body[WRIST[side], 2] < 0.5):
                continue
            points_2d = np.column_stack([hand.points[:, :2], np.full(21, hand.presence)]).astype(np.float32)
            setattr(landmarks, f"{side}_hand_2d", points_2d)
            setattr(landmarks, f"{side}_hand_3d", hand.points.astype(np.float32))
        return [hand.points for hand in hands if hand is not None]


class RetryBackoff:
    """Video mode: where a face or hand was not found for a while, look again only every ``every`` frames.

    Keyed by image position (a body's nose or wrist) matched to last frame's entries within ``radius`` px: a
    profile or tiny face costs three model runs per frame for nothing, and it rarely becomes findable from
    one frame to the next. After ``misses`` failures in a row the part is retried every ``every`` frames."""

    def __init__(self, misses: int = 3, every: int = 2, radius: float = 60.0):
        self.misses, self.every, self.radius = misses, every, radius
        self._last: list[tuple[np.ndarray, int]] = []     # (position, consecutive misses) of last frame
        self._now: list[tuple[np.ndarray, int]] = []

    def _streak(self, position: np.ndarray) -> int:
        best = min(self._last, key=lambda e: np.linalg.norm(e[0] - position), default=None)
        if best is None or np.linalg.norm(best[0] - position) > self.radius:
            return 0
        return best[1]

    def due(self, position: np.ndarray) -> bool:
        streak = self._streak(position)
        if streak >= self.misses and streak % self.every != 0:
            self._now.append((position, streak + 1))      # skipped: counts as another miss
            return False
        return True

    def record(self, position: np.ndarray, found: bool) -> None:
        self._now.append((position, 0 if found else self._streak(position) + 1))

    def next_frame(self) -> None:
        self._last, self._now = self._now, []


def _previous_hand(hands: list[np.ndarray], wrist: np.ndarray, max_dist: float = 0.5) -> np.ndarray | None:
    """The last frame's hand (21, 3) whose wrist is nearest this body wrist, if within ``max_dist`` x its size."""
    best, best_d = None, np.inf
    for points in hands:
        size = np.linalg.norm(points[9, :2] - points[0, :2]) + 1e-6
        d = np.linalg.norm(points[0, :2] - wrist) / size
        if d < max_dist * 4 and d < best_d:   # size = wrist->middle knuckle, about a quarter of the hand ROI
            best, best_d = points, d
    return best


def _mostly_in_frame(body_2d: np.ndarray, shape, min_visibility: float = 0.5, min_fraction: float = 0.6) -> bool:
    """True when most of the visible landmarks lie inside the frame: a "person" whose visible joints are
    mostly outside it is a fit to texture (flower beds, crowds) seen through a zoomed tile."""
    visible = body_2d[body_2d[:, 2] >= min_visibility]
    if len(visible) < 4:
        return True
    h, w = shape[:2]
    inside = (visible[:, 0] >= 0) & (visible[:, 0] < w) & (visible[:, 1] >= 0) & (visible[:, 1] < h)
    return bool(inside.mean() >= min_fraction)


def _face_box(body_2d: np.ndarray) -> np.ndarray:
    """(33, 3) body landmarks -> (4,) square box around the face points (0-10), at least as wide as the eyes
    to mouth distance x 3 (the detector's face boxes are about that size)."""
    face = body_2d[:11, :2].astype(np.float64)
    centre = face.mean(0)
    eyes, mouth = (face[2] + face[5]) / 2, (face[9] + face[10]) / 2
    half = max(np.ptp(face, axis=0).max() / 2, 1.5 * np.linalg.norm(eyes - mouth), 2.0)
    return np.concatenate([centre - half, centre + half])


def _face_is_tracked(face_box: np.ndarray, tracked_faces: list[np.ndarray]) -> bool:
    """True when a detection's face box centre lies in the face box of a person tracked last frame."""
    centre = (face_box[:2] + face_box[2:]) / 2
    return any((centre >= t[:2]).all() and (centre <= t[2:]).all() for t in tracked_faces)


def _plausible(result, tilt_deg: float = 60.0, min_support: float = 0.9) -> bool:
    """Sideways ROIs (from zoomed tiles) make the pose model hallucinate confident landmarks across the
    background; a body far from upright is kept only when its landmarks lie on its own segmentation."""
    tilt = abs((float(result.landmarks.roi[4]) + np.pi) % (2 * np.pi) - np.pi)
    return tilt <= np.radians(tilt_deg) or result.mask_support >= min_support


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
