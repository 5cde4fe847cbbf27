"""The MEPO networks (paper: "Multi-person Expressive POse"), small enough to train on a CPU.

Per person ROI (64 x 64 signals, rendered/pooled to 32 x 32 for the CNNs):
  image-like input I  = keypoint maps of *everyone* inside the ROI (the landmark model's heatmaps fire on every
                        body in a crowded crop) + the people silhouette of the ROI;
  target heatmap H    = 2D Gaussians at the target's landmarks, amplitude = landmark confidence (paper Sec. 3.2);
  vectors             = the target's metric hip-centred 3D landmarks + confidences; wrist-relative 3D hand
                        landmarks; face landmarks.
BodyBranch: stem CNN -> F_p; HENet (Eq. 4): F_he = F_p * F_w + F_hb with F_w = sigmoid(maxpool_c F_hs) +
sigmoid(avgpool_c F_hs); DepthNet on the image feature (two IDF branches -> F_d, F_ad); F' = F_he (+) F_D (Eq. 3);
PoseNet: 1x1 conv pose maps -> soft-argmax -> bilinear joint features + coordinates -> FC (joined with the hand
features, as the paper joins F_hand) -> global orient + body pose (6D), shape 10, camera 3 (weak perspective in
the ROI) and the depth-order level. HandBranch / FaceBranch: small MLPs on the hand / face landmarks.

Ablations (``variant``): ``baseline`` (no heatmap, no DepthNet), ``heatmap`` (heatmap features concatenated),
``henet`` (HENet + DepthNet), ``henet_depth`` (same network, trained with the depth-order loss).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .synth import NUM_KP

VARIANTS = ("baseline", "heatmap", "henet", "henet_depth")
NET_RES = 32          # the 64 x 64 ROI signals are rendered / pooled to 32 x 32 for the CNNs (CPU budget)
NUM_BODY_ROT = 22     # global orient + 21 body joints
NUM_HAND_ROT = 15
FACE_POINTS = 40
UPRIGHT = torch.diag(torch.tensor([1.0, -1.0, -1.0]))


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt (Zhou et al.); columns are the two vectors and their cross."""
    a, b = x[..., :3], x[..., 3:]
    e1 = F.normalize(a, dim=-1)
    e2 = F.normalize(b - (e1 * b).sum(-1, keepdim=True) * e1, dim=-1)
    return torch.stack([e1, e2, torch.cross(e1, e2, dim=-1)], -1)


