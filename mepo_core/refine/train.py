"""`mepo train refiner` / `mepo eval refiner` / `mepo bench refiner`.

Training data: synthetic scenes of ``nets.synth`` + the fitting estimator's initial estimates (``refine.data``).
Loss: root-relative body joints (L1) + local rotations (L1 on matrices) + root position (L1) + betas (L2)
+ a small LSGAN adversarial term from D_theta / D_beta (the discriminators see GT training poses as real).
"""
from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..nets.estimator import default_weights
from ..train.plots import plot_loss_curve
from ..paths import cache_dir
from .core import apply_delta, assemble, nearest_context, observations, person_features
from .model import K, PoseDiscriminator, RelationRefiner, ShapeDiscriminator
from .skeleton import shipped_weights as skeleton_weights

VARIANTS = {            # name: (n_people, token masking, discriminators)
    "full": (3, True, True),
    "solo": (1, True, True),
    "nomask": (3, False, True),
    "nodisc": (3, True, False),
}


INIT_LABEL = {"fit": "IK + fit (initial)", "skel": "IK + skel (initial)", "mepo": "mepo nets (initial)"}


def runs_dir() -> Path:
    return cache_dir() / "refiner" / "runs"


def prepare(d: dict, fk) -> dict:
    """numpy rows -> tensors incl. the per-person token features and, per row, the other rows of its scene
    sorted by initial root distance (``others`` (R, 4), -1 padding)."""
    f = lambda k: torch.as_tensor(np.asarray(d[k]), dtype=torch.float32)
    t = {k: f(k) for k in ("init_rot", "init_betas", "init_transl", "box", "cam", "gt_betas", "gt_joints", "gt_verts")}
    from ..estimate.rotations import axis_angle_to_matrix
    t["gt_rot"] = axis_angle_to_matrix(f("gt_aa")[:, :K])
    kp, world = observations(f("kp_px"), f("world"))
    t["own"], t["joints"], t["root"] = person_features(fk, t["init_rot"], t["init_betas"], t["init_transl"], t["box"],
                                                       kp, world, t["cam"])
    scene = np.asarray(d["scene"])
    others = np.full((len(scene), 4), -1, np.int64)
    for s in np.unique(scene):
        rows = np.nonzero(scene == s)[0]
        ctx = nearest_context(t["root"][rows], 5)[:, 1:].numpy()
        others[rows] = np.where(ctx >= 0, rows[ctx.clip(0)], -1)
    t["others"] = torch.as_tensor(others)
    t["scene"] = torch.as_tensor(scene)
    t["npeople"] = torch.as_tensor(np.asarray(d["npeople"]))
    return t


def sample_context(others: torch.Tensor, n_people: int, gen: torch.Generator) -> torch.Tensor:
    """Training: half the targets get their N-1 nearest people, half a random N-1 of the scene (paper: random
    combinations during training, nearest at test)."""
    B = others.shape[0]
    valid = others >= 0
    key = torch.arange(4, dtype=torch.float32).expand(B, 4).clone()
    rnd = torch.rand(B, generator=gen) < 0.5
    key[rnd] = torch.rand(int(rnd.sum()), 4, generator=gen)
    key[~valid] = float("inf")
    order = torch.argsort(key, 1)[:, :n_people - 1]
    return torch.gather(others, 1, order)


def forward_batch(model, t: dict, rows: torch.Tensor, ctx: torch.Tensor, mask=None):
    tokens, pad = assemble(t["own"], t["joints"], t["root"], torch.cat([rows[:, None], ctx], 1))
    d_rot, d_person = model(tokens, pad, mask)
    return apply_delta(t["init_rot"][rows], t["init_betas"][rows], t["init_transl"][rows], d_rot, d_person)


def losses(fk, R, betas, transl, t: dict, rows: torch.Tensor) -> dict:
    pts, _ = fk.forward(R, betas, body_only=True)
    gj = t["gt_joints"][rows][:, list(range(K)) + list(range(55, 66))]
    rel = (pts - pts[:, :1]) - (gj - gj[:, :1])
    root = (pts[:, 0] + transl) - gj[:, 0]
    return dict(joints=rel.abs().sum(-1).mean(), rot=0.1 * (R - t["gt_rot"][rows]).abs().mean(),
                root=0.5 * root.abs().sum(-1).mean(), betas=0.01 * ((betas - t["gt_betas"][rows]) ** 2).mean())


def plot_curve(log: list[dict], path: Path) -> None:
    plot_loss_curve(log, path, ["total", "joints", "root", "rot", "adv", "disc", "val_mpjpe_m", "val_root_m"])


