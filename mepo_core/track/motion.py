"""The stage after estimation: one shape per ID, depth order, temporal smoothing, foot pinning, and joints /
keypoints recomputed from the final parameters (so the take's joints are exactly what smplx gives for them).

``push(frame)`` returns the frames that are final: the same frame at once for ``off`` / ``live``; for the
offline presets each frame comes out once its ``window`` future frames have arrived, and ``flush()`` returns the
rest at the end of the take.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import torch

from ..records import FrameRecord, Person
from .depth_order import depth_levels, enforce_order, occlusion_relations
from .ids import ShapeMemory
from .smoothing import OFFLINE_SIGMA, PRESETS, FootPinner, LiveSmoother, MotionState, gaussian_smooth

RESTART_GAP_S = 0.5       # a person unseen longer than this starts a fresh filter (no smoothing across gaps)


class MotionStage:
    def __init__(self, estimator, smooth: str = "live", pin_feet: bool = True, depth_order: bool = True):
        if smooth not in PRESETS:
            raise ValueError(f"unknown smoothing preset {smooth!r}; one of {', '.join(PRESETS)}")
        self.estimator, self.smooth, self.pin_feet, self.depth_order = estimator, smooth, pin_feet, depth_order
        self.hand_mean = np.concatenate([estimator.hand_mean["left"], estimator.hand_mean["right"]]).reshape(30, 3)
        self.shapes = ShapeMemory()
        self.window = int(np.ceil(3 * OFFLINE_SIGMA[smooth])) if smooth in OFFLINE_SIGMA else 0
        self.reset()

    @property
    def offline(self) -> bool:
        return self.window > 0

    def reset(self) -> None:
        self.shapes.__init__(self.shapes.outlier_sigma, self.shapes.settle)
        self._live: dict[int, LiveSmoother] = {}
        self._feet: dict[int, FootPinner] = {}
        self._last_seen: dict[int, float] = {}
        self._last_out: dict[int, float] = {}
        self._buffer: deque = deque()          # (frame, {track_id: raw MotionState}, relations)
        self._done = 0                         # buffer entries already returned

    def hints(self) -> dict[int, np.ndarray]:
        """Per-ID shape estimates to seed the estimator with."""
        return self.shapes.hints()

    def forget(self, ids) -> None:
        """Drop the state of closed tracks."""
        for k in ids:
            for d in (self._live, self._feet, self._last_seen, self._last_out):
                d.pop(k, None)
        self.shapes.forget(ids)

    def push(self, frame: FrameRecord) -> list[FrameRecord]:
        people = _fitted(frame)
        self.shapes.update(frame)
        self.shapes.apply(frame)
        relations = self._order(people) if self.depth_order else []
        if not self.offline:
            for p in people:
                if self.smooth == "live":
                    self._set_state(p, self._live_filter(p, frame.timestamp))
            self._finish(frame, people, relations)
            return [frame]
        raw = {p.track_id: self._state(p) for p in people}
        self._buffer.append((frame, raw, relations))
        return self._drain(final=False)

    def flush(self) -> list[FrameRecord]:
        return self._drain(final=True) if self.offline else []

    # -- depth order -----------------------------------------------------------------------------------------
    def _order(self, people: list[Person]) -> list[tuple[int, int, float]]:
        if not people:
            return []
        boxes = np.stack([p.box for p in people]).astype(np.float32)
        body = np.stack([p.landmarks.body_2d for p in people])
        depth = np.array([_pelvis(p)[2] for p in people])
        relations = occlusion_relations(boxes, body, depth)
        levels = depth_levels(len(people), relations)
        for p, level in zip(people, levels):
            p.depth_level = int(level)
        self._apply_order(people, relations)
        return relations

    @staticmethod
    def _apply_order(people: list[Person], relations) -> None:
        if not relations:
            return
        pelvis = np.stack([_pelvis(p) for p in people])
        scale = enforce_order(pelvis, relations)
        for p, s, c in zip(people, scale, pelvis):
            if s != 1.0:
                shift = ((s - 1.0) * c).astype(np.float32)      # pelvis slides along its camera ray
                p.params.transl = p.params.transl + shift
                if p.joints3d is not None:
                    p.joints3d = p.joints3d + shift

    # -- smoothing -------------------------------------------------------------------------------------------
    def _state(self, p: Person) -> MotionState:
        q = p.params
        rot = np.concatenate([q.global_orient[None], q.body_pose.reshape(21, 3), q.jaw_pose[None], q.leye_pose[None],
                              q.reye_pose[None], np.concatenate([q.left_hand_pose, q.right_hand_pose]).reshape(30, 3)
                              + self.hand_mean])
        return MotionState(rot.astype(np.float64), q.transl.astype(np.float64), q.expression.astype(np.float64))

    def _set_state(self, p: Person, s: MotionState) -> None:
        r = s.rotations.astype(np.float32)
        q = p.params
        q.global_orient, q.body_pose, q.jaw_pose, q.leye_pose, q.reye_pose = (r[0], r[1:22].reshape(-1), r[22], r[23],
                                                                              r[24])
        hands = (r[25:55] - self.hand_mean).reshape(-1)
        q.left_hand_pose, q.right_hand_pose = hands[:45].copy(), hands[45:].copy()
        q.transl, q.expression = s.transl.astype(np.float32), s.expression.astype(np.float32)

    def _live_filter(self, p: Person, t: float) -> MotionState:
        k = p.track_id
        if k not in self._live or t - self._last_seen[k] > RESTART_GAP_S:
            self._live[k] = LiveSmoother()
        dt = t - self._last_seen.get(k, t)
        self._last_seen[k] = t
        return self._live[k](self._state(p), dt)

    def _drain(self, final: bool) -> list[FrameRecord]:
        out = []
        W = self.window
        while self._done < len(self._buffer) and (final or len(self._buffer) - 1 - self._done >= W):
            c = self._done
            frame, raw, relations = self._buffer[c]
            people = _fitted(frame)
            for p in people:
                window = [raw[p.track_id]]
                centre = 0
                for step in (-1, 1):                      # extend while the same person stays in view
                    k = c + step
                    while 0 <= k < len(self._buffer) and abs(k - c) <= W and p.track_id in self._buffer[k][1]:
                        if step < 0:
                            window.insert(0, self._buffer[k][1][p.track_id])
                            centre += 1
                        else:
                            window.append(self._buffer[k][1][p.track_id])
                        k += step
                self._set_state(p, gaussian_smooth(window, centre, OFFLINE_SIGMA[self.smooth]))
            self._finish(frame, people, relations)
            out.append(frame)
            self._done += 1
            while self._done > W:                         # keep W past frames for the next windows
                self._buffer.popleft()
                self._done -= 1
        return out

    # -- final joints ----------------------------------------------------------------------------------------
    def _finish(self, frame: FrameRecord, people: list[Person], relations) -> None:
        """Order again (smoothing may have undone it), pin feet, recompute joints / keypoints / vertices."""
        if not people:
            return
        self._apply_order(people, relations)
        est = self.estimator
        stacked = {k: torch.as_tensor(np.stack([getattr(p.params, k) for p in people]))
                   for k in people[0].params.KEYS}
        with torch.no_grad():
            joints = est.fk.exact_joints(est._rotmats(stacked), stacked["betas"], stacked["expression"],
                                         stacked["transl"]).numpy()
        t = frame.timestamp
        for i, p in enumerate(people):
            if self.pin_feet and self.smooth != "off":
                k = p.track_id
                if k not in self._feet or t - self._last_out.get(k, -np.inf) > RESTART_GAP_S:
                    self._feet[k] = FootPinner()
                dt = t - self._last_out.get(k, t)
                shift = self._feet[k](joints[i], dt).astype(np.float32)
                p.params.transl = p.params.transl + shift
                joints[i] = joints[i] + shift
            self._last_out[p.track_id] = t
            p.joints3d = joints[i].astype(np.float32)
            conf = p.keypoints2d[:, 2:3] if p.keypoints2d is not None else np.zeros((len(joints[i]), 1), np.float32)
            p.keypoints2d = np.concatenate([frame.camera.project(p.joints3d), conf], 1).astype(np.float32)
        if any(p.vertices is not None for p in people):
            stacked = {k: torch.as_tensor(np.stack([getattr(p.params, k) for p in people]))
                       for k in people[0].params.KEYS}
            with torch.no_grad():
                verts, _ = est.body_model.forward(stacked)
            for i, p in enumerate(people):
                p.vertices = verts[i].numpy()


def _fitted(frame: FrameRecord) -> list[Person]:
    return [p for p in frame.people if p.params is not None and p.track_id >= 0 and p.landmarks is not None]


def _pelvis(p: Person) -> np.ndarray:
    return p.joints3d[0] if p.joints3d is not None else p.params.transl