def render_heatmaps(kp: torch.Tensor, size: int = NET_RES, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian heatmaps. kp (B, P, K, 3): ROI-normalised x, y in [0, 1] + confidence (amplitude); several
    people (P) are summed (clamped to 1). -> (B, K, size, size). Separable: exp(-dx^2) exp(-dy^2)."""
    grid = (torch.arange(size, dtype=kp.dtype) + 0.5)
    gx = torch.exp(-((kp[..., 0:1] * size - grid) ** 2) / (2 * sigma ** 2))       # (B, P, K, S)
    gy = torch.exp(-((kp[..., 1:2] * size - grid) ** 2) / (2 * sigma ** 2)) * kp[..., 2:3]
    return torch.einsum("bpky,bpkx->bkyx", gy, gx).clamp(max=1.0)


def conv(cin, cout, stride=1, k=3):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class HENet(nn.Module):
    """Heatmap Enhancement Net, Eq. 4: F_he = F (*) F_w + F_hb.

    Two independent conv branches on the heatmap give the scale feature F_hs and the bias feature F_hb (C x H x W);
    F_w = sigmoid(max over channels of F_hs) + sigmoid(mean over channels of F_hs), (1 x H x W)."""

    def __init__(self, heat_channels: int, channels: int):
        super().__init__()
        def branch():
            return nn.Sequential(conv(heat_channels, 16, 2), conv(16, channels, 2),
                                 nn.Conv2d(channels, channels, 3, 1, 1))
        self.scale_branch, self.bias_branch = branch(), branch()

    def weights(self, heat: torch.Tensor) -> torch.Tensor:
        f_hs = self.scale_branch(heat)
        return torch.sigmoid(f_hs.amax(1, keepdim=True)) + torch.sigmoid(f_hs.mean(1, keepdim=True))

    def forward(self, feat: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
        return feat * self.weights(heat) + self.bias_branch(heat)


class IDF(nn.Module):
    """Image Depth Feature branch: 1x1 conv C -> c, reshape (c*H) x W, three 1x1 (1D) convs -> H x W."""

    def __init__(self, channels: int, height: int, mid: int = 4, hidden: int = 32):
        super().__init__()
        self.reduce = nn.Conv2d(channels, mid, 1)
        self.mlp = nn.Sequential(nn.Conv1d(mid * height, hidden, 1), nn.ReLU(inplace=True),
                                 nn.Conv1d(hidden, hidden, 1), nn.ReLU(inplace=True), nn.Conv1d(hidden, height, 1))

    def forward(self, feat: torch.Tensor):
        f = self.reduce(feat)                                   # F'_I (B, c, H, W)
        B, c, H, W = f.shape
        out = self.mlp(f.reshape(B, c * H, W))                  # (B, H, W)
        return out[:, None], f


class DepthNet(nn.Module):
    """Two IDF branches: depth feature F_d and accentuated depth feature F_ad = IDF_2 + F_d + F'_I2 (the
    intermediate feature, averaged over its channels to one map); depthmap F_D = [F_d, F_ad] (2 x H x W)."""

    def __init__(self, channels: int, height: int):
        super().__init__()
        self.depth, self.accent = IDF(channels, height), IDF(channels, height)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        f_d, _ = self.depth(feat)
        out, inter = self.accent(feat)
        f_ad = out + f_d + inter.mean(1, keepdim=True)
        return torch.cat([f_d, f_ad], 1)


class PoseNet(nn.Module):
    """1x1 conv pose maps -> soft-argmax joint coordinates -> bilinear features at the joints, concatenated with
    the coordinates (the joint feature F_j)."""

    def __init__(self, channels: int, joints: int = NUM_KP):
        super().__init__()
        self.pose_map = nn.Conv2d(channels, joints, 1)
        self.joints = joints

    def forward(self, feat: torch.Tensor):
        B, C, H, W = feat.shape
        maps = self.pose_map(feat).reshape(B, self.joints, H * W).softmax(-1).reshape(B, self.joints, H, W)
        xs = (torch.arange(W, dtype=feat.dtype) + 0.5) / W
        ys = (torch.arange(H, dtype=feat.dtype) + 0.5) / H
        coords = torch.stack([(maps.sum(2) * xs).sum(-1), (maps.sum(3) * ys).sum(-1)], -1)   # (B, J, 2) in [0, 1]
        sampled = F.grid_sample(feat, (coords * 2 - 1)[:, :, None], align_corners=False)     # (B, C, J, 1)
        joint_feat = torch.cat([sampled[..., 0].transpose(1, 2), coords], -1)               # (B, J, C + 2)
        return joint_feat.reshape(B, -1), coords


class HandBranch(nn.Module):
    """Wrist-relative 3D hand landmarks (21 x (xyz, conf)) -> hand feature F_hand and 15 finger rotations (6D)."""

    def __init__(self, feat: int = 32):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(21 * 4, 128), nn.ReLU(inplace=True), nn.Linear(128, 128),
                                 nn.ReLU(inplace=True), nn.Linear(128, feat), nn.ReLU(inplace=True))
        self.head = nn.Linear(feat, NUM_HAND_ROT * 6)

    def forward(self, hand: torch.Tensor):
        f = self.mlp(hand.reshape(hand.shape[0], -1))
        return f, self.head(f)


class FaceBranch(nn.Module):
    """Face landmarks (normalised to the face box) -> expression 10 + jaw 3 (axis-angle)."""

    def __init__(self, points: int = FACE_POINTS):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(points * 2 + 1, 128), nn.ReLU(inplace=True), nn.Linear(128, 64),
                                 nn.ReLU(inplace=True), nn.Linear(64, 13))

    def forward(self, face: torch.Tensor, ok: torch.Tensor):
        out = self.mlp(torch.cat([face.reshape(face.shape[0], -1), ok[:, None]], 1)) * ok[:, None]
        return out[:, :10], out[:, 10:]


class MepoNet(nn.Module):
    def __init__(self, variant: str = "henet_depth", channels: int = 32):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}")
        self.variant = variant
        C = channels
        feat_hw = NET_RES // 4
        self.stem = nn.Sequential(conv(NUM_KP + 1, 16, 2), conv(16, C, 2), conv(C, C))
        cf = C
        if variant == "heatmap":
            self.heat = nn.Sequential(conv(NUM_KP, 16, 2), conv(16, C, 2), conv(C, C))
            cf = 2 * C
        elif variant in ("henet", "henet_depth"):
            self.henet = HENet(NUM_KP, C)
            self.depthnet = DepthNet(C, feat_hw)
            cf = C + 2
        self.posenet = PoseNet(cf)
        self.hands = nn.ModuleList([HandBranch(), HandBranch()])
        self.face = FaceBranch()
        vec = NUM_KP * 4
        self.fc = nn.Sequential(nn.Linear(NUM_KP * (cf + 2) + vec + 2 * 32, 256), nn.ReLU(inplace=True),
                                nn.Linear(256, 256), nn.ReLU(inplace=True))
        self.out_pose = nn.Linear(256, NUM_BODY_ROT * 6)
        self.out_shape, self.out_cam, self.out_level = nn.Linear(256, 10), nn.Linear(256, 3), nn.Linear(256, 1)
        with torch.no_grad():                                   # start at identity rotations, a centred camera
            self.out_pose.weight.mul_(0.01)
            self.out_pose.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0]).repeat(NUM_BODY_ROT))
            self.out_cam.bias.copy_(torch.tensor([0.5, 0.5, 0.5]))
            for h in self.hands:
                h.head.weight.mul_(0.01)
                h.head.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0]).repeat(NUM_HAND_ROT))

    def forward(self, batch: dict) -> dict:
        """batch: kp (B, 21, 3) ROI-normalised + conf, others (B, 4, 21, 3), sil (B, 64, 64) in [0, 1],
        world (B, 21, 3) metres, hands (B, 2, 21, 4), face_in (B, 40, 2), face_ok (B,)."""
        kp = batch["kp"]
        everyone = torch.cat([kp[:, None], batch["others"]], 1)
        sil = F.adaptive_avg_pool2d(batch["sil"][:, None], NET_RES)
        image = torch.cat([render_heatmaps(everyone), sil], 1)
        f_p = self.stem(image)
        if self.variant == "baseline":
            feat = f_p
        elif self.variant == "heatmap":
            feat = torch.cat([f_p, self.heat(render_heatmaps(kp[:, None]))], 1)
        else:
            f_he = self.henet(f_p, render_heatmaps(kp[:, None]))
            feat = torch.cat([f_he, self.depthnet(f_p)], 1)            # Eq. 3: F' = HENet(F_p, F_h) (+) F_D
        joint_feat, coords = self.posenet(feat)
        hand_feats, hand_rot = [], []
        for h in range(2):
            f, r = self.hands[h](batch["hands"][:, h])
            hand_feats.append(f)
            hand_rot.append(r)
        vec = torch.cat([batch["world"].reshape(len(kp), -1), kp[..., 2]], 1)
        z = self.fc(torch.cat([joint_feat, vec] + hand_feats, 1))
        expr, jaw = self.face(batch["face_in"], batch["face_ok"])
        B = len(kp)
        body_rot = rot6d_to_matrix(self.out_pose(z).reshape(B, NUM_BODY_ROT, 6))
        # global orient relative to an upright person facing the camera (camera y points down: 180 deg about x)
        body_rot = torch.cat([UPRIGHT @ body_rot[:, :1], body_rot[:, 1:]], 1)
        return dict(body_rot=body_rot,
                    hand_rot=rot6d_to_matrix(torch.stack(hand_rot, 1).reshape(B, 2, NUM_HAND_ROT, 6)),
                    betas=self.out_shape(z), cam=self.out_cam(z), level=self.out_level(z)[:, 0],
                    coords=coords, expr=expr, jaw=jaw)
