"""Token features, context selection and the residual update of the relation-aware refiner; ``Refiner`` applies
shipped weights to a ``FrameRecord`` after any estimator (all people of a frame in one batch)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..estimate.joint_map import MP_BODY, SMPLX_FROM_BODY
from ..estimate.kinematics import SkeletonFK
from ..estimate.rotations import matrix_to_axis_angle
from ..paths import ASSETS_DIR
from .model import K, RelationRefiner, rot6d, rot6d_to_matrix

BODY_OBS = np.array([n for n, j in enumerate(SMPLX_FROM_BODY) if j < K])     # input keypoints that are body joints
BODY_OBS_JOINT = SMPLX_FROM_BODY[BODY_OBS]
L_HIP, R_HIP = 1, 2


# The refiner learns the error pattern of the initial estimate it was trained on (one trained on the fit's estimates
# makes the MEPO networks' and the learned skeleton's worse): one set of weights per estimator, by estimator class.
WEIGHTS_FOR = {"SmplxEstimator": "refiner.pt", "MepoEstimator": "refiner_mepo.pt",
               "SkeletonEstimator": "refiner_skeleton.pt"}


def shipped_weights(estimator: str = "SmplxEstimator") -> Path:
    """Default weights for the refiner after the estimator of that class name (fit: ``refiner.pt``)."""
    return ASSETS_DIR / "refiner" / WEIGHTS_FOR.get(estimator, "refiner.pt")


def observations(kp21: torch.Tensor, world21: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, 21, 3) 2D px + conf and (P, 21, 3) hip-centred metric landmarks (MP_BODY order) -> per body joint
    (P, K, 3) 2D + conf and (P, K, 3) 3D (zero where the joint is not observed)."""
    P = kp21.shape[0]
    kp, w = torch.zeros(P, K, 3), torch.zeros(P, K, 3)
    kp[:, BODY_OBS_JOINT] = kp21[:, BODY_OBS]
    w[:, BODY_OBS_JOINT] = world21[:, BODY_OBS]
    return kp, w


@torch.no_grad()
def person_features(fk: SkeletonFK, rot: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor, box: torch.Tensor,
                    kp: torch.Tensor, world: torch.Tensor, cam: torch.Tensor):
    """Per-person token features that do not depend on the other people.

    rot (P, 55|22, 3, 3) initial local rotations, betas (P, 10), transl (P, 3), box (P, 4) px, kp (P, K, 3) px+conf,
    world (P, K, 3), cam (P, 6) fx fy cx cy W H -> own (P, K, F_OWN), joints (P, K, 3) camera space, root (P, 3).
    """
    pts, _ = fk.forward(rot[:, :K].contiguous(), betas, body_only=True)
    pts = pts[:, :K]
    joints = pts + transl[:, None]
    root = joints[:, 0]
    rel_own = pts - pts[:, :1]
    z = joints[..., 2:3].clamp_min(0.1)
    uv = torch.cat([cam[:, None, :1] * joints[..., :1] / z + cam[:, None, 2:3],
                    cam[:, None, 1:2] * joints[..., 1:2] / z + cam[:, None, 3:4]], -1)
    size = (box[:, 2:] - box[:, :2]).amax(-1).clamp_min(10.0)
    conf = kp[..., 2:3].clamp(0, 1)
    res2 = ((uv - kp[..., :2]) / size[:, None, None]).clamp(-1, 1) * (conf > 0)
    hips = 0.5 * (pts[:, L_HIP] + pts[:, R_HIP])
    res3 = ((pts - hips[:, None]) - world).clamp(-0.5, 0.5) * (conf > 0)
    W, H = cam[:, 4:5], cam[:, 5:6]
    tz = transl[:, 2:3].clamp_min(0.3)
    person = torch.cat([0.5 * betas, transl[:, :2] / tz, torch.log(tz),
                        (0.5 * (box[:, :2] + box[:, 2:]) - 0.5 * torch.cat([W, H], 1)) / W,
                        (box[:, 2:] - box[:, :2]) / torch.cat([W, H], 1), cam[:, :1] / W], 1)
    own = torch.cat([rot6d(rot[:, :K]), 2 * rel_own, 5 * res2, conf, 5 * res3,
                     person[:, None].expand(-1, K, -1)], -1)
    return own, joints, root


def assemble(own: torch.Tensor, joints: torch.Tensor, root: torch.Tensor, ctx: torch.Tensor):
    """ctx (B, N) rows (target first, -1 = padding) -> tokens (B, N, K, F_IN), pad (B, N)."""
    pad = ctx < 0
    c = ctx.clamp_min(0)
    target = c[:, 0]
    rel = (joints[c] - root[target][:, None, None]) / 3.0
    flag = torch.zeros(ctx.shape + (K, 1))
    flag[:, 0] = 1.0
    tokens = torch.cat([own[c], rel, flag], -1)
    return tokens.masked_fill(pad[:, :, None, None], 0.0), pad


