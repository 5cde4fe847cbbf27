"""SMPL-X's 55-joint tree, shared by the loader, the open-model builder and the stand-in."""
from __future__ import annotations

import numpy as np
from smplx.joint_names import JOINT_NAMES

#: Parent of each of the 55 SMPL-X joints (-1 for the pelvis), in smplx's joint order.
SMPLX_PARENTS = np.array(
    [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
     20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
     21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53], dtype=np.int64)

#: The 55 skeleton joint names (smplx order).
SMPLX_JOINT_NAMES = tuple(JOINT_NAMES[:55])

#: Names of the vertex-picked keypoints that smplx appends after the 55 joints (the keys of its
#: ``vertex_ids`` dict), in the order ``VertexJointSelector`` appends them.
VERTEX_KEYPOINT_KEYS = ("nose", "reye", "leye", "rear", "lear",
                        "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
                        "lthumb", "lindex", "lmiddle", "lring", "lpinky",
                        "rthumb", "rindex", "rmiddle", "rring", "rpinky")
