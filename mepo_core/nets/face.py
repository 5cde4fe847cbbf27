"""The face branch for real footage: MediaPipe face-mesh landmarks -> expression 10 + jaw 3.

``MepoNet.face`` (``model.py``) reads 40 model vertices, which exist only in synthetic scenes. This branch reads
instead the 90 face-mesh landmarks that ``estimate.face_fit`` attaches to the model's head triangles (the
correspondence found by running the shipped face-mesh model on a render of the head), so the same points exist
on both sides:

- synthetic (``synth_faces``): the correspondence points of a posed, shaped, expressive model head, projected
  through a random camera into MediaPipe's ``face_3d`` layout (x, y px, relative z px), with pixel noise and a
  per-landmark offset standing in for real faces that differ from the model's;
- real: ``Landmarks.face_3d`` of ``detect/face.py``.

Both go through one normalisation (``face_input``): ``FaceFitter.head_frame`` (the fit's own similarity
alignment on the rigid points onto the mean-shape rest head, after back-projection), minus the rest points,
x and y in cm. ``mepo train face`` trains it (seconds per 1,000 steps: the data are drawn on the fly).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..estimate.face_fit import FaceFitter
from ..records import Camera

JAW_RANGE = (-0.05, 0.45)        # rad, jaw pitch drawn for training (> 0 opens the mouth)


class FaceNet(nn.Module):
    """(B, L, 2) head-frame landmark offsets (cm) -> expression (B, 10), jaw axis-angle (B, 3)."""

    def __init__(self, points: int, hidden: int = 256):
        super().__init__()
        self.points = points
        self.mlp = nn.Sequential(nn.Linear(points * 2, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden),
                                 nn.ReLU(inplace=True), nn.Linear(hidden, 13))

    def forward(self, x: torch.Tensor):
        out = self.mlp(x.reshape(x.shape[0], -1))
        return out[:, :10], out[:, 10:]


class FaceInputs:
    """The shared normalisation and the synthetic face sampler for one body model (needs its face correspondence)."""

    def __init__(self, body_model, fitter: FaceFitter):
        from ..estimate.kinematics import SkeletonFK
        from .synth import VertexSubset
        self.body, self.fitter = body_model, fitter
        self.rest = fitter.rest_points(None, 1)[0]                              # (1, L, 3) mean-shape neutral
        vids = fitter.corr.vertex_ids
        self.uniq, inv = np.unique(vids, return_inverse=True)
        self.inv = inv.reshape(vids.shape)
        self.fk = SkeletonFK(body_model)
        self.verts = VertexSubset(self.fk, self.uniq)

    @property
    def points(self) -> int:
        return len(self.fitter.corr.landmarks)

    def face_input(self, face_3d: np.ndarray, camera=None) -> torch.Tensor:
        """(B, 478, 3) px face mesh -> (B, L, 2) network input (head-frame offsets from the neutral, cm)."""
        B = len(face_3d)
        rest = np.broadcast_to(self.rest, (B,) + self.rest.shape[1:])
        Y, _, _ = self.fitter.head_frame(face_3d, rest, camera)
        return torch.as_tensor((Y - rest)[..., :2] * 100.0, dtype=torch.float32)

    @torch.no_grad()
    def synth_faces(self, n: int, rng: np.random.Generator):
        """n random faces -> face_3d (n, 478, 3) px (only the correspondence landmarks filled; the others carry the
        mean depth so that relative z is the same as over the subset), camera, expression (n, 10), jaw (n, 3)."""
        from ..estimate.rotations import axis_angle_to_matrix
        from .model import UPRIGHT
        betas = torch.as_tensor(np.clip(rng.normal(0, 1.0, (n, 10)), -2.5, 2.5), dtype=torch.float32)
        expr = torch.as_tensor(np.clip(rng.normal(0, 0.8, (n, 10)), -2, 2), dtype=torch.float32)
        jaw = np.zeros((n, 3), np.float32)
        jaw[:, 0] = rng.uniform(*JAW_RANGE, n)
        jaw[:, 1:] = rng.normal(0, 0.03, (n, 2))
        head = np.stack([rng.uniform(-0.4, 0.4, n), rng.uniform(-1.0, 1.0, n), rng.uniform(-0.3, 0.3, n)], 1)
        R = torch.eye(3).repeat(n, 55, 1, 1)
        R[:, 0] = UPRIGHT @ axis_angle_to_matrix(torch.as_tensor(head[:, [0]] * np.array([[1, 0, 0]]) + head[:, [1]]
                                                                 * np.array([[0, 1, 0]]), dtype=torch.float32))
        R[:, 0] = R[:, 0] @ axis_angle_to_matrix(torch.as_tensor(head[:, 2:] * np.array([[0, 0, 1]]),
                                                                 dtype=torch.float32))
        R[:, 22] = axis_angle_to_matrix(torch.as_tensor(jaw))
        v = self.verts(R, betas, expr).numpy()[:, self.inv]                    # (n, L, 3, 3)
        pts = np.einsum("nlkc,lk->nlc", v, self.fitter.corr.bary)
        pts = pts - pts.mean(1, keepdims=True)
        pts = pts + rng.normal(0, 0.002, pts.shape)                            # faces unlike the model's, ~2 mm
        fov = float(rng.uniform(45, 75))
        cam = Camera.from_fov(640, 480, fov)
        # face between ~25 and ~250 px tall (face mesh runs on the upscaled face crop in both cases)
        face_px = rng.uniform(25, 250, n)
        Z = cam.fx * 0.2 / face_px
        half = math.tan(math.radians(fov / 2)) * 0.8
        centre = np.stack([rng.uniform(-half, half, n) * Z, rng.uniform(-half, half, n) * Z * 0.75, Z], 1)
        P = pts + centre[:, None]
        u = cam.fx * P[..., 0] / P[..., 2] + cam.cx
        w = cam.fy * P[..., 1] / P[..., 2] + cam.cy
        zr = (P[..., 2] - Z[:, None]) * cam.fx / Z[:, None]
        obs = np.stack([u, w, zr], -1)
        sigma = 0.012 * face_px[:, None, None] + 0.3
        obs = obs + rng.normal(0, 1, obs.shape) * sigma * np.array([1, 1, 3])
        full = np.zeros((n, 478, 3))
        full[..., 2] = obs[..., 2].mean(1, keepdims=True)
        full[:, self.fitter.corr.landmarks] = obs
        return full, cam, expr, torch.as_tensor(jaw)

    def batch(self, n: int, rng: np.random.Generator):
        face_3d, cam, expr, jaw = self.synth_faces(n, rng)
        return self.face_input(face_3d, cam), expr, jaw


def face_weights() -> Path:
    from ..paths import ASSETS_DIR
    return ASSETS_DIR / "nets" / "mepo_face.pt"


def train_face(body_model, steps: int = 3000, seed: int = 0, batch_size: int = 256, lr: float = 1e-3,
               progress: bool = True) -> tuple[FaceNet, list[dict]]:
    """L1 on expression and jaw (the paper's L_mesh terms of the face), fresh synthetic faces every step."""
    fitter = FaceFitter.create(body_model)
    if fitter is None:
        from ..errors import MepoError
        raise MepoError("the body model has no face-mesh correspondence; the face branch cannot be trained")
    src = FaceInputs(body_model, fitter)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = FaceNet(src.points)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    log = []
    it = range(steps)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="train face", unit="step")
    for step in it:
        x, expr, jaw = src.batch(batch_size, rng)
        pe, pj = net(x)
        loss = (pe - expr).abs().mean() * 0.5 + (pj - jaw).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 50 == 0:
            log.append(dict(step=step + 1, total=float(loss.detach())))
    return net.eval(), log


def save_face(net: FaceNet, path: Path, seed: int, steps: int) -> None:
    torch.save(dict(model={k: v.half() for k, v in net.state_dict().items()}, points=net.points, seed=seed,
                    steps=steps), path)


def load_face(path: str | Path) -> FaceNet:
    state = torch.load(path, weights_only=False, map_location="cpu")
    net = FaceNet(state["points"])
    net.load_state_dict({k: v.float() for k, v in state["model"].items()})
    return net.eval()
