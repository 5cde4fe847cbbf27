"""Short batched refinement of IK poses: 2D reprojection + root-relative 3D terms with pose/shape priors."""
from __future__ import annotations

import torch

from ..records import Camera
from .joint_map import EXTRA_JOINT_PARENT
from .kinematics import BODY_EXTRAS, BODY_JOINTS, SkeletonFK
from .rotations import axis_angle_to_matrix, matrix_to_axis_angle, skew

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


def _point_masks(parents: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """For the 33 refined points (22 body joints + 11 head/foot points hanging off body joints):
    rot_mask[d, k] = 1 if joint k's rotation moves point d; chain_mask[d, k] = 1 if joint k's rest position
    enters point d's kinematic chain. Both (33, 22)."""
    def ancestors(k):
        out = []
        while k >= 0:
            out.append(k)
            k = parents[k]
        return out
    rot = torch.zeros(len(BODY_POINTS), BODY_JOINTS)
    chain = torch.zeros(len(BODY_POINTS), BODY_JOINTS)
    for d, point in enumerate(BODY_POINTS):
        owner = point if point < BODY_JOINTS else int(EXTRA_JOINT_PARENT[point - 55])
        movers = ancestors(owner)[1:] if point < BODY_JOINTS else ancestors(owner)
        rot[d, movers] = 1
        chain[d, ancestors(owner)] = 1
    return rot, chain


class BatchRefiner:
    """Refines body pose and shape of all people of a frame together with Levenberg-Marquardt steps.

    Residuals per person: 2D reprojection (robust: iteratively reweighted Huber), root-relative 3D landmark
    positions, and priors keeping the pose near the IK solution and the shape near the mean. The translation is
    re-solved in closed form before every step, so it always fits the current pose. The Jacobian is the analytic
    geometric one: a small rotation delta of joint k (local frame, R_k <- R_k exp(delta)) moves a descendant point
    p by (G_k delta) x (p - P_k); shape moves points linearly through the rest joints.
    """

    def __init__(self, fk: SkeletonFK, iterations: int = 2, w2d: float = 1.0, w3d: float = 10.0,
                 w_pose: float = 0.02, w_betas: float = 0.002, huber_delta: float = 0.05, damping: float = 1e-3):
        self.fk, self.iterations = fk, iterations
        self.w2d, self.w3d, self.w_pose, self.w_betas = w2d, w3d, w_pose, w_betas
        self.huber_delta, self.damping = huber_delta, damping
        self.rot_mask, self.chain_mask = _point_masks(fk.parents)
        model = fk.body_model.smplx
        S = torch.einsum("jv,vcb->jcb", model.J_regressor[:BODY_JOINTS], model.shapedirs)        # (22, 3, 10)
        par = torch.tensor([0] + fk.parents[1:BODY_JOINTS])
        self.bone_shapedirs = torch.cat([S[:1], S[1:] - S[par[1:]]], 0)                       # (22, 3, 10)
        self.bone_parent = par

    def _jacobian_points(self, G: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        """d(points)/d(x) for x = 22 local rotation deltas + betas: (B, 33, 3, 66 + nb)."""
        B = G.shape[0]
        P = pts[:, :BODY_JOINTS]
        r = pts[:, :, None] - P[:, None]                                                      # (B, 33, 22, 3)
        J_rot = -(skew(r) @ G[:, None]) * self.rot_mask[None, :, :, None, None]                # (B, 33, 22, 3, 3)
        J_rot = J_rot.permute(0, 1, 3, 2, 4).reshape(B, len(BODY_POINTS), 3, 3 * BODY_JOINTS)
        G_par = G[:, self.bone_parent].clone()
        G_par[:, 0] = torch.eye(3)
        D = G_par @ self.bone_shapedirs[None]                                                  # (B, 22, 3, nb)
        J_beta = torch.einsum("dk,bkcn->bdcn", self.chain_mask, D)                             # (B, 33, 3, nb)
        return torch.cat([J_rot, J_beta], -1)

    def __call__(self, rotmats: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor, target3d: torch.Tensor,
                 conf3d: torch.Tensor, kp2d: torch.Tensor, camera: Camera, scale2d: torch.Tensor):
        """rotmats (B,55,3,3), betas (B,10), transl (B,3), target3d (B,76,3), conf3d (B,76), kp2d (B,76,3),
        scale2d (B,) person size in pixels. Returns refined (rotvecs (B,55,3), betas (B,10), transl (B,3))."""
        if self.iterations <= 0:
            return matrix_to_axis_angle(rotmats), betas, transl
        sub = BODY_POINTS
        kp, c2 = kp2d[:, sub], kp2d[:, sub, 2]
        c3 = conf3d[:, sub]
        w2 = (self.w2d * c2 / c2.sum(-1, keepdim=True).clamp_min(1e-6)).sqrt()
        w3 = (self.w3d * c3 / c3.sum(-1, keepdim=True).clamp_min(1e-6)).sqrt()
        tgt_rel = target3d[:, sub] - 0.5 * (target3d[:, L_HIP] + target3d[:, R_HIP])[:, None]
        R = rotmats[:, :BODY_JOINTS].clone()
        b = betas.clone()
        delta_total = torch.zeros(R.shape[0], 3 * BODY_JOINTS)
        B, nb = b.shape
        eye = torch.eye(3 * BODY_JOINTS + nb)
        for _ in range(self.iterations):
            pts, G = self.fk.forward(R, b, body_only=True)
            t = solve_translation(pts, kp, camera)
            Jp = self._jacobian_points(G, pts)                                                  # (B, 33, 3, n)
            q = pts + t[:, None]
            z = q[..., 2].clamp_min(1e-3)
            e2 = (project(q, camera) - kp[..., :2]) / scale2d[:, None, None]                   # (B, 33, 2)
            norm = e2.norm(dim=-1)
            robust = torch.where(norm < self.huber_delta, torch.ones_like(norm),
                                 (self.huber_delta / norm.clamp_min(1e-9)).sqrt())
            s2 = (w2 * robust / scale2d[:, None])[..., None]                                    # (B, 33, 1)
            dproj_x = torch.stack([camera.fx / z, torch.zeros_like(z), -camera.fx * q[..., 0] / z ** 2], -1)
            dproj_y = torch.stack([torch.zeros_like(z), camera.fy / z, -camera.fy * q[..., 1] / z ** 2], -1)
            J2 = torch.stack([(dproj_x[..., None] * Jp).sum(-2), (dproj_y[..., None] * Jp).sum(-2)], 2)  # (B,33,2,n)
            r2 = e2 * scale2d[:, None, None] * s2
            J2 = J2 * s2[..., None]
            rel = pts - 0.5 * (pts[:, L_HIP] + pts[:, R_HIP])[:, None]
            r3 = (rel - tgt_rel) * w3[..., None]
            J3 = (Jp - 0.5 * (Jp[:, L_HIP] + Jp[:, R_HIP])[:, None]) * w3[..., None, None]
            r_prior = torch.cat([delta_total * self.w_pose ** 0.5, b * self.w_betas ** 0.5], 1)
            J_prior = torch.diag(torch.cat([torch.full((3 * BODY_JOINTS,), self.w_pose ** 0.5),
                                            torch.full((nb,), self.w_betas ** 0.5)])).expand(B, -1, -1)
            r = torch.cat([r2.reshape(B, -1), r3.reshape(B, -1), r_prior], 1)
            Jac = torch.cat([J2.reshape(B, -1, eye.shape[0]), J3.reshape(B, -1, eye.shape[0]), J_prior], 1)
            JtJ = Jac.transpose(1, 2) @ Jac
            JtJ = JtJ + self.damping * (torch.diag_embed(JtJ.diagonal(dim1=1, dim2=2)) + 1e-6 * eye)
            step = torch.linalg.solve(JtJ, -(Jac.transpose(1, 2) @ r[..., None]))[..., 0]
            delta = step[:, :3 * BODY_JOINTS]
            R = R @ axis_angle_to_matrix(delta.reshape(B, BODY_JOINTS, 3))
            b = b + step[:, 3 * BODY_JOINTS:]
            delta_total = delta_total + delta
        pts, _ = self.fk.forward(R, b, body_only=True)
        t = solve_translation(pts, kp, camera)
        rotvec = matrix_to_axis_angle(torch.cat([R, rotmats[:, BODY_JOINTS:]], 1))
        return rotvec, b, t
