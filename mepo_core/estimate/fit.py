"""Short batched refinement of IK poses: 2D reprojection + root-relative 3D terms with pose/shape priors."""
from __future__ import annotations

import torch

from ..records import Camera
from .kinematics import BODY_EXTRAS, BODY_JOINTS, SkeletonFK
from .rotations import axis_angle_to_matrix, matrix_to_axis_angle

# global_orient + 21 body joints are refined; fingers, jaw and eyes keep their IK values.
BODY_POINTS = list(range(BODY_JOINTS)) + list(range(55, 55 + BODY_EXTRAS))
L_HIP, R_HIP = 1, 2


def solve_translation(joints: torch.Tensor, kp2d: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Closed-form least-squares translation putting root-relative joints on their 2D observations.

    joints (B, J, 3) camera-axes, kp2d (B, J, 3) pixels + confidence -> (B, 3). From
    fx (X + tx) - (u - cx)(Z + tz) = 0 and fy (Y + ty) - (v - cy)(Z + tz) = 0, linear in t.
    """
    u = kp2d[..., 0] - camera.cx
    v = kp2d[..., 1] - camera.cy
    w = kp2d[..., 2].clamp_min(0).sqrt()
    X, Y, Z = joints.unbind(-1)
    zeros = torch.zeros_like(u)
    rows_x = torch.stack([torch.full_like(u, camera.fx), zeros, -u], -1)
    rows_y = torch.stack([zeros, torch.full_like(v, camera.fy), -v], -1)
    A = torch.cat([rows_x, rows_y], 1) * torch.cat([w, w], 1)[..., None]
    b = torch.cat([u * Z - camera.fx * X, v * Z - camera.fy * Y], 1) * torch.cat([w, w], 1)
    sol = torch.linalg.lstsq(A, b[..., None]).solution[..., 0]
    # Guard against degenerate solutions (behind the camera, too few points).
    sol[:, 2] = sol[:, 2].clamp(0.3, 100.0)
    return sol


def project(points: torch.Tensor, camera: Camera) -> torch.Tensor:
    z = points[..., 2:3].clamp_min(1e-3)
    return torch.cat([camera.fx * points[..., 0:1] / z + camera.cx, camera.fy * points[..., 1:2] / z + camera.cy], -1)


class BatchRefiner:
    """Refines body pose, shape and translation of all people of a frame together (one optimiser, batched)."""

    def __init__(self, fk: SkeletonFK, iterations: int = 6, lr: float = 0.05,
                 w2d: float = 1.0, w3d: float = 10.0, w_pose: float = 0.05, w_betas: float = 0.002):
        self.fk, self.iterations, self.lr = fk, iterations, lr
        self.w2d, self.w3d, self.w_pose, self.w_betas = w2d, w3d, w_pose, w_betas

    def __call__(self, rotmats: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor, target3d: torch.Tensor,
                 conf3d: torch.Tensor, kp2d: torch.Tensor, camera: Camera, scale2d: torch.Tensor):
        """rotmats (B,55,3,3), betas (B,10), transl (B,3), target3d (B,76,3) hip-centred, conf3d (B,76),
        kp2d (B,76,3), scale2d (B,) person size in pixels. Returns refined (rotvecs (B,55,3), betas, transl)."""
        rotvec0 = matrix_to_axis_angle(rotmats)
        if self.iterations <= 0:
            return rotvec0, betas, transl
        body0 = rotvec0[:, :BODY_JOINTS].detach()
        body = body0.clone().requires_grad_(True)
        b = betas.clone().requires_grad_(True)
        t = transl.clone().requires_grad_(True)
        sub = BODY_POINTS  # loss on the 22 body joints + 11 head/foot points only (fast body-only kinematics)
        opt = torch.optim.Adam([body, b, t], lr=self.lr)
        kp2d, conf3d = kp2d[:, sub], conf3d[:, sub]
        c2 = kp2d[..., 2]
        c2n = c2 / c2.sum(-1, keepdim=True).clamp_min(1e-6)
        c3n = conf3d / conf3d.sum(-1, keepdim=True).clamp_min(1e-6)
        tgt_rel = target3d[:, sub] - 0.5 * (target3d[:, L_HIP] + target3d[:, R_HIP])[:, None]
        for _ in range(self.iterations):
            opt.zero_grad()
            joints, _ = self.fk.forward(axis_angle_to_matrix(body), b, body_only=True)
            # Translation is always the closed-form best fit of the current pose to the 2D points.
            joints = joints + solve_translation(joints.detach(), kp2d, camera)[:, None]
            err2d = (project(joints, camera) - kp2d[..., :2]).norm(dim=-1) / scale2d[:, None]
            rel = joints - 0.5 * (joints[:, L_HIP] + joints[:, R_HIP])[:, None]
            err3d = (rel - tgt_rel).norm(dim=-1)
            loss = (self.w2d * (c2n * torch.nn.functional.huber_loss(err2d, torch.zeros_like(err2d), delta=0.05,
                                                                       reduction="none")).sum()
                    + self.w3d * (c3n * err3d ** 2).sum()
                    + self.w_pose * ((body - body0) ** 2).sum() / body.shape[0]
                    + self.w_betas * (b ** 2).sum() / body.shape[0])
            loss.backward()
            opt.step()
        with torch.no_grad():
            joints, _ = self.fk.forward(axis_angle_to_matrix(body), b, body_only=True)
            t = solve_translation(joints, kp2d, camera)
            return torch.cat([body, rotvec0[:, BODY_JOINTS:]], 1).detach(), b.detach(), t
