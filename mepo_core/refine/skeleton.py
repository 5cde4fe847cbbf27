"""First stage of the multi-person IK/refinement paper as small MLPs (issue 8, items 1-2).

``SkeletonNet`` (f^P): per-person landmark signals -> root-relative camera-space 3D joints (22 SMPL-X body joints
+ the 11 head/foot extra joints 55-65, which give IK the head and foot frames) and the absolute root (pelvis)
position: log-depth relative to the pinhole prior f / box size, and the pelvis' image offset from the box centre.
``TwistShapeNet`` (f^TS): the same inputs -> (cos, sin) twist of the 8 limb joints solve_ik accepts (shoulders,
elbows, hips, knees) and betas (10).
``initial_estimate``: IK (Eq. 1-4) from the predicted skeleton with the predicted twist and betas -> Theta_init
(local rotations, betas, translation), a drop-in alternative to the fitting estimator's output for the refiner.

Inputs per person (``features``): the 21 body landmarks (MP_BODY order) in 2D (box-normalised, masked by
confidence) + confidence, the landmark model's hip-centred metric 3D points (masked), box centre/size over the
focal length and log(f / box size). Trained on the synthetic scenes of ``nets.synth`` (``refine.data.load``).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..estimate.ik import solve_ik
from ..estimate.rotations import axis_angle_to_matrix, normalize, swing
from ..paths import ASSETS_DIR

K = 22
SKEL_JOINTS = list(range(K)) + list(range(55, 66))           # 33 predicted joints
TWIST_JOINTS = [16, 17, 18, 19, 1, 2, 4, 5]                   # shoulders, elbows, hips, knees
TWIST_CHILD = [18, 19, 20, 21, 4, 5, 7, 8]
N_KP = 21
F_IN = N_KP * 2 + N_KP + N_KP * 3 + 4


def shipped_weights() -> Path:
    return ASSETS_DIR / "refiner" / "skeleton.pt"


def features(kp_px: torch.Tensor, world: torch.Tensor, box: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """kp_px (P, 21, 3) px + conf, world (P, 21, 3), box (P, 4) px, cam (P, 6) fx fy cx cy W H -> (P, F_IN)."""
    conf = kp_px[..., 2].clamp(0, 1)
    ok = (conf > 0.3).float()[..., None]
    c = 0.5 * (box[:, :2] + box[:, 2:])
    size = (box[:, 2:] - box[:, :2]).amax(-1).clamp_min(10.0)
    uv = ((kp_px[..., :2] - c[:, None]) / size[:, None, None]).clamp(-2, 2) * ok
    w = world.clamp(-1.5, 1.5) * ok
    f = cam[:, :1]
    glob = torch.cat([(c - cam[:, 2:4]) / f, size[:, None] / f, torch.log(f / size[:, None])], 1)
    return torch.cat([uv.flatten(1), conf, 2 * w.flatten(1), glob], 1)


def _mlp(n_in: int, n_out: int, hidden: int, layers: int, dropout: float = 0.0) -> nn.Sequential:
    mods, d = [], n_in
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.LayerNorm(hidden), nn.GELU()] + ([nn.Dropout(dropout)] if dropout else [])
        d = hidden
    mods.append(nn.Linear(d, n_out))
    return nn.Sequential(*mods)


class SkeletonNet(nn.Module):
    """f^P: (P, F_IN) -> rel joints (P, 33, 3) root-relative camera space, root-depth log-ratio (P,), root image
    offset from the box centre in box sizes (P, 2)."""

    def __init__(self, hidden: int = 256, layers: int = 3, dropout: float = 0.0):
        super().__init__()
        self.config = dict(hidden=hidden, layers=layers, dropout=dropout)
        self.net = _mlp(F_IN, len(SKEL_JOINTS) * 3 + 3, hidden, layers, dropout)

    def forward(self, x: torch.Tensor):
        y = self.net(x)
        return 0.3 * y[:, :-3].reshape(-1, len(SKEL_JOINTS), 3), y[:, -3], 0.2 * y[:, -2:]


class TwistShapeNet(nn.Module):
    """f^TS: (P, F_IN) -> twist (P, 8, 2) as (cos, sin) (unnormalised), betas (P, 10)."""

    def __init__(self, hidden: int = 128, layers: int = 2, dropout: float = 0.0):
        super().__init__()
        self.config = dict(hidden=hidden, layers=layers, dropout=dropout)
        self.net = _mlp(F_IN, len(TWIST_JOINTS) * 2 + 10, hidden, layers, dropout)

    def forward(self, x: torch.Tensor):
        y = self.net(x)
        tw = y[:, :16].reshape(-1, 8, 2) + torch.tensor([1.0, 0.0])
        return tw, y[:, 16:]


def root_from(logz_ratio: torch.Tensor, off: torch.Tensor, box: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """Absolute pelvis (P, 3) camera space from the net's depth log-ratio and image offset (pinhole back-projection)."""
    c = 0.5 * (box[:, :2] + box[:, 2:])
    size = (box[:, 2:] - box[:, :2]).amax(-1).clamp_min(10.0)
    z = cam[:, 0] / size * torch.exp(logz_ratio)
    uv = c + off * size[:, None]
    return torch.stack([(uv[:, 0] - cam[:, 2]) / cam[:, 0] * z, (uv[:, 1] - cam[:, 3]) / cam[:, 1] * z, z], 1)


