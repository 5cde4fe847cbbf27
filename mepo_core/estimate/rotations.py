"""Small batched rotation helpers in torch (shapes in docstrings)."""
from __future__ import annotations

import torch


def normalize(v: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(..., 3) -> unit vectors (zero vectors stay ~zero)."""
    return v / v.norm(dim=-1, keepdim=True).clamp_min(eps)


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrix [v]x."""
    z = torch.zeros_like(v[..., 0])
    return torch.stack([torch.stack([z, -v[..., 2], v[..., 1]], -1),
                        torch.stack([v[..., 2], z, -v[..., 0]], -1),
                        torch.stack([-v[..., 1], v[..., 0], z], -1)], -2)


def rodrigues_cos_sin(axis: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotation about unit ``axis`` (..., 3) by the angle given as cos/sin (...) -> (..., 3, 3).

    R = I + sin [n]x + (1 - cos) [n]x^2  (Rodrigues; Eq. 2 / Eq. 3 of the IK paper).
    """
    K = skew(axis)
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device).expand(K.shape)
    return eye + sin[..., None, None] * K + (1 - cos)[..., None, None] * (K @ K)


def swing(t: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Swing rotation taking direction ``t`` onto direction ``p`` (Eq. 1-2). (..., 3) x2 -> (..., 3, 3)."""
    tn, pn = normalize(t), normalize(p)
    cross = torch.cross(tn, pn, dim=-1)
    sin = cross.norm(dim=-1)
    cos = (tn * pn).sum(-1)
    # Anti-parallel vectors have no unique axis: pick any axis perpendicular to t.
    fallback = torch.cross(tn, torch.tensor([0.0, 0.0, 1.0], dtype=t.dtype).expand_as(tn), dim=-1)
    fallback = torch.where(fallback.norm(dim=-1, keepdim=True) < 1e-3,
                           torch.cross(tn, torch.tensor([0.0, 1.0, 0.0], dtype=t.dtype).expand_as(tn), dim=-1),
                           fallback)
    axis = torch.where((sin < 1e-6)[..., None], normalize(fallback), cross / sin.clamp_min(1e-8)[..., None])
    return rodrigues_cos_sin(axis, cos, sin)


def frame_from_two(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Right-handed orthonormal frame whose first axis is ``x`` and second lies in the x-y plane.

    (..., 3) x2 -> (..., 3, 3) with the axes as columns.
    """
    e1 = normalize(x)
    e2 = normalize(y - (y * e1).sum(-1, keepdim=True) * e1)
    e3 = torch.cross(e1, e2, dim=-1)
    return torch.stack([e1, e2, e3], dim=-1)


def align_frames(rest_x, rest_y, target_x, target_y) -> torch.Tensor:
    """Rotation taking the frame built from rest vectors onto the one built from target vectors."""
    return frame_from_two(target_x, target_y) @ frame_from_two(rest_x, rest_y).transpose(-1, -2)


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 3) axis-angle (robust near 0 and pi, via quaternions)."""
    import roma
    return roma.rotmat_to_rotvec(R)


def axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    import roma
    return roma.rotvec_to_rotmat(v)


def fraction_of_rotation(R: torch.Tensor, frac: float) -> torch.Tensor:
    """R^frac for (..., 3, 3) rotations (same axis, angle scaled)."""
    return axis_angle_to_matrix(matrix_to_axis_angle(R) * frac)
