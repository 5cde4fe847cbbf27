"""Temporal smoothing of SMPL-X parameters: One-Euro filters (live, past frames only) or a zero-phase Gaussian
window (offline), rotations filtered as unit quaternions (sign-aligned, renormalised) so nothing wraps at pi;
plus foot contact pinning so a planted foot does not slide.

Presets (``--smooth``): ``off``; ``live`` (causal One-Euro, <= 1 frame lag on a step); ``light`` / ``medium`` /
``strong`` (offline: a Gaussian window both ways of sigma 1 / 2 / 3 frames, for files).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRESETS = ("off", "live", "light", "medium", "strong")
OFFLINE_SIGMA = {"light": 1.0, "medium": 2.0, "strong": 3.0}


@dataclass
class OneEuroConfig:
    min_cutoff: float = 1.0     # Hz at rest: lower = smoother when still
    beta: float = 0.7           # cutoff grows with speed: higher = less lag when moving
    d_cutoff: float = 1.0       # Hz for the speed estimate


LIVE_ROTATION = OneEuroConfig(min_cutoff=0.5, beta=0.8)     # speed in rad/s
LIVE_TRANSLATION = OneEuroConfig(min_cutoff=0.4, beta=3.0)  # speed in m/s
LIVE_LINEAR = OneEuroConfig(min_cutoff=1.0, beta=0.5)       # expression


def _alpha(cutoff, dt: float):
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuro:
    """One-Euro filter (Casiez et al. 2012) over arrays of shape (G, C): G groups share one speed (e.g. the
    4 components of one joint's quaternion), so a joint's cutoff follows its angular speed."""

    def __init__(self, config: OneEuroConfig):
        self.config = config
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None

    def __call__(self, x: np.ndarray, dt: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.x is None:
            self.x, self.dx = x.copy(), np.zeros(x.shape[0])
            return x
        dt = max(dt, 1e-4)
        speed = np.linalg.norm(x - self.x, axis=-1) / dt
        self.dx = self.dx + _alpha(self.config.d_cutoff, dt) * (speed - self.dx)
        a = _alpha(self.config.min_cutoff + self.config.beta * self.dx, dt)[:, None]
        self.x = self.x + a * (x - self.x)
        return self.x


def axis_angle_to_quat(rv: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 4) w, x, y, z."""
    angle = np.linalg.norm(rv, axis=-1, keepdims=True)
    half = 0.5 * angle
    k = np.where(angle > 1e-8, np.sin(half) / np.maximum(angle, 1e-8), 0.5)
    return np.concatenate([np.cos(half), rv * k], -1)


def quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    """(..., 4) -> (..., 3), angle in [0, pi]."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    q = np.where(q[..., :1] < 0, -q, q)
    s = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(s, q[..., :1])
    return q[..., 1:] * np.where(s > 1e-8, angle / np.maximum(s, 1e-8), 2.0)


def align_hemisphere(q: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Flip quaternions onto the hemisphere of ``ref`` (q and -q are the same rotation)."""
    return np.where(np.sum(q * ref, -1, keepdims=True) < 0, -q, q)


@dataclass
class MotionState:
    """The smoothed quantities of one person in one frame."""
    rotations: np.ndarray     # (55, 3) axis-angle (hands as absolute rotations, hand mean included)
    transl: np.ndarray        # (3,)
    expression: np.ndarray    # (E,)


class Median3:
    """Causal median of the last three inputs, element-wise: removes single-frame spikes (a landmark model's
    typical glitch) that a One-Euro filter lets through because they look like fast motion. Costs one frame of
    delay on a step."""

    def __init__(self):
        self.history: list[np.ndarray] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.history = (self.history + [np.asarray(x, np.float64)])[-3:]
        if len(self.history) < 3:
            return self.history[-1]
        return np.median(np.stack(self.history), axis=0)


class LiveSmoother:
    """Causal smoothing of one person's motion: median of 3 (spikes) then One-Euro (jitter)."""

    def __init__(self):
        self.rot = OneEuro(LIVE_ROTATION)
        self.transl = OneEuro(LIVE_TRANSLATION)
        self.expr = OneEuro(LIVE_LINEAR)
        self.rot_median, self.transl_median = Median3(), Median3()
        self._q: np.ndarray | None = None

    def __call__(self, state: MotionState, dt: float) -> MotionState:
        q = axis_angle_to_quat(state.rotations)
        if self._q is not None:
            q = align_hemisphere(q, self._q)
        q = self.rot_median(q)
        q = self.rot(q, dt)
        q = q / np.linalg.norm(q, axis=-1, keepdims=True)
        self._q = q
        self.rot.x = q
        transl = self.transl_median(state.transl)
        return MotionState(quat_to_axis_angle(q), self.transl(transl[None], dt)[0],
                           self.expr(state.expression[:, None], dt)[:, 0])


def gaussian_smooth(states: list[MotionState], centre: int, sigma: float) -> MotionState:
    """Zero-phase Gaussian average of a window of one person's states around ``centre`` (quaternions aligned
    to the centre frame, averaged and renormalised: accurate for the small spread within a window)."""
    offsets = np.arange(len(states)) - centre
    w = np.exp(-0.5 * (offsets / sigma) ** 2)
    w /= w.sum()
    q = axis_angle_to_quat(np.stack([s.rotations for s in states]))
    q = align_hemisphere(q, q[centre][None])
    qm = np.einsum("t,tjc->jc", w, q)
    return MotionState(quat_to_axis_angle(qm / np.linalg.norm(qm, axis=-1, keepdims=True)),
                       np.einsum("t,tc->c", w, np.stack([s.transl for s in states])),
                       np.einsum("t,tc->c", w, np.stack([s.expression for s in states])))


FOOT_JOINTS = ((7, 10), (8, 11))      # (ankle, foot) left and right, SMPL-X joint order


class FootPinner:
    """Keeps planted feet still. A foot is planted when it moves slower than ``max_speed`` (m/s) and is within
    ``height_tol`` of the person's lowest foot point (camera y points down; the camera is assumed roughly
    level). While planted, the body is shifted so the foot stays where it landed; the shift is released
    smoothly when the foot lifts, and a contact that would need more than ``max_shift`` is dropped."""

    def __init__(self, max_speed: float = 0.25, height_tol: float = 0.05, max_shift: float = 0.08,
                 release: float = 0.7):
        self.max_speed, self.height_tol, self.max_shift, self.release = max_speed, height_tol, max_shift, release
        self.prev: np.ndarray | None = None
        self.anchor: list[np.ndarray | None] = [None, None]
        self.shift = np.zeros(3)
        self.planted = [False, False]

    def __call__(self, joints: np.ndarray, dt: float) -> np.ndarray:
        """joints (J, 3) of the smoothed body -> translation correction (3,) to add."""
        feet = np.stack([joints[list(j)].mean(0) for j in FOOT_JOINTS])          # (2, 3)
        lowest = float(np.amax(joints[[j for pair in FOOT_JOINTS for j in pair], 1]))
        speed = (np.linalg.norm(feet - self.prev, axis=-1) / max(dt, 1e-4) if self.prev is not None
                 else np.full(2, np.inf))
        self.prev = feet
        offsets = []
        for side in range(2):
            # hysteresis: a planted foot stays planted until it clearly moves (jitter must not release it)
            limit = self.max_speed * (2.0 if self.anchor[side] is not None else 1.0)
            planted = speed[side] < limit and feet[side, 1] > lowest - self.height_tol
            if not planted:
                self.anchor[side] = None
            elif self.anchor[side] is None:
                self.anchor[side] = feet[side] + self.shift           # where the (shifted) foot landed
            if self.anchor[side] is not None:
                off = self.anchor[side] - feet[side]
                if np.linalg.norm(off) > self.max_shift:
                    self.anchor[side] = feet[side] + self.shift
                    off = self.shift.copy()
                offsets.append(off)
            self.planted[side] = self.anchor[side] is not None
        self.shift = np.mean(offsets, 0) if offsets else self.release * self.shift
        return self.shift