def nearest_context(root: torch.Tensor, n_people: int) -> torch.Tensor:
    """(M, 3) roots of one frame's people -> (M, N) rows: each person, then its N-1 nearest (-1 padding)."""
    M = root.shape[0]
    out = torch.full((M, n_people), -1, dtype=torch.long)
    out[:, 0] = torch.arange(M)
    if n_people > 1 and M > 1:
        d = torch.cdist(root, root)
        d.fill_diagonal_(float("inf"))
        order = torch.argsort(d, 1)[:, :min(n_people - 1, M - 1)]
        out[:, 1:1 + order.shape[1]] = order
    return out


def apply_delta(rot: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor, d_rot: torch.Tensor,
                d_person: torch.Tensor):
    """Residual update: refined = initial + delta (6D rotations, betas, depth-scaled translation).
    Returns body rotmats (B, K, 3, 3), betas (B, 10), transl (B, 3)."""
    R = rot6d_to_matrix(rot6d(rot[:, :K]) + d_rot)
    tz = transl[:, 2:3].clamp_min(0.3)
    return R, betas + d_person[:, :10], transl + 0.1 * tz * d_person[:, 10:13]


def load_refiner(path: str | Path | None = None) -> RelationRefiner:
    path = Path(path or shipped_weights())
    if not path.is_file():
        from ..errors import MepoError
        raise MepoError(f"refiner weights not found: {path} (train with `mepo train refiner --export {path}`)")
    state = torch.load(path, weights_only=False, map_location="cpu")
    cfg = state.get("config", {})
    model = RelationRefiner(**cfg)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()})
    return model.eval()


def frame_inputs(people, camera) -> dict:
    """What the refiner and the learned skeleton read from a frame's estimated people, as tensors: params (dict of
    stacked SMPL-X parameters), cam (P, 6) fx fy cx cy W H, kp21 (P, 21, 3) px + conf and world21 (P, 21, 3) in
    MP_BODY order, box (P, 4) px."""
    stack = lambda rows: torch.as_tensor(np.stack(rows), dtype=torch.float32)
    c = camera
    return dict(params={k: torch.as_tensor(np.stack([getattr(p.params, k) for p in people]))
                        for k in people[0].params.KEYS},
                cam=torch.tensor([[c.fx, c.fy, c.cx, c.cy, c.width, c.height]], dtype=torch.float32)
                .expand(len(people), 6),
                kp21=stack([p.landmarks.body_2d[MP_BODY] for p in people]),
                world21=stack([p.landmarks.body_world[MP_BODY] for p in people]),
                box=stack([p.box[:4] for p in people]))


class Refiner:
    """Runs after an estimator: ``refine(frame)`` updates every person's body pose, betas, translation, joints."""

    def __init__(self, estimator, weights: str | Path | None = None):
        self.estimator = estimator
        self.fk = estimator.fk
        self.model = load_refiner(weights or shipped_weights(type(estimator).__name__))
        self.n_people = self.model.n_people

    @torch.no_grad()
    def refine(self, frame) -> None:
        people = [p for p in frame.people if p.params is not None and p.landmarks is not None]
        if not people:
            return
        est = self.estimator
        x = frame_inputs(people, frame.camera)
        st, cam, box = x["params"], x["cam"], x["box"]
        rot = est._rotmats(st)
        kp, world = observations(x["kp21"], x["world21"])
        own, joints, root = person_features(self.fk, rot, st["betas"], st["transl"], box, kp, world, cam)
        tokens, pad = assemble(own, joints, root, nearest_context(root, self.n_people))
        d_rot, d_person = self.model(tokens, pad)
        R, betas, transl = apply_delta(rot, st["betas"], st["transl"], d_rot, d_person)
        rv = matrix_to_axis_angle(R).numpy().astype(np.float32)
        for i, p in enumerate(people):
            p.params.global_orient = rv[i, 0]
            p.params.body_pose = rv[i, 1:K].reshape(-1)
            p.params.betas = betas[i].numpy().astype(np.float32)
            p.params.transl = transl[i].numpy().astype(np.float32)
        # joints, keypoints (landmark confidences kept) and, when rendering, vertices as the estimator makes them
        est._finish(people, [p.params for p in people], torch.as_tensor(np.stack([p.keypoints2d for p in people])),
                    frame.camera)
