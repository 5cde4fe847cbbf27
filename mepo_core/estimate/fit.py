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
    """Refines body pose and shape of all people of a frame together with Levenberg-Marquardt steps.

    Residuals per person: 2D reprojection (robust: iteratively reweighted Huber), root-relative 3D landmark
    positions, and priors keeping the pose near the IK solution and the shape near the mean. The translation
    is re-solved in closed form before every step, so it always fits the current pose. Jacobians come from
    forward-mode autodiff (``torch.func.jacfwd``) vectorised over people (``vmap``).
    """

    def __init__(self, fk: SkeletonFK, iterations: int = 2, w2d: float = 1.0, w3d: float = 10.0,
                 w_pose: float = 0.02, w_betas: float = 0.002, huber_delta: float = 0.05, damping: float = 1e-3):
        self.fk, self.iterations = fk, iterations
        self.w2d, self.w3d, self.w_pose, self.w_betas = w2d, w3d, w_pose, w_betas
        self.huber_delta, self.damping = huber_delta, damping

    def _body_points(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 76) = 22 body rotvecs + 10 betas -> (B, 33, 3) body joints + head/foot points, no translation."""
        body, betas = x[:, :3 * BODY_JOINTS].reshape(-1, BODY_JOINTS, 3), x[:, 3 * BODY_JOINTS:]
        joints, _ = self.fk.forward(axis_angle_to_matrix(body), betas, body_only=True)
        return joints

    def __call__(self, rotmats: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor, target3d: torch.Tensor,
                 conf3d: torch.Tensor, kp2d: torch.Tensor, camera: Camera, scale2d: torch.Tensor):
        """rotmats (B,55,3,3), betas (B,10), transl (B,3), target3d (B,76,3), conf3d (B,76), kp2d (B,76,3),
        scale2d (B,) person size in pixels. Returns refined (rotvecs (B,55,3), betas (B,10), transl (B,3))."""
        rotvec0 = matrix_to_axis_angle(rotmats)
        if self.iterations <= 0:
            return rotvec0, betas, transl
        sub = BODY_POINTS
        kp, c2 = kp2d[:, sub], kp2d[:, sub, 2]
        c3 = conf3d[:, sub]
        w2 = (self.w2d * c2 / c2.sum(-1, keepdim=True).clamp_min(1e-6)).sqrt()
        w3 = (self.w3d * c3 / c3.sum(-1, keepdim=True).clamp_min(1e-6)).sqrt()
        tgt_rel = target3d[:, sub] - 0.5 * (target3d[:, L_HIP] + target3d[:, R_HIP])[:, None]
        x0 = torch.cat([rotvec0[:, :BODY_JOINTS].reshape(-1, 3 * BODY_JOINTS), betas], 1)
        prior_w = torch.cat([torch.full((3 * BODY_JOINTS,), self.w_pose ** 0.5), torch.full((betas.shape[1],),
                                                                                               self.w_betas ** 0.5)])
        prior_center = torch.cat([x0[:, :3 * BODY_JOINTS], torch.zeros_like(betas)], 1)
        x = x0.clone()
        for _ in range(self.iterations):
            with torch.no_grad():
                t = solve_translation(self._body_points(x), kp2d[:, sub], camera)
                e2 = ((project(self._body_points(x) + t[:, None], camera) - kp[..., :2]).norm(dim=-1)
                      / scale2d[:, None])
                robust = torch.where(e2 < self.huber_delta, torch.ones_like(e2),
                                     (self.huber_delta / e2.clamp_min(1e-9)).sqrt())

            def residuals(xi, ti, kpi, w2i, w3i, tgti, scalei, robi, pci):
                pts = self._body_points(xi[None])[0]
                r2 = (project(pts + ti, camera) - kpi[..., :2]) / scalei * (w2i * robi)[:, None]
                rel = pts - 0.5 * (pts[L_HIP] + pts[R_HIP])
                r3 = (rel - tgti) * w3i[:, None]
                return torch.cat([r2.reshape(-1), r3.reshape(-1), (xi - pci) * prior_w])

            args = (x, t, kp, w2, w3, tgt_rel, scale2d, robust, prior_center)
            r = torch.func.vmap(residuals)(*args)                                # (B, R)
            Jac = torch.func.vmap(torch.func.jacfwd(residuals))(*args)           # (B, R, 76)
            JtJ = Jac.transpose(1, 2) @ Jac
            JtJ = JtJ + self.damping * torch.diag_embed(JtJ.diagonal(dim1=1, dim2=2) + 1e-6)
            step = torch.linalg.solve(JtJ, -(Jac.transpose(1, 2) @ r[..., None]))[..., 0]
            x = x + step
        with torch.no_grad():
            t = solve_translation(self._body_points(x), kp2d[:, sub], camera)
        rotvec = torch.cat([x[:, :3 * BODY_JOINTS].reshape(-1, BODY_JOINTS, 3), rotvec0[:, BODY_JOINTS:]], 1)
        return rotvec, x[:, 3 * BODY_JOINTS:].contiguous(), t
