"""Fast joints-only forward kinematics of an SMPL-X-layout body (no vertices).

The fitter only needs joints, so it skips skinning: joints = FK(rest joints(betas), rotations).
Extra joints (nose, eyes, ears, toes, heels, fingertips; vertex-based in smplx) follow their parent
joint rigidly with offsets measured once on the rest mesh.
"""
from __future__ import annotations

import numpy as np
import torch

from .joint_map import EXTRA_JOINT_PARENT, NUM_OUTPUT_JOINTS, NUM_SMPLX_JOINTS


class SkeletonFK:
    """Forward kinematics for the 55 SMPL-X joints plus 21 rigid extra joints."""

    def __init__(self, body_model):
        self.body_model = body_model
        self.parents = [int(p) for p in body_model.parents]
        with torch.no_grad():
            zeros = torch.zeros(1, 10)
            rest = body_model.rest_joints(zeros)[0]                      # (55, 3)
            _, joints = body_model.forward({"betas": zeros})
            extra = joints[0, NUM_SMPLX_JOINTS:NUM_OUTPUT_JOINTS]          # (21, 3)
        self.extra_parent = torch.as_tensor(EXTRA_JOINT_PARENT)
        self.extra_offset = (extra - rest[self.extra_parent]).float()    # (21, 3) in the parent's rest frame
        self.rest_zero = rest.float()                                    # (55, 3)
        self.rest_extra_zero = extra.float()

    def rest_joints(self, betas: torch.Tensor) -> torch.Tensor:
        """(B, 10) -> (B, 76, 3) rest (T-pose) joints incl. extra joints."""
        J = self.body_model.rest_joints(betas)
        extra = J[:, self.extra_parent] + self.extra_offset
        return torch.cat([J, extra], 1)

    def forward(self, rotmats: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor | None = None):
        """Posed joints.

        rotmats (B, 55, 3, 3) local rotations, betas (B, 10), transl (B, 3) ->
        joints (B, 76, 3) and global rotations (B, 55, 3, 3).
        """
        J = self.body_model.rest_joints(betas)
        B = J.shape[0]
        G = [None] * NUM_SMPLX_JOINTS
        P = [None] * NUM_SMPLX_JOINTS
        G[0], P[0] = rotmats[:, 0], J[:, 0]
        for k in range(1, NUM_SMPLX_JOINTS):
            p = self.parents[k]
            G[k] = G[p] @ rotmats[:, k]
            P[k] = P[p] + (G[p] @ (J[:, k] - J[:, p])[..., None])[..., 0]
        G = torch.stack(G, 1)
        P = torch.stack(P, 1)
        extra = P[:, self.extra_parent] + (G[:, self.extra_parent] @ self.extra_offset[None, :, :, None])[..., 0]
        joints = torch.cat([P, extra], 1)
        if transl is not None:
            joints = joints + transl[:, None]
        return joints, G

    def __repr__(self) -> str:
        return f"SkeletonFK({self.body_model.name}, {NUM_OUTPUT_JOINTS} joints)"


def as_tensor(x, dtype=torch.float32) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=dtype)
