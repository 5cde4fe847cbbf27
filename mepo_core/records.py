"""Typed per-frame records that every pipeline stage reads and returns.

Data flows one way: source -> detect -> estimate -> track/smooth -> render / record / export.
Each stage takes a ``FrameRecord`` and fills in more of its ``people``.
All 2D coordinates are pixels in the full frame (x right, y down); all 3D camera-space
coordinates are metres in an OpenCV camera frame (x right, y down, z forward).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class Camera:
    """Shared pinhole camera of a take (no distortion)."""
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_fov(cls, width: int, height: int, fov_deg: float = 60.0) -> "Camera":
        """Camera with the given *horizontal* field of view, principal point at the centre."""
        f = 0.5 * width / np.tan(np.radians(fov_deg) / 2.0)
        return cls(f, f, width / 2.0, height / 2.0, int(width), int(height))

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], np.float32)

    def project(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) camera-space points -> (..., 2) pixels."""
        z = np.maximum(points[..., 2:3], 1e-6)
        return np.concatenate([self.fx * points[..., 0:1] / z + self.cx,
                               self.fy * points[..., 1:2] / z + self.cy], axis=-1)


@dataclass
class Landmarks:
    """MediaPipe-style landmarks of one person, all in full-frame pixels.

    ``*_2d`` arrays are (N, 3): x, y in pixels and a confidence in [0, 1].
    ``body_world`` is (33, 3) metric, hip-centred, MediaPipe world axes (x right, y down, z forward).
    ``*_3d`` hand/face arrays are (N, 3): x, y pixels and a relative depth z in pixels (MediaPipe convention).
    Missing parts are None.
    """
    body_2d: np.ndarray                      # (33, 3)
    body_world: np.ndarray                   # (33, 3)
    body_score: float = 1.0
    left_hand_2d: Optional[np.ndarray] = None    # (21, 3) the person's own left hand
    right_hand_2d: Optional[np.ndarray] = None   # (21, 3)
    left_hand_3d: Optional[np.ndarray] = None    # (21, 3) x, y px + relative z px
    right_hand_3d: Optional[np.ndarray] = None
    face_2d: Optional[np.ndarray] = None     # (478, 3)
    face_3d: Optional[np.ndarray] = None     # (478, 3) x, y px + relative z px
    heatmap: Optional[np.ndarray] = None     # (64, 64, 39) from the pose landmark model, ROI space
    mask: Optional[np.ndarray] = None        # (H, W) float person segmentation in full-frame pixels, or None
    roi: Optional[np.ndarray] = None         # (5,) cx, cy, w, h, rotation(rad) of the body ROI used


@dataclass
class SmplxParams:
    """SMPL-X parameters of one person (axis-angle, radians), smplx-package names and sizes."""
    global_orient: np.ndarray   # (3,)
    body_pose: np.ndarray       # (63,)
    left_hand_pose: np.ndarray  # (45,)
    right_hand_pose: np.ndarray  # (45,)
    jaw_pose: np.ndarray        # (3,)
    leye_pose: np.ndarray       # (3,)
    reye_pose: np.ndarray       # (3,)
    expression: np.ndarray      # (10,)
    betas: np.ndarray           # (10,)
    transl: np.ndarray          # (3,) camera space, metres

    KEYS = ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose",
            "leye_pose", "reye_pose", "expression", "betas", "transl")
    SIZES = {"global_orient": 3, "body_pose": 63, "left_hand_pose": 45, "right_hand_pose": 45,
             "jaw_pose": 3, "leye_pose": 3, "reye_pose": 3, "expression": 10, "betas": 10, "transl": 3}

    @classmethod
    def zeros(cls, num_betas: int = 10, num_expression: int = 10) -> "SmplxParams":
        sizes = dict(cls.SIZES, betas=num_betas, expression=num_expression)
        return cls(**{k: np.zeros(sizes[k], np.float32) for k in cls.KEYS})

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.KEYS}


@dataclass
class Person:
    """One person in one frame."""
    box: np.ndarray                          # (4,) x0, y0, x1, y1 pixels
    score: float = 1.0
    track_id: int = -1
    landmarks: Optional[Landmarks] = None
    params: Optional[SmplxParams] = None
    joints3d: Optional[np.ndarray] = None    # (J, 3) camera-space metres (SMPL-X joint order)
    keypoints2d: Optional[np.ndarray] = None  # (J, 3) projected joints + confidence
    vertices: Optional[np.ndarray] = None    # (V, 3) camera-space metres, filled only when rendering needs it
    depth_level: int = -1


@dataclass
class FrameRecord:
    """One frame and everything known about it."""
    index: int
    timestamp: float                         # seconds
    image: np.ndarray                        # (H, W, 3) uint8 RGB
    camera: Camera
    people: list[Person] = field(default_factory=list)
