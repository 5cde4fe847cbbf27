"""Per-person IDs across frames: global assignment (Hungarian) on box overlap and centre distance."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..records import FrameRecord


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) boxes x0, y0, x1, y1 -> (N, M) IoU."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-6)


@dataclass
class _Track:
    track_id: int
    box: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    missing: int = 0
    age: int = 0


class IdTracker:
    """Gives every person a track_id that persists while it keeps matching (basic position matching)."""

    def __init__(self, max_missing: int = 30, max_cost: float = 0.9):
        self.max_missing, self.max_cost = max_missing, max_cost
        self.tracks: list[_Track] = []
        self.next_id = 0

    def reset(self) -> None:
        self.tracks, self.next_id = [], 0

    def update(self, frame: FrameRecord) -> FrameRecord:
        people = frame.people
        boxes = np.array([p.box for p in people], np.float32).reshape(-1, 4)
        preds = np.array([t.box + t.velocity for t in self.tracks], np.float32).reshape(-1, 4)
        matched_tracks: set[int] = set()
        assigned: dict[int, int] = {}
        if len(people) and len(self.tracks):
            cost = self._cost(preds, boxes)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] < self.max_cost:
                    assigned[c] = r
        for i, person in enumerate(people):
            if i in assigned:
                track = self.tracks[assigned[i]]
                track.velocity = 0.5 * track.velocity + 0.5 * (boxes[i] - track.box)
                track.box, track.missing = boxes[i], 0
                track.age += 1
                matched_tracks.add(assigned[i])
            else:
                track = _Track(self.next_id, boxes[i])
                self.next_id += 1
                self.tracks.append(track)
                matched_tracks.add(len(self.tracks) - 1)
            person.track_id = track.track_id
        for k, track in enumerate(self.tracks):
            if k not in matched_tracks:
                track.missing += 1
                track.velocity *= 0.5
        self.tracks = [t for t in self.tracks if t.missing <= self.max_missing]
        return frame

    @staticmethod
    def _cost(pred: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        iou = box_iou(pred, boxes)
        size = np.maximum(pred[:, 3] - pred[:, 1], 1.0)[:, None]
        cp = 0.5 * (pred[:, None, :2] + pred[:, None, 2:])
        cb = 0.5 * (boxes[None, :, :2] + boxes[None, :, 2:])
        dist = np.linalg.norm(cp - cb, axis=-1) / size
        return (1.0 - iou) * 0.5 + np.minimum(dist, 2.0) * 0.5


class ShapeMemory:
    """One body shape per ID: a running mean of per-frame betas, fed back as the next frame's start."""

    def __init__(self):
        self.sum: dict[int, np.ndarray] = {}
        self.count: dict[int, int] = {}

    def hints(self) -> dict[int, np.ndarray]:
        return {k: self.sum[k] / self.count[k] for k in self.sum}

    def update(self, frame: FrameRecord) -> None:
        for p in frame.people:
            if p.params is not None and p.track_id >= 0:
                self.sum[p.track_id] = self.sum.get(p.track_id, 0) + p.params.betas
                self.count[p.track_id] = self.count.get(p.track_id, 0) + 1
