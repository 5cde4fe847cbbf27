"""Tracking metrics against a small keyframe ground truth: ID switches and fragments (per GT person), jitter
(mean joint acceleration) and step lag.

Ground truth (``tests/data/track_gt.json``): per video, keyframes with the main people's boxes in normalised image
coordinates (x0, y0, x1, y1 in 0..1) and a hand-given person label; a shot cut splits a video into segments and a
label only means the same person within its segment. Predicted tracks are associated to GT per keyframe by a
global box-IoU assignment (IoU >= ``min_iou``).

* switch: a GT person's matched track ID differs from the ID it last had (keyframes where it is unmatched are
  skipped, so an ID that comes back after a miss is not a switch, a different one is);
* fragments: number of distinct track IDs a GT person was matched to, minus one (summed over people);
* misses: keyframes where a GT person has no predicted box with enough overlap;
* mixes: a track ID that was matched to two different GT people (identity mixing, e.g. across a cut).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..detect.roi import box_iou


@dataclass
class IdScore:
    switches: int = 0
    fragments: int = 0
    misses: int = 0
    mixes: int = 0
    matched: int = 0
    per_person: dict = field(default_factory=dict)      # label -> list of matched ids in keyframe order


def load_ground_truth(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


def match_frame(gt_boxes: np.ndarray, pred_boxes: np.ndarray, min_iou: float = 0.3) -> dict[int, int]:
    """Global IoU assignment: GT index -> predicted index (only pairs with IoU >= min_iou)."""
    if len(gt_boxes) == 0 or len(pred_boxes) == 0:
        return {}
    iou = box_iou(np.asarray(gt_boxes, np.float32).reshape(-1, 4), np.asarray(pred_boxes, np.float32).reshape(-1, 4))
    rows, cols = linear_sum_assignment(-iou)
    return {int(r): int(c) for r, c in zip(rows, cols) if iou[r, c] >= min_iou}


def score_ids(gt_frames: dict, predicted: dict, min_iou: float = 0.3) -> IdScore:
    """gt_frames {frame: [(label, box)]}; predicted {frame: [(track_id, box)]} (boxes in the same units)."""
    score = IdScore()
    history: dict[str, list[int]] = {}
    owners: dict[int, set[str]] = {}
    for f in sorted(gt_frames, key=int):
        gt = gt_frames[f]
        pred = predicted.get(int(f), [])
        m = match_frame(np.array([b for _, b in gt]).reshape(-1, 4), np.array([b for _, b in pred]).reshape(-1, 4),
                        min_iou)
        for g, (label, _) in enumerate(gt):
            if g not in m:
                score.misses += 1
                continue
            tid = int(pred[m[g]][0])
            seq = history.setdefault(label, [])
            if seq and seq[-1] != tid:
                score.switches += 1
            seq.append(tid)
            owners.setdefault(tid, set()).add(label)
            score.matched += 1
    score.fragments = sum(len(set(s)) - 1 for s in history.values() if s)
    score.mixes = sum(len(v) - 1 for v in owners.values())
    score.per_person = history
    return score


def mean_acceleration(tracks: dict[int, list[tuple[int, np.ndarray]]]) -> float:
    """Mean joint acceleration, mm/frame^2, over every run of 3 consecutive frames of each track.

    tracks {id: [(frame_index, joints (J, 3) metres)]}."""
    total, count = 0.0, 0
    for seq in tracks.values():
        seq = sorted(seq, key=lambda s: s[0])
        for (f0, a), (f1, b), (f2, c) in zip(seq, seq[1:], seq[2:]):
            if f1 == f0 + 1 and f2 == f1 + 1:
                total += float(np.linalg.norm(a - 2 * b + c, axis=-1).mean())
                count += 1
    return 1000.0 * total / max(count, 1)


def step_lag(response: np.ndarray, onset: int, level: float = 0.5) -> int:
    """Frames after ``onset`` until a unit step's smoothed response first reaches ``level`` (0 = no lag)."""
    hit = np.flatnonzero(np.asarray(response) >= level)
    return int(hit[0] - onset) if len(hit) else len(response) - onset
