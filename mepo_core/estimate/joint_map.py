"""Correspondences between MediaPipe landmarks and the SMPL-X joint list (76 joints: 55 + 21 extra)."""
from __future__ import annotations

import numpy as np

NUM_SMPLX_JOINTS = 55
NUM_OUTPUT_JOINTS = 76  # 55 skeleton joints + nose, eyes, ears, toes, heels, 10 fingertips (smplx order)

# SMPL-X joint index <- MediaPipe pose landmark index.
BODY_PAIRS = np.array([
    (1, 23), (2, 24), (4, 25), (5, 26), (7, 27), (8, 28),        # hips, knees, ankles
    (16, 11), (17, 12), (18, 13), (19, 14), (20, 15), (21, 16),  # shoulders, elbows, wrists
    (55, 0), (57, 2), (56, 5), (59, 7), (58, 8),                 # nose, eyes, ears
    (62, 29), (65, 30), (60, 31), (63, 32),                      # heels, big toes
])
SMPLX_FROM_BODY, MP_BODY = BODY_PAIRS[:, 0], BODY_PAIRS[:, 1]

# MediaPipe hand landmark i (wrist, thumb 1-4, index 5-8, middle 9-12, ring 13-16, pinky 17-20) -> SMPL-X joint.
LEFT_HAND_SMPLX = np.array([20, 37, 38, 39, 66, 25, 26, 27, 67, 28, 29, 30, 68, 34, 35, 36, 69, 31, 32, 33, 70])
RIGHT_HAND_SMPLX = np.array([21, 52, 53, 54, 71, 40, 41, 42, 72, 43, 44, 45, 73, 49, 50, 51, 74, 46, 47, 48, 75])

# Extra (vertex-based) joints follow a skeleton joint rigidly in our fast forward kinematics.
EXTRA_JOINT_PARENT = np.array([15, 15, 15, 15, 15,          # nose, right_eye, left_eye, right_ear, left_ear
                               10, 10, 7, 11, 11, 8,         # left big/small toe, heel; right ...
                               39, 27, 30, 36, 33,           # left fingertips: thumb, index, middle, ring, pinky
                               54, 42, 45, 51, 48])          # right fingertips

# Finger chains (SMPL-X joints from knuckle to tip) used by the finger IK, per hand.
def finger_chains(side: str) -> list[list[int]]:
    m = LEFT_HAND_SMPLX if side == "left" else RIGHT_HAND_SMPLX
    return [list(m[1 + 4 * f: 5 + 4 * f]) for f in range(5)]
