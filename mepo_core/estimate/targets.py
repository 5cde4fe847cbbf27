"""Turn one person's MediaPipe landmarks into SMPL-X-indexed fitting targets."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..records import Landmarks
from .joint_map import (LEFT_HAND_SMPLX, MP_BODY, NUM_OUTPUT_JOINTS, RIGHT_HAND_SMPLX, SMPLX_FROM_BODY)


@dataclass
class FitTargets:
    """Per-person targets, all indexed by the 76 SMPL-X output joints.

    points3d (76, 3): camera-aligned metric positions relative to the hip centre; conf3d (76,).
    points2d (76, 3): full-frame pixels + confidence.
    """
    points3d: np.ndarray
    conf3d: np.ndarray
    points2d: np.ndarray
    jaw_open: float = 0.0
    gaze: np.ndarray | None = None  # (2, 2) yaw/pitch per eye (left, right) in radians


def build_targets(lm: Landmarks, rest_hand_length: float) -> FitTargets:
    """Map body / hand / face landmarks onto SMPL-X joints.

    rest_hand_length: model's wrist->middle-knuckle length in metres, used to give the hand landmarks (pixel units,
    relative depth) a metric scale before attaching them at the body's wrist.
    """
    p3 = np.zeros((NUM_OUTPUT_JOINTS, 3), np.float32)
    c3 = np.zeros(NUM_OUTPUT_JOINTS, np.float32)
    p2 = np.zeros((NUM_OUTPUT_JOINTS, 3), np.float32)
    vis = np.clip(lm.body_2d[MP_BODY, 2], 0, 1)
    p3[SMPLX_FROM_BODY] = lm.body_world[MP_BODY]
    c3[SMPLX_FROM_BODY] = vis
    p2[SMPLX_FROM_BODY] = lm.body_2d[MP_BODY]
    # Without hand landmarks the pose model's index/pinky points still orient the wrist.
    for side, mp_idx, mp_pinky, smplx_map in (("left", 19, 17, LEFT_HAND_SMPLX), ("right", 20, 18, RIGHT_HAND_SMPLX)):
        idx1, pinky1, mid1 = smplx_map[5], smplx_map[17], smplx_map[9]
        p3[idx1], p3[pinky1] = lm.body_world[mp_idx], lm.body_world[mp_pinky]
        p3[mid1] = 0.5 * (p3[idx1] + p3[pinky1])
        c3[[idx1, pinky1, mid1]] = 0.5 * min(lm.body_2d[mp_idx, 2], lm.body_2d[mp_pinky, 2])
    for side, hand3d, hand2d, smplx_map in (("left", lm.left_hand_3d, lm.left_hand_2d, LEFT_HAND_SMPLX),
                                            ("right", lm.right_hand_3d, lm.right_hand_2d, RIGHT_HAND_SMPLX)):
        if hand3d is None or hand2d is None:
            continue
        length = np.linalg.norm(hand3d[9] - hand3d[0])
        if length < 1e-6:
            continue
        wrist = p3[smplx_map[0]]
        p3[smplx_map[1:]] = wrist + (hand3d[1:] - hand3d[0]) * (rest_hand_length / length)
        c3[smplx_map[1:]] = np.clip(hand2d[1:, 2], 0, 1)
        p2[smplx_map] = hand2d
    targets = FitTargets(p3, c3, p2)
    if lm.face_2d is not None:
        targets.jaw_open, targets.gaze = face_cues(lm.face_2d)
    return targets


def face_cues(face: np.ndarray) -> tuple[float, np.ndarray]:
    """Mouth opening (0 closed .. ~0.5 wide open, fraction of face height) and eye gaze from 478 landmarks."""
    face_h = np.linalg.norm(face[10, :2] - face[152, :2]) + 1e-6
    jaw_open = float(np.linalg.norm(face[13, :2] - face[14, :2]) / face_h)
    gaze = np.zeros((2, 2), np.float32)
    if face.shape[0] >= 478:
        # (iris centre, outer corner, inner corner, upper lid, lower lid) for the person's left and right eye
        for k, (iris, c0, c1, up, lo) in enumerate(((473, 263, 362, 386, 374), (468, 33, 133, 159, 145))):
            centre = 0.5 * (face[c0, :2] + face[c1, :2])
            width = np.linalg.norm(face[c0, :2] - face[c1, :2]) + 1e-6
            off = (face[iris, :2] - centre) / width
            gaze[k] = np.clip([off[0] * 1.2, off[1] * 1.2], -0.5, 0.5)
    return jaw_open, gaze
