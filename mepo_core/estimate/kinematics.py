"""Fast joints-only forward kinematics of an SMPL-X-layout body (no vertices).

The fitter only needs joints, so it skips skinning: joints = FK(rest joints(betas), rotations).
Extra joints (nose, eyes, ears, toes, heels, fingertips; vertex-based in smplx) follow their parent
joint rigidly with offsets measured once on the rest mesh.
"""
from __future__ import annotations

import numpy as np
import torch

from .rotations import axis_angle_to_matrix
from .joint_map import EXTRA_JOINT_PARENT, NUM_OUTPUT_JOINTS, NUM_SMPLX_JOINTS

BODY_JOINTS = 22   # pelvis + 21 body joints (no hands, jaw, eyes)
BODY_EXTRAS = 11   # nose, eyes, ears, toes, heels: the extra joints that hang off body joints


def hand_means(body_model) -> dict[str, np.ndarray]:
    """The mean hand poses (45,) smplx adds to ``left/right_hand_pose`` (zeros with ``flat_hand_mean``).

    SMPL-X parameters store finger rotations minus this mean; the kinematics here work on absolute rotations.
    """
    m = body_model.smplx
    out = {}
    for side in ("left", "right"):
        mean = getattr(m, f"{side}_hand_mean", None)
        flat = mean is None or getattr(m, "flat_hand_mean", False)
        out[side] = np.zeros(45, np.float32) if flat else mean.detach().numpy().reshape(-1).astype(np.float32)
    return out


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

    def local_rotmats(self, params: dict) -> torch.Tensor:
        """SMPL-X parameters (B, n) tensors -> (B, 55, 3, 3) local rotations as smplx applies them (hand means
        added)."""
        if not hasattr(self, "_hand_means"):
            self._hand_means = {k: torch.as_tensor(v) for k, v in hand_means(self.body_model).items()}
        p = params
        B = p["global_orient"].shape[0]
        rv = torch.cat([p["global_orient"], p["body_pose"], p["jaw_pose"], p["leye_pose"], p["reye_pose"],
                        p["left_hand_pose"] + self._hand_means["left"],
                        p["right_hand_pose"] + self._hand_means["right"]], 1).reshape(B, 55, 3)
        return axis_angle_to_matrix(rv)

    def rest_joints(self, betas: torch.Tensor) -> torch.Tensor:
        """(B, 10) -> (B, 76, 3) rest (T-pose) joints incl. extra joints."""
        J = self.body_model.rest_joints(betas)
        extra = J[:, self.extra_parent] + self.extra_offset
        return torch.cat([J, extra], 1)

    def forward(self, rotmats: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor | None = None,
                body_only: bool = False):
        """Posed joints (rigid extra joints).

        rotmats (B, 55, 3, 3) local rotations (or (B, 22, 3, 3) with ``body_only``), betas (B, 10), transl (B, 3)
        -> joints (B, 76, 3) and global rotations (B, 55, 3, 3). With ``body_only`` only the 22 body joints and
        the 11 head/foot extra joints are computed (B, 33, 3): the refiner's loss needs nothing else.
        """
        J = self.body_model.rest_joints(betas)
        n = BODY_JOINTS if body_only else NUM_SMPLX_JOINTS
        G, P = self._chain(rotmats, J, n)
        extra_parent, extra_offset = self.extra_parent, self.extra_offset
        if body_only:
            extra_parent, extra_offset = extra_parent[:BODY_EXTRAS], extra_offset[:BODY_EXTRAS]
        extra = P[:, extra_parent] + (G[:, extra_parent] @ extra_offset[None, :, :, None])[..., 0]
        joints = torch.cat([P, extra], 1)
        if transl is not None:
            joints = joints + transl[:, None]
        return joints, G

    def _chain(self, rotmats: torch.Tensor, J: torch.Tensor, n: int):
        """Global rotations and positions of the first n joints: (B, n, 3, 3), (B, n, 3).

        Joints are processed one tree depth at a time (about 11 batched steps instead of 55 small ones).
        """
        levels = self._levels(n)
        G_levels, P_levels = [rotmats[:, :1]], [J[:, :1]]
        for idx, parent_pos, parent_idx in levels[1:]:
            Gp, Pp = G_levels[-1][:, parent_pos], P_levels[-1][:, parent_pos]
            G_levels.append(Gp @ rotmats[:, idx])
            P_levels.append(Pp + (Gp @ (J[:, idx] - J[:, parent_idx])[..., None])[..., 0])
        order = self._level_order[n]
        return torch.cat(G_levels, 1)[:, order], torch.cat(P_levels, 1)[:, order]

    def _levels(self, n: int):
        """Per tree depth: joint indices, their parents' positions in the previous level, parent indices."""
        if not hasattr(self, "_level_cache"):
            self._level_cache, self._level_order = {}, {}
        if n not in self._level_cache:
            depth = [0] * n
            for k in range(1, n):
                depth[k] = depth[self.parents[k]] + 1
            levels, flat = [], []
            for d in range(max(depth) + 1):
                idx = [k for k in range(n) if depth[k] == d]
                prev = levels[-1][0].tolist() if levels else []
                parent_idx = [self.parents[k] for k in idx] if d else []
                levels.append((torch.tensor(idx), torch.tensor([prev.index(p) for p in parent_idx], dtype=torch.long),
                               torch.tensor(parent_idx, dtype=torch.long)))
                flat += idx
            self._level_cache[n] = levels
            self._level_order[n] = torch.tensor([flat.index(k) for k in range(n)])
        return self._level_cache[n]

    def expression_rest_joints(self, betas: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """(B, 55, 3) rest joints as smplx regresses them: after both shape and expression offsets."""
        if not hasattr(self, "_j_exprdirs"):
            m = self.body_model.smplx
            self._j_exprdirs = torch.einsum("jv,vcb->jcb", m.J_regressor, m.expr_dirs).float()
        return self.body_model.rest_joints(betas) + torch.einsum("jcb,nb->njc", self._j_exprdirs, expression)

    @torch.no_grad()
    def exact_joints(self, rotmats: torch.Tensor, betas: torch.Tensor, expression: torch.Tensor,
                     transl: torch.Tensor) -> torch.Tensor:
        """The 76 joints exactly as ``smplx`` returns them, without skinning the whole mesh.

        The 55 skeleton joints come from the kinematic chain; the 21 vertex keypoints go through the same
        linear blend skinning as smplx (shape + expression + pose blend shapes), but only for those vertices.
        rotmats (B, 55, 3, 3), betas (B, 10), expression (B, 10), transl (B, 3) -> (B, 76, 3).
        """
        if not hasattr(self, "_keypoint_skinning"):
            self._keypoint_skinning = SubsetSkinning(self.body_model,
                                                     self.body_model.smplx.vertex_joint_selector.extra_joints_idxs)
        J = self.expression_rest_joints(betas, expression)
        G, P = self._chain(rotmats, J, NUM_SMPLX_JOINTS)
        verts = self._keypoint_skinning(rotmats, G, P, J, betas, expression)
        return torch.cat([P, verts], 1) + transl[:, None]

    def __repr__(self) -> str:
        return f"SkeletonFK({self.body_model.name}, {NUM_OUTPUT_JOINTS} joints)"


class SubsetSkinning:
    """smplx's linear blend skinning (shape + expression + pose blend shapes, skin weights) restricted to a set of
    vertices, with the model data gathered once (``posedirs`` is a large strided view: gathering per call is slow).
    Used for the 21 keypoint vertices and for the app's reduced display mesh."""

    def __init__(self, body_model, vertex_ids):
        m = body_model.smplx
        ids = torch.as_tensor(np.asarray(vertex_ids), dtype=torch.long)
        cols = (ids[:, None] * 3 + torch.arange(3)[None]).reshape(-1)
        with torch.no_grad():
            self.v_template = m.v_template[ids].float()
            self.shapedirs = m.shapedirs[ids].float()
            self.exprdirs = m.expr_dirs[ids].float()
            self.posedirs = m.posedirs[:, cols].contiguous().float()        # (486, 3 n)
            self.weights = m.lbs_weights[ids].float()                       # (n, 55)

    @torch.no_grad()
    def __call__(self, rotmats, G, P, J, betas, expression) -> torch.Tensor:
        """rotmats (B, 55, 3, 3) local, G / P (B, 55, 3, 3) / (B, 55, 3) global rotations / positions, J (B, 55, 3)
        rest joints, betas / expression (B, 10) -> (B, n, 3) posed vertices (no translation)."""
        B = rotmats.shape[0]
        v = (self.v_template[None] + torch.einsum("vcb,nb->nvc", self.shapedirs, betas)
             + torch.einsum("vcb,nb->nvc", self.exprdirs, expression))
        pose_feature = (rotmats[:, 1:] - torch.eye(3)).reshape(B, -1)                       # (B, 486)
        v = v + (pose_feature @ self.posedirs).reshape(B, -1, 3)
        # Skinning transforms A_k x = G_k (x - J_k) + P_k, blended by each vertex's weights.
        A = torch.cat([G.reshape(B, 55, 9), P - (G @ J[..., None])[..., 0]], 2)             # (B, 55, 12)
        blended = (self.weights @ A).reshape(B, -1, 12)                                      # (B, n, 12)
        rot, offset = blended[..., :9].reshape(B, -1, 3, 3), blended[..., 9:]
        return (rot @ v[..., None])[..., 0] + offset