def train(variant: str, steps: int, t: dict, fk, val: dict | None = None, seed: int = 0, batch: int = 128,
          lr: float = 1e-3, adv_weight: float = 0.01, run_dir: Path | None = None, ckpt_every: int = 500,
          progress: bool = True, log_every: int = 20, d: int = 64, layers: int = 2) -> dict:
    n_people, masking, disc = VARIANTS[variant]
    torch.manual_seed(seed)
    cfg = dict(n_people=n_people, d=d, layers=layers)
    model = RelationRefiner(**cfg)
    D_pose, D_shape = PoseDiscriminator(), ShapeDiscriminator()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    opt_d = torch.optim.Adam(list(D_pose.parameters()) + list(D_shape.parameters()), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    gen = torch.Generator().manual_seed(seed)
    n = len(t["own"])
    log: list[dict] = []
    run_dir = Path(run_dir) if run_dir else None
    if run_dir:
        run_dir.mkdir(parents=True, exist_ok=True)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=steps, desc=f"refiner {variant}", unit="step")
    t0 = time.perf_counter()

    def save(step):
        if not run_dir:
            return
        torch.save(dict(model=model.state_dict(), config=cfg, variant=variant, step=step, steps=steps, seed=seed,
                        D_pose=D_pose.state_dict(), D_shape=D_shape.state_dict(), log=log), run_dir / "checkpoint.pt")
        with open(run_dir / "log.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, sorted({k for r in log for k in r}))
            w.writeheader()
            w.writerows(log)
        plot_curve(log, run_dir / "loss.png")

    for step in range(1, steps + 1):
        rows = torch.randint(n, (batch,), generator=gen)
        ctx = sample_context(t["others"][rows], n_people, gen) if n_people > 1 else torch.empty(batch, 0, dtype=torch.long)
        mask = None
        if masking:                         # METRO-style: a random 0-30% of the (present) tokens lose their input
            frac = 0.3 * torch.rand(batch, 1, 1, generator=gen)
            mask = torch.rand(batch, n_people, K, generator=gen) < frac
        R, betas, transl = forward_batch(model, t, rows, ctx, mask)
        L = losses(fk, R, betas, transl, t, rows)
        total = sum(L.values())
        if disc:
            adv = ((D_pose(R) - 1) ** 2).mean() + ((D_shape(betas) - 1) ** 2).mean()
            total = total + adv_weight * adv
            L["adv"] = adv_weight * adv
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if disc:                           # LSGAN critics: real = GT training poses, fake = refined poses
            real = torch.randint(n, (batch,), generator=gen)
            ld = (((D_pose(t["gt_rot"][real]) - 1) ** 2).mean() + (D_pose(R.detach()) ** 2).mean()
                  + ((D_shape(t["gt_betas"][real]) - 1) ** 2).mean() + (D_shape(betas.detach()) ** 2).mean())
            opt_d.zero_grad()
            ld.backward()
            opt_d.step()
            L["disc"] = ld
        if step % log_every == 0 or step == steps:
            row = {"step": step, "seconds": round(time.perf_counter() - t0, 1), "total": float(total.detach())}
            row.update({k: float(v.detach()) for k, v in L.items()})
            log.append(row)
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{float(total):.4f}")
        if step % ckpt_every == 0 or step == steps:
            if val is not None:
                m = quick_val(model, val, fk)
                log[-1].update(val_mpjpe_m=m[0], val_root_m=m[1])
            save(step)
    if bar:
        bar.close()
    return dict(model=model.eval(), log=log)


@torch.no_grad()
def refine_rows(model, t: dict, rows: torch.Tensor | None = None):
    """Test-time: every row refined once as the target with its N-1 nearest people of the scene."""
    rows = torch.arange(len(t["own"])) if rows is None else rows
    ctx = t["others"][rows][:, :model.n_people - 1]
    model.eval()
    return forward_batch(model, t, rows, ctx)


@torch.no_grad()
def quick_val(model, t: dict, fk) -> tuple[float, float]:
    R, betas, transl = refine_rows(model, t)
    pts, _ = fk.forward(R, betas, body_only=True)
    gj = t["gt_joints"]
    rel = ((pts[:, :K] - pts[:, :1]) - (gj[:, :K] - gj[:, :1])).norm(dim=-1).mean()
    root = ((pts[:, 0] + transl) - gj[:, 0]).norm(dim=-1).mean()
    return float(rel), float(root)


# ------------------------------------------------------------------------------------------------- metrics
CAPSULE_R = {0: 0.11, 3: 0.11, 6: 0.11, 9: 0.11, 12: 0.06, 15: 0.09, 13: 0.06, 14: 0.06, 1: 0.08, 2: 0.08,
             4: 0.06, 5: 0.06, 16: 0.05, 17: 0.05, 18: 0.04, 19: 0.04}   # radius of the bone ending at a joint


def capsule_points(joints: np.ndarray, parents: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(P, 22, 3) -> points sampled along every body bone (P, S, 3) and their capsule radii (S,)."""
    pts, rad = [], []
    for k in range(1, K):
        p = parents[k]
        r = CAPSULE_R.get(k, CAPSULE_R.get(p, 0.04)) if k not in (20, 21) else 0.035
        for a in np.linspace(0, 1, 5):
            pts.append(joints[:, p] * (1 - a) + joints[:, k] * a)
            rad.append(r)
    return np.stack(pts, 1), np.array(rad)


def interpenetrating(j1: np.ndarray, j2: np.ndarray, parents) -> bool:
    a, ra = capsule_points(j1[None], parents)
    b, rb = capsule_points(j2[None], parents)
    d = np.linalg.norm(a[0][:, None] - b[0][None], axis=-1)
    return bool((d < ra[:, None] + rb[None]).any())


def scene_metrics(joints: np.ndarray, verts: np.ndarray, t: dict, parents, sel: np.ndarray) -> dict:
    """joints (R, 76, 3), verts (R, 400, 3) camera space; sel: rows to score -> mm / %."""
    from ..train.mepo import _procrustes_batch
    gj, gv = t["gt_joints"].numpy(), t["gt_verts"].numpy()
    j, g = joints[sel, :K] - joints[sel, :1], gj[sel, :K] - gj[sel, :1]
    mpjpe = np.linalg.norm(j - g, axis=-1).mean()
    pa = np.linalg.norm(_procrustes_batch(j, g) - g, axis=-1).mean()
    mve = np.linalg.norm((verts[sel] - joints[sel, :1]) - (gv[sel] - gj[sel, :1]), axis=-1).mean()
    root = np.linalg.norm(joints[sel, 0] - gj[sel, 0], axis=-1).mean()
    scene = t["scene"].numpy()
    order, pen, pen_gt = [], [], []
    for s in np.unique(scene[sel]):
        rows = np.nonzero(scene == s)[0]
        for a in range(len(rows)):
            for b in range(a + 1, len(rows)):
                i, k = rows[a], rows[b]
                order.append((joints[i, 0, 2] < joints[k, 0, 2]) == (gj[i, 0, 2] < gj[k, 0, 2]))
                pen.append(interpenetrating(joints[i, :K], joints[k, :K], parents))
                pen_gt.append(interpenetrating(gj[i, :K], gj[k, :K], parents))
    nan = float("nan")
    return dict(mpjpe=1000 * mpjpe, pa_mpjpe=1000 * pa, mve=1000 * mve, root=1000 * root,
                depth=100 * np.mean(order) if order else nan, pen=100 * np.mean(pen) if pen else nan,
                pen_gt=100 * np.mean(pen_gt) if pen_gt else nan, people=int(len(sel)), pairs=len(order))


@torch.no_grad()
def outputs(fk, t: dict, R=None, betas=None, transl=None):
    """Exact 76 joints and the 400 MVE vertices of refined (or, with R=None, initial) parameters."""
    from ..nets.synth import VertexSubset, body_vertex_ids
    full = t["init_rot"].clone()
    if R is not None:
        full[:, :K] = R
    betas = t["init_betas"] if betas is None else betas
    transl = t["init_transl"] if transl is None else transl
    expr = torch.zeros(len(full), 10)
    joints = fk.exact_joints(full, betas, expr, transl)
    verts = VertexSubset(fk, body_vertex_ids(fk.body_model))(full, betas, expr) + transl[:, None]
    return joints.numpy(), verts.numpy()


def format_table(rows: list[tuple[str, dict]]) -> str:
    head = (f"{'people':>6s} {'method':34s} {'MPJPE':>7s} {'PA-MPJPE':>9s} {'MVE':>7s} {'root':>7s} "
            f"{'depth-order':>11s} {'interpen.':>9s}")
    lines = [head, "-" * len(head)]
    for name, m in rows:
        lines.append(f"{m['group']:>6s} {name:34s} {m['mpjpe']:7.1f} {m['pa_mpjpe']:9.1f} {m['mve']:7.1f} "
                     f"{m['root']:7.1f} {m['depth']:10.1f}% {m['pen']:8.1f}%")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- CLI
def _setup(threads: int, progress: bool):
    torch.set_num_threads(threads)
    from ..body.model import load_body_model
    from ..estimate.kinematics import SkeletonFK
    from .data import load
    fk = SkeletonFK(load_body_model())
    return fk, load


def train_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mepo train refiner", description="Train the relation-aware refiner.")
    p.add_argument("what", choices=["refiner"])
    p.add_argument("--variant", choices=list(VARIANTS), default="full")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--adv-weight", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--run-dir", help="default: <cache>/refiner/runs/<variant>_<steps>")
    p.add_argument("--export", help="also write the final weights (fp16) to this file")
    p.add_argument("--init", choices=["fit", "skel", "mepo"], default="fit",
                   help="initial estimate the refiner learns to correct: the fitting estimator (default), the "
                        "learned skeleton + IK (refine/skeleton.py, --skeleton-weights) or the MEPO networks + 2 LM "
                        "steps (--mepo-weights)")
    p.add_argument("--skeleton-weights", default=str(skeleton_weights()))
    p.add_argument("--mepo-weights", default=str(default_weights()))
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    fk, load = _setup(a.threads, not a.quiet)
    init = {"fit": lambda d: d, "skel": lambda d: skeleton_init(d, fk, a.skeleton_weights),
            "mepo": lambda d: mepo_init(d, fk, a.mepo_weights)}[a.init]
    t = prepare(init(load("train", not a.quiet)), fk)
    val = prepare(init(load("val", not a.quiet)), fk)
    suffix = "" if a.init == "fit" else f"_{a.init}"
    run_dir = Path(a.run_dir) if a.run_dir else runs_dir() / f"{a.variant}_{a.steps}{suffix}"
    res = train(a.variant, a.steps, t, fk, val, a.seed, a.batch, a.lr, a.adv_weight, run_dir, a.ckpt_every,
                progress=not a.quiet)
    if a.export:
        export(run_dir / "checkpoint.pt", Path(a.export))
    print(f"mepo: refiner {a.variant} -> {run_dir} (val MPJPE {1000 * res['log'][-1]['val_mpjpe_m']:.1f} mm)")
    return 0


def export(ckpt: Path, out: Path) -> None:
    s = torch.load(ckpt, weights_only=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(model={k: v.half() for k, v in s["model"].items()}, config=s["config"], variant=s["variant"],
                    steps=s["step"], seed=s["seed"]), out)


def eval_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mepo eval refiner", description="Refiner ablation on synthetic val scenes.")
    p.add_argument("--runs", nargs="*", default=[], help="name=checkpoint-or-weights pairs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skeleton", nargs="?", const=str(skeleton_weights()), default=None,
                   help="also score the learned-skeleton initial estimate (f^P + f^TS + IK, refine/skeleton.py) "
                        "and every run on top of it")
    p.add_argument("--mepo", nargs="?", const=str(default_weights()), default=None,
                   help="also score the MEPO networks' initial estimate (as `mepo --estimator mepo`, with "
                        "--mepo-refine-iters LM steps) and every run on top of it")
    p.add_argument("--mepo-refine-iters", type=int, default=2, help="LM steps after the networks (capture default 2)")
    a = p.parse_args(argv)
    fk, load = _setup(a.threads, False)
    from .core import load_refiner
    d = load("val", False)
    t = prepare(d, fk)
    inits = [("fit", t)]
    if a.skeleton:
        inits.append(("skel", prepare(skeleton_init(d, fk, a.skeleton), fk)))
    if a.mepo:
        inits.append(("mepo", prepare(mepo_init(d, fk, a.mepo, a.mepo_refine_iters), fk)))
    methods = []
    for iname, ti in inits:
        methods.append((INIT_LABEL[iname], outputs(fk, ti)))
        for spec in a.runs:
            name, path = spec.rsplit("=", 1)
            model = load_refiner(path)
            methods.append((f"{iname} + {name}" if len(inits) > 1 else name, outputs(fk, ti, *refine_rows(model, ti))))
    npeople = t["npeople"].numpy()
    rows = []
    for group, sel in (("1", npeople == 1), ("3", npeople == 3), ("5", npeople == 5), ("all", npeople > 0)):
        for name, (j, v) in methods:
            m = scene_metrics(j, v, t, fk.parents, np.nonzero(sel)[0])
            m["group"] = group
            rows.append((name, m))
        gt = scene_metrics(t["gt_joints"].numpy(), t["gt_verts"].numpy(), t, fk.parents, np.nonzero(sel)[0])
        print(f"[{group} people: {gt['people']} people, {gt['pairs']} pairs; GT interpenetration {gt['pen']:.1f}%]")
    print(format_table(rows))
    print("(mm; MPJPE/PA-MPJPE over 22 body joints, pelvis-aligned; MVE 400 vertices; root = pelvis position error; "
          "depth-order = all pairs in a scene by pelvis depth; interpen. = pairs whose body capsules intersect)")
    return 0


def skeleton_init(d: dict, fk, weights) -> dict:
    """The val rows with the fitting estimator's initial estimate replaced by the learned skeleton's
    (f^P + f^TS + IK; hands/jaw/eyes keep the fit's rotations, which IK has no evidence for here)."""
    from . import skeleton as S
    skel, ts = S.load(weights)
    f = lambda k: torch.as_tensor(np.asarray(d[k]), dtype=torch.float32)
    R, betas, transl = S.initial_estimate(fk, skel, ts, f("kp_px"), f("world"), f("box"), f("cam"), f("init_rot"))
    d = dict(d)
    d.update(init_rot=R.numpy(), init_betas=betas.numpy(), init_transl=transl.numpy())
    return d


def mepo_init(d: dict, fk, weights, refine_iterations: int = 2) -> dict:
    """The val rows with the initial estimate made by the MEPO networks (``nets.estimator.MepoEstimator`` on the
    same synthetic landmarks, no hand/face inputs) instead of the fitting estimator. People the networks skip
    (fewer than 4 confident landmarks) keep the fit's estimate; their count is printed."""
    from ..nets.estimator import MepoEstimator
    from .data import frame_from_rows
    est = MepoEstimator(fk.body_model, weights=weights, refine_iterations=refine_iterations)
    d = dict(d)
    R, betas, transl = d["init_rot"].copy(), d["init_betas"].copy(), d["init_transl"].copy()
    kept = 0
    for s in np.unique(d["scene"]):
        rows = np.nonzero(d["scene"] == s)[0]
        frame = est.estimate(frame_from_rows(d, rows))
        for r, p in zip(rows, frame.people):
            if p.params is None:
                kept += 1
                continue
            st = {k: torch.as_tensor(getattr(p.params, k))[None] for k in p.params.KEYS}
            R[r] = est._rotmats(st)[0].numpy()
            betas[r], transl[r] = p.params.betas, p.params.transl
    print(f"[mepo init: {len(d['scene']) - kept} people from the networks, {kept} kept the fit's estimate]")
    d.update(init_rot=R, init_betas=betas, init_transl=transl)
    return d


def bench_main(argv: list[str]) -> int:
    """`mepo bench refiner`: per-frame cost of the refiner (features + Transformer + joints) for 1, 3, 6 people."""
    p = argparse.ArgumentParser(prog="mepo bench refiner")
    p.add_argument("--weights", help="default: the refiner trained for the --estimator")
    p.add_argument("--estimator", choices=("fit", "skeleton", "mepo"), default="fit",
                   help="initial estimator timed before the refiner (fit: IK + 2 LM steps)")
    p.add_argument("--repeats", type=int, default=30)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    from ..body.model import load_body_model
    from .core import Refiner
    from .data import frame_from_rows, load
    d = load("val", False)
    body = load_body_model()
    if a.estimator == "skeleton":
        from .estimator import SkeletonEstimator
        est = SkeletonEstimator(body, face_fit=False)
    elif a.estimator == "mepo":
        from ..nets.estimator import MepoEstimator
        est = MepoEstimator(body, refine_iterations=2)
    else:
        from ..estimate.estimator import SmplxEstimator
        est = SmplxEstimator(body, refine_iterations=2, face_fit=False)
    torch.set_num_threads(1)
    ref = Refiner(est, a.weights)
    five = [s for s in np.unique(d["scene"]) if (d["scene"] == s).sum() == 5]
    print(f"{'people':>6s} {'estimator (' + a.estimator + ')':>19s} {'refiner':>9s}   (ms per frame, 1 thread, median)")
    for P in (1, 3, 6):
        te, tr = [], []
        for n in range(a.repeats):
            rows = np.nonzero(d["scene"] == five[n % len(five)])[0]
            rows = np.concatenate([rows, np.nonzero(d["scene"] == five[(n + 1) % len(five)])[0]])[:P]
            frame = frame_from_rows(d, rows)
            t0 = time.perf_counter()
            est.estimate(frame)
            t1 = time.perf_counter()
            ref.refine(frame)
            t2 = time.perf_counter()
            te.append(t1 - t0)
            tr.append(t2 - t1)
        print(f"{P:6d} {1000 * np.median(te):19.2f} {1000 * np.median(tr):9.2f}")
    return 0
