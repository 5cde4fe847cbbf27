"""Relation-aware refiner (Sec. 3.3 of the multi-person IK/refinement paper), small and CPU-friendly.

Tokens: N people x K=22 body joints (target first, then its N-1 nearest people by initial root distance; zero
padding + key-padding mask when fewer). Per token: the initial local rotation (6D), the joint's position relative to
its own pelvis and relative to the *target's* pelvis (this is where the relation between people enters), the 2D
reprojection residual and 3D-landmark residual of that joint (zero where not observed), and person features
(betas, root translation, box, focal length) plus a target/context flag. A learned joint-type embedding (22 x d,
shared by all people) is added: it says which joint a token is, never which person slot it sits in, so there is
no positional embedding over the sequence and the output for the target is invariant to the order of the context
people (test_refiner checks it). The paper's tokens carry joint identity implicitly through rearranged image
features; ours are rotation parameters whose meaning depends on the joint, hence the type embedding.

Output is residual: refined 6D = initial 6D + delta (per target joint token), betas and root translation from the
mean of the target's tokens. ``PoseDiscriminator`` / ``ShapeDiscriminator``: LSGAN critics (D_theta, D_beta).
"""
from __future__ import annotations

import torch
from torch import nn

K = 22                      # body joints (pelvis + 21): hands, jaw and eyes keep the initial estimate
F_OWN = 6 + 3 + 2 + 1 + 3 + 10 + 3 + 4 + 1      # rot6d, rel-own, 2D residual + conf, 3D residual, betas, root, box, f
F_IN = F_OWN + 3 + 1                             # + position relative to the target's pelvis, target flag


def rot6d(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6): first two columns."""
    return torch.cat([R[..., :, 0], R[..., :, 1]], -1)


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt (Zhou et al.)."""
    a, b = x[..., :3], x[..., 3:]
    e1 = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    b = b - (e1 * b).sum(-1, keepdim=True) * e1
    e2 = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return torch.stack([e1, e2, torch.cross(e1, e2, dim=-1)], -1)


class RelationRefiner(nn.Module):
    def __init__(self, n_people: int = 3, d: int = 64, layers: int = 2, heads: int = 4, ff: int = 128,
                 joint_embedding: bool = True):
        super().__init__()
        self.n_people, self.d = n_people, d
        self.inp = nn.Linear(F_IN, d)
        self.joint_emb = nn.Parameter(torch.randn(K, d) * 0.1) if joint_embedding else None
        layer = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.rot_head = nn.Linear(d, 6)
        self.person_head = nn.Linear(d, 13)
        for h in (self.rot_head, self.person_head):       # start as the identity refinement (delta = 0)
            nn.init.zeros_(h.weight)
            nn.init.zeros_(h.bias)

    def forward(self, tokens: torch.Tensor, pad: torch.Tensor, mask_tokens: torch.Tensor | None = None):
        """tokens (B, N, K, F_IN); pad (B, N) True for absent people; mask_tokens (B, N, K) True = input zeroed
        (training-time random masking). Returns delta rot6d (B, K, 6) and delta person (B, 13) for the target."""
        B, N = tokens.shape[:2]
        x = tokens
        drop = pad[:, :, None].expand(B, N, K)
        if mask_tokens is not None:
            drop = drop | mask_tokens
        x = x.masked_fill(drop[..., None], 0.0)
        h = self.inp(x)
        if self.joint_emb is not None:
            h = h + self.joint_emb
        key_pad = pad[:, :, None].expand(B, N, K).reshape(B, N * K)
        h = self.encoder(h.reshape(B, N * K, self.d), src_key_padding_mask=key_pad)
        h = self.norm(h[:, :K])                              # the target's tokens
        return self.rot_head(h), self.person_head(h.mean(1))


class PoseDiscriminator(nn.Module):
    """D_theta: body pose (21 local rotations, 6D) -> realness score (LSGAN)."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(21 * 6, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                 nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, R: torch.Tensor) -> torch.Tensor:
        return self.net(rot6d(R[:, 1:K]).reshape(len(R), -1))[:, 0]


class ShapeDiscriminator(nn.Module):
    """D_beta: betas -> realness score (LSGAN)."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, betas: torch.Tensor) -> torch.Tensor:
        return self.net(betas)[:, 0]
