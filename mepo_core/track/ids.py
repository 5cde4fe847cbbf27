"""Per-person IDs across frames, and one body shape per ID.

``IdTracker`` solves one global assignment (Hungarian) per frame between tracks and detections with a cost that
mixes 2D box overlap, 2D centre distance against a constant-velocity prediction, 3D position (metric depth from
the body landmarks' own scale) and a torso colour histogram. Tracks that are not seen survive ``max_missing_s``
seconds (short full occlusions); a lost track is taken back only when appearance agrees and no other lost track
is about as good (unambiguous re-entry); anything else starts a new ID. A hard cut (``CutDetector``) closes
every track, so IDs never continue across shots.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..detect.roi import box_iou
from ..records import FrameRecord
from .appearance import CutDetector, hist_distance, torso_histogram

SHOULDERS, HIPS = (11, 12), (23, 24)
INF = 1e6


def landmark_position3d(body_2d: np.ndarray, body_world: np.ndarray, camera) -> np.ndarray | None:
    """Camera-space hip centre (metres) from one person's landmarks: depth = focal * metric torso length /
    pixel torso length (MediaPipe's world landmarks are metric), then back-projected through the hip pixel.
    Cheap and available before estimation, so the tracker can use 3D position without waiting for the fit."""
    idx = list(SHOULDERS + HIPS)
    if body_world is None or float(body_2d[idx, 2].min()) < 0.3:
        return None
    mid = lambda a, s: 0.5 * (a[s[0]] + a[s[1]])
    px = np.linalg.norm(mid(body_2d[:, :2], SHOULDERS) - mid(body_2d[:, :2], HIPS))
    metric = np.linalg.norm(mid(body_world, SHOULDERS) - mid(body_world, HIPS))
    if px < 4 or metric < 0.1:
        return None
    z = camera.fx * metric / px
    u, v = mid(body_2d[:, :2], HIPS)
    return np.array([(u - camera.cx) * z / camera.fx, (v - camera.cy) * z / camera.fy, z], np.float32)


@dataclass
class Detection:
    box: np.ndarray
    pos3d: np.ndarray | None
    hist: np.ndarray | None


@dataclass
class Track:
    track_id: int
    box: np.ndarray
    last_time: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))   # box px / second
    pos3d: np.ndarray | None = None
    vel3d: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))      # m / second
    hist: np.ndarray | None = None
    hits: int = 1
    missing_frames: int = 0

    def predict_box(self, t: float, horizon: float) -> np.ndarray:
        return self.box + self.velocity * min(t - self.last_time, horizon)

    def predict_pos3d(self, t: float, horizon: float) -> np.ndarray | None:
        return None if self.pos3d is None else self.pos3d + self.vel3d * min(t - self.last_time, horizon)


class IdTracker:
    """Gives every person a ``track_id`` (see the module docstring). ``closed`` lists IDs whose tracks ended."""

    def __init__(self, max_missing_s: float = 2.0, max_cost: float = 0.75, reentry_appearance: float = 0.3,
                 reentry_margin: float = 0.1, detect_cuts: bool = True):
        self.max_missing_s, self.max_cost = max_missing_s, max_cost
        self.reentry_appearance, self.reentry_margin = reentry_appearance, reentry_margin
        self.cuts = CutDetector() if detect_cuts else None
        self.reset()

    def reset(self) -> None:
        self.tracks: list[Track] = []
        self.closed: list[int] = []
        self.next_id = 0
        self.cut_frames: list[int] = []
        if self.cuts:
            self.cuts.reset()

    def detect_cut(self, frame: FrameRecord) -> bool:
        """Call once per frame (before ``update``); a cut closes every open track."""
        if not self.is_cut(frame):
            return False
        self.close_for_cut(frame)
        return True

    def is_cut(self, frame: FrameRecord) -> bool:
        """Only the shot-cut test (touches no track), so it can run a frame ahead of ``update``."""
        return self.cuts is not None and self.cuts.update(frame.image, frame.timestamp)

    def close_for_cut(self, frame: FrameRecord) -> None:
        self.cut_frames.append(frame.index)
        self.closed += [t.track_id for t in self.tracks]
        self.tracks = []

    def update(self, frame: FrameRecord) -> FrameRecord:
        people, t = frame.people, frame.timestamp
        dets = [self._detection(frame, p) for p in people]
        crowded = _overlapping(np.array([d.box for d in dets], np.float32).reshape(-1, 4))
        assigned = self._assign(dets, t, crowded) if dets and self.tracks else {}
        for i, (person, det) in enumerate(zip(people, dets)):
            if i in assigned:
                track = self.tracks[assigned[i]]
                self._refresh(track, det, t, learn_appearance=not crowded[i])
            else:
                track = Track(self.next_id, det.box, t, pos3d=det.pos3d, hist=det.hist)
                self.next_id += 1
                self.tracks.append(track)
            person.track_id = track.track_id
        seen = {p.track_id for p in people}
        alive = []
        for track in self.tracks:
            if track.track_id not in seen:
                track.missing_frames += 1
            if t - track.last_time <= self.max_missing_s:
                alive.append(track)
            else:
                self.closed.append(track.track_id)
        self.tracks = alive
        return frame

    # -- internals -------------------------------------------------------------------------------------------
    @staticmethod
    def _detection(frame: FrameRecord, person) -> Detection:
        lm = person.landmarks
        if lm is None:
            return Detection(np.asarray(person.box, np.float32), None, None)
        return Detection(np.asarray(person.box, np.float32),
                         landmark_position3d(lm.body_2d, lm.body_world, frame.camera),
                         torso_histogram(frame.image, lm.body_2d))

    def _assign(self, dets: list[Detection], t: float, crowded: np.ndarray) -> dict[int, int]:
        """detection index -> track index (``crowded``: detections overlapping another one)."""
        cost, app = self._cost(dets, t, crowded)
        rows, cols = linear_sum_assignment(cost)
        out = {}
        for r, c in zip(rows, cols):
            if cost[r, c] >= self.max_cost:
                continue
            track = self.tracks[r]
            if track.missing_frames > 0 and t - track.last_time > 0.25 and not self._reentry_ok(cost, app, r, c):
                continue
            out[c] = r
        return out

    def _reentry_ok(self, cost: np.ndarray, app: np.ndarray, r: int, c: int) -> bool:
        """A lost track comes back only if the colours agree and no other track/detection is nearly as good."""
        if not np.isfinite(app[r, c]) or app[r, c] > self.reentry_appearance:
            return False
        others_t = np.delete(cost[:, c], r)
        others_d = np.delete(cost[r, :], c)
        best_other = min(others_t.min(initial=INF), others_d.min(initial=INF))
        return best_other - cost[r, c] > self.reentry_margin

    def _cost(self, dets: list[Detection], t: float, crowded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tracks, detections) assignment cost and appearance distance (inf where unknown)."""
        horizon = 0.5                               # seconds of constant-velocity extrapolation at most
        preds = np.stack([tr.predict_box(t, horizon) for tr in self.tracks])
        boxes = np.stack([d.box for d in dets])
        iou = box_iou(preds, boxes)
        size = np.maximum(preds[:, 3] - preds[:, 1], 1.0)[:, None]
        centre = lambda b: 0.5 * (b[..., :2] + b[..., 2:])
        d2 = np.linalg.norm(centre(preds)[:, None] - centre(boxes)[None], axis=-1) / size
        scale = np.abs(np.log(np.maximum(boxes[None, :, 3] - boxes[None, :, 1], 1.0) / size))
        nT, nD = len(self.tracks), len(dets)
        d3 = np.full((nT, nD), np.nan)
        app = np.full((nT, nD), np.inf)
        for r, tr in enumerate(self.tracks):
            p = tr.predict_pos3d(t, horizon)
            for c, d in enumerate(dets):
                if p is not None and d.pos3d is not None:
                    # lateral error in metres, depth error relative (monocular depth is only good to ~10-15 %)
                    d3[r, c] = np.hypot(np.linalg.norm(p[:2] - d.pos3d[:2]) / 0.5,
                                        abs(np.log(d.pos3d[2] / max(p[2], 1e-3))) / 0.25)
                if tr.hist is not None and d.hist is not None:
                    app[r, c] = hist_distance(tr.hist, d.hist)
        missing = np.array([t - tr.last_time for tr in self.tracks])[:, None]
        gate = 1.0 + 2.0 * np.minimum(missing, 2.0)          # box heights the centre may move while unseen
        # Motion cues fade as a track stays unseen (its prediction gets worse); appearance then decides,
        # and a constant penalty keeps tracks that are still being seen ahead of lost ones.
        motion_w = np.exp(-missing / 0.5)
        motion = 0.3 * (1.0 - iou) + 0.25 * np.minimum(d2, 3.0) + 0.1 * np.minimum(scale, 1.0)
        motion += np.where(np.isnan(d3), 0.1, 0.15 * np.minimum(np.nan_to_num(d3), 3.0))
        cost = motion_w * motion + (1.0 - motion_w) * 0.3
        # a detection overlapping another person may show that person's colours on its torso: half weight
        app_w = np.where(crowded, 0.3, 0.6)[None, :]
        cost += np.where(np.isfinite(app), app_w * np.where(np.isfinite(app), app, 0.0), 0.15)
        cost = np.where(d2 > gate, INF, cost)
        # a lost track can only be taken back by a detection whose colours agree (``_reentry_ok``): anything
        # else must not compete for the detection in the assignment either
        lost = np.array([tr.missing_frames > 0 for tr in self.tracks])[:, None] & (missing > 0.25)
        cost = np.where(lost & ~(app <= self.reentry_appearance), INF, cost)
        return cost, app

    @staticmethod
    def _refresh(track: Track, det: Detection, t: float, learn_appearance: bool) -> None:
        dt = max(t - track.last_time, 1e-3)
        gap = track.missing_frames > 0
        h_old, h_new = max(track.box[3] - track.box[1], 1.0), max(det.box[3] - det.box[1], 1.0)
        if gap:
            track.velocity = det.box * 0
        elif abs(np.log(h_new / h_old)) > 0.15:
            # the box jumped in size (partial occlusion or truncation starts / ends): not motion, do not learn it
            track.velocity = 0.5 * track.velocity
        else:
            track.velocity = 0.6 * track.velocity + 0.4 * (det.box - track.box) / dt
        # a person does not cross more than ~2 body heights a second; larger box speeds are detector noise
        track.velocity = np.clip(track.velocity, -2.0 * h_new, 2.0 * h_new).astype(np.float32)
        if det.pos3d is not None:
            if track.pos3d is not None and not gap:
                track.vel3d = 0.7 * track.vel3d + 0.3 * (det.pos3d - track.pos3d) / dt
            elif gap:
                track.vel3d = np.zeros(3, np.float32)
            track.pos3d = det.pos3d if track.pos3d is None else 0.5 * track.pos3d + 0.5 * det.pos3d
        if det.hist is not None and learn_appearance:
            track.hist = det.hist if track.hist is None else 0.9 * track.hist + 0.1 * det.hist
        track.box, track.last_time, track.missing_frames = det.box, t, 0
        track.hits += 1


def _overlapping(boxes: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """(N,) True where a box overlaps another one (its torso colours may be the other person's)."""
    if len(boxes) < 2:
        return np.zeros(len(boxes), bool)
    iou = box_iou(boxes, boxes)
    np.fill_diagonal(iou, 0.0)
    return iou.max(1) > threshold


class ShapeMemory:
    """One body shape (``betas``) per ID: a confidence-weighted running mean of the per-frame fits that ignores
    outlier frames once the estimate has settled. ``hints()`` seeds the estimator; ``apply()`` writes the ID's
    shape back into every person so a person's shape does not flicker from frame to frame."""

    def __init__(self, outlier_sigma: float = 3.0, settle: int = 10):
        self.outlier_sigma, self.settle = outlier_sigma, settle
        self.mean: dict[int, np.ndarray] = {}
        self.m2: dict[int, np.ndarray] = {}
        self.weight: dict[int, float] = {}
        self.count: dict[int, int] = {}

    def hints(self) -> dict[int, np.ndarray]:
        return {k: v.copy() for k, v in self.mean.items()}

    def forget(self, ids) -> None:
        for k in ids:
            for d in (self.mean, self.m2, self.weight, self.count):
                d.pop(k, None)

    def update(self, frame: FrameRecord) -> None:
        for p in frame.people:
            if p.params is None or p.track_id < 0:
                continue
            b = np.asarray(p.params.betas, np.float64)
            k = p.track_id
            vis = p.landmarks.body_2d[:, 2] if p.landmarks is not None else np.ones(1)
            w = float(max(p.score, 0.05) * np.clip(vis.mean(), 0.05, 1.0))
            if k not in self.mean:
                self.mean[k], self.m2[k], self.weight[k], self.count[k] = b.copy(), np.zeros_like(b), w, 1
                continue
            if self.count[k] >= self.settle:
                std = np.sqrt(self.m2[k] / self.weight[k]) + 0.05
                if np.any(np.abs(b - self.mean[k]) > self.outlier_sigma * std):
                    continue
            # West's weighted incremental mean/variance
            self.weight[k] += w
            delta = b - self.mean[k]
            self.mean[k] = self.mean[k] + delta * w / self.weight[k]
            self.m2[k] = self.m2[k] + w * delta * (b - self.mean[k])
            self.count[k] += 1

    def apply(self, frame: FrameRecord) -> None:
        for p in frame.people:
            if p.params is not None and p.track_id in self.mean:
                p.params.betas = self.mean[p.track_id].astype(np.float32)