def root_targets(root: torch.Tensor, box: torch.Tensor, cam: torch.Tensor):
    """Inverse of ``root_from``: GT pelvis (P, 3) -> (log-ratio (P,), offset (P, 2))."""
    c = 0.5 * (box[:, :2] + box[:, 2:])
    size = (box[:, 2:] - box[:, :2]).amax(-1).clamp_min(10.0)
    z = root[:, 2].clamp_min(0.1)
    uv = torch.stack([cam[:, 0] * root[:, 0] / z + cam[:, 2], cam[:, 1] * root[:, 1] / z + cam[:, 3]], 1)
    return torch.log(z * size / cam[:, 0]), (uv - c) / size[:, None]


def global_rotations(R: torch.Tensor, parents=None) -> list[torch.Tensor]:
    """(B, J, 3, 3) local rotations -> per joint (B, 3, 3) global rotations (default tree: SMPL-X's 55 joints)."""
    if parents is None:
        from ..body.skeleton import SMPLX_PARENTS as parents
    G = [R[:, 0]]
    for k in range(1, R.shape[1]):
        G.append(G[parents[k]] @ R[:, k])
    return G


def twist_angle(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Swing-twist split R = swing(t, R t) R_tw(t, phi) -> phi (B,)."""
    tn = normalize(t)
    R_tw = swing(tn, (R @ tn[..., None])[..., 0]).transpose(-1, -2) @ R
    a = torch.cross(tn, torch.tensor([0.0, 0.0, 1.0]).expand_as(tn), dim=-1)
    a = torch.where(a.norm(dim=-1, keepdim=True) < 1e-3, torch.cross(tn, torch.tensor([1.0, 0, 0]).expand_as(tn), dim=-1), a)
    a = normalize(a)
    b = (R_tw @ a[..., None])[..., 0]
    return torch.atan2((torch.cross(a, b, dim=-1) * tn).sum(-1), (a * b).sum(-1))


@torch.no_grad()
def twist_labels(fk, gt_aa: torch.Tensor, gt_betas: torch.Tensor, gt_joints: torch.Tensor) -> torch.Tensor:
    """GT (cos, sin) twist per limb joint (B, 8, 2), as solve_ik consumes it: shoulders/hips relative to the frame
    IK itself builds for their parent (collar swung onto the shoulder / pelvis from the hip line and spine1; with
    all joints as targets they equal GT's except for the collar's unobservable twist), elbows/knees relative to
    the GT parent (IK reproduces it once the parent's twist is right)."""
    from ..body.skeleton import SMPLX_PARENTS as P55
    R_gt = axis_angle_to_matrix(gt_aa)
    J = fk.rest_joints(gt_betas)
    R_ik = solve_ik(J, gt_joints, torch.ones(gt_joints.shape[:2]))
    G_ik, G_gt = global_rotations(R_ik), global_rotations(R_gt)
    out = []
    for k, c in zip(TWIST_JOINTS, TWIST_CHILD):
        local = G_ik[P55[k]].transpose(-1, -2) @ G_gt[k] if k in (16, 17, 1, 2) else R_gt[:, k]
        phi = twist_angle(local, J[:, c] - J[:, k])
        out.append(torch.stack([torch.cos(phi), torch.sin(phi)], -1))
    return torch.stack(out, 1)


def twist55(tw: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(tw.shape[0], 55, 2)
    out[:, TWIST_JOINTS] = normalize(torch.cat([tw, torch.zeros_like(tw[..., :1])], -1))[..., :2]
    return out


@torch.no_grad()
def initial_estimate(fk, skel: SkeletonNet, ts: TwistShapeNet, kp_px, world, box, cam, rest_rot=None,
                     use_twist: bool = True, betas: torch.Tensor | None = None):
    """Theta_init from the learned skeleton: IK (predicted joints, predicted twist, predicted betas).
    rest_rot (P, 55, 3, 3): rotations for the joints IK has no evidence for (hands, jaw, eyes), default identity.
    betas (P, 10): known shapes (e.g. one per track ID) to use instead of f^TS's; NaN rows are predicted.
    Returns rot (P, 55, 3, 3), betas (P, 10), transl (P, 3)."""
    x = features(kp_px, world, box, cam)
    rel, lz, off = skel(x)
    tw, pred_betas = ts(x)
    betas = pred_betas if betas is None else torch.where(torch.isnan(betas), pred_betas, betas)
    root = root_from(lz, off, box, cam)
    P = x.shape[0]
    T = torch.zeros(P, 76, 3)
    T[:, SKEL_JOINTS] = rel
    conf = torch.zeros(P, 76)
    conf[:, SKEL_JOINTS] = 1.0
    R = solve_ik(fk.rest_joints(betas), T, conf, twist55(tw) if use_twist else None)
    if rest_rot is not None:
        R[:, K:] = rest_rot[:, K:]
    pts, _ = fk.forward(R[:, :K].contiguous(), betas, body_only=True)
    return R, betas, root - pts[:, 0]


# ------------------------------------------------------------------------------------------------ training
def prepare(d: dict, fk) -> dict:
    f = lambda k: torch.as_tensor(np.asarray(d[k]), dtype=torch.float32)
    t = dict(kp_px=f("kp_px"), world=f("world"), box=f("box"), cam=f("cam"), gt_betas=f("gt_betas"))
    gj = f("gt_joints")
    t["x"] = features(t["kp_px"], t["world"], t["box"], t["cam"])
    t["rel"] = (gj - gj[:, :1])[:, SKEL_JOINTS]
    t["root_abs"] = gj[:, 0]
    t["lz"], t["off"] = root_targets(gj[:, 0], t["box"], t["cam"])
    t["twist"] = torch.cat([twist_labels(fk, f("gt_aa")[i:i + 2048], t["gt_betas"][i:i + 2048], gj[i:i + 2048])
                            for i in range(0, len(gj), 2048)])
    return t


def augmented(t: dict, rows: torch.Tensor, gen: torch.Generator) -> dict:
    """Batch with fresh input noise: 2D jitter (1% of the box), landmark dropout (10%), world-point noise, box
    jitter (the root targets follow the jittered box)."""
    B = len(rows)
    kp, world, box, cam = t["kp_px"][rows].clone(), t["world"][rows].clone(), t["box"][rows].clone(), t["cam"][rows]
    size = (box[:, 2:] - box[:, :2]).amax(-1)
    kp[..., :2] += 0.01 * size[:, None, None] * torch.randn(B, N_KP, 2, generator=gen)
    kp[..., 2] *= (torch.rand(B, N_KP, generator=gen) > 0.1).float()
    world += 0.02 * torch.randn(B, N_KP, 3, generator=gen)
    box += 0.03 * size[:, None] * torch.randn(B, 4, generator=gen)
    gj0 = t["root_abs"][rows]
    lz, off = root_targets(gj0, box, cam)
    return dict(x=features(kp, world, box, cam), rel=t["rel"][rows], lz=lz, off=off, twist=t["twist"][rows],
                gt_betas=t["gt_betas"][rows])


def skel_loss(skel, t, rows=None):
    rows = slice(None) if rows is None else rows
    rel, lz, off = skel(t["x"][rows])
    return dict(joints=(rel - t["rel"][rows]).abs().sum(-1).mean(), depth=(lz - t["lz"][rows]).abs().mean(),
                off=(off - t["off"][rows]).abs().sum(-1).mean())


def ts_loss(ts, t, rows=None):
    rows = slice(None) if rows is None else rows
    tw, betas = ts(t["x"][rows])
    return dict(twist=((tw - t["twist"][rows]) ** 2).sum(-1).mean(),
                betas=0.1 * ((betas - t["gt_betas"][rows]) ** 2).mean())


def train(t: dict, steps: int = 3000, batch: int = 256, lr: float = 2e-3, seed: int = 0, progress: bool = True,
          skel_cfg: dict | None = None, ts_cfg: dict | None = None, log_every: int = 50, augment: bool = True,
          weight_decay: float = 1e-4):
    torch.manual_seed(seed)
    skel, ts = SkeletonNet(**(skel_cfg or {})), TwistShapeNet(**(ts_cfg or {}))
    params = list(skel.parameters()) + list(ts.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    gen = torch.Generator().manual_seed(seed)
    n, log, t0 = len(t["x"]), [], time.perf_counter()
    for step in range(1, steps + 1):
        rows = torch.randint(n, (batch,), generator=gen)
        b = augmented(t, rows, gen) if augment else {k: t[k][rows] for k in ("x", "rel", "lz", "off", "twist", "gt_betas")}
        L = skel_loss(skel, b)
        L.update(ts_loss(ts, b))
        total = sum(L.values())
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps or step == 1:
            row = dict(step=step, seconds=round(time.perf_counter() - t0, 1), total=float(total))
            row.update({k: float(v) for k, v in L.items()})
            log.append(row)
            if progress:
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                      flush=True)
    return skel.eval(), ts.eval(), log


def save(skel, ts, path: Path, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(skel={k: v.half() for k, v in skel.state_dict().items()}, skel_config=skel.config,
                    ts={k: v.half() for k, v in ts.state_dict().items()}, ts_config=ts.config, **meta), path)


def load(path: str | Path | None = None):
    s = torch.load(Path(path or shipped_weights()), weights_only=False, map_location="cpu")
    skel, ts = SkeletonNet(**s["skel_config"]), TwistShapeNet(**s["ts_config"])
    skel.load_state_dict({k: v.float() for k, v in s["skel"].items()})
    ts.load_state_dict({k: v.float() for k, v in s["ts"].items()})
    return skel.eval(), ts.eval()


def main(argv: list[str] | None = None) -> int:
    """python -m mepo_core.refine.skeleton [--steps N] [--export PATH]: train f^P and f^TS on the synthetic scenes."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m mepo_core.refine.skeleton")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--export", default=str(shipped_weights()))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from ..body.model import load_body_model
    from ..estimate.kinematics import SkeletonFK
    from .data import load as load_data
    fk = SkeletonFK(load_body_model())
    t = prepare(load_data("train", False), fk)
    skel, ts, log = train(t, a.steps, a.batch, seed=a.seed, skel_cfg=dict(hidden=a.hidden, dropout=a.dropout),
                          ts_cfg=dict(dropout=a.dropout), augment=not a.no_augment, weight_decay=a.weight_decay)
    save(skel, ts, Path(a.export), dict(steps=a.steps, batch=a.batch, seed=a.seed, log=log, argv=argv))
    print(f"saved {a.export}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
