"""`mepo train mepo` / `mepo eval mepo`: train the MEPO networks on synthetic scenes, and the ablation table.

Training: fixed step budget, Adam + cosine decay, checkpoints every ``--ckpt-every`` steps (resumable with
``--resume``), a CSV log and a loss-curve PNG in the run folder (``<cache>/nets/runs/<ablation>_s<seed>``).
"""
from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
import torch

from .plots import plot_loss_curve
from ..estimate.rotations import axis_angle_to_matrix
from ..nets.losses import W_DEPTH, boxes, compute_losses, full_rotmats
from ..nets.model import VARIANTS, MepoNet
from ..nets.synth import dataset
from ..paths import cache_dir

INPUT_KEYS = ("kp", "others", "sil", "world", "hands", "face_in", "face_ok")
DEFAULT_DATA = dict(train_scenes=3000, val_scenes=300, train_seed=0, val_seed=1, max_clips=600)


def runs_dir() -> Path:
    return cache_dir() / "nets" / "runs"


def prepare(data: dict) -> dict:
    """numpy dataset -> float tensors with the derived training targets."""
    t = {k: torch.as_tensor(np.asarray(data[k]), dtype=torch.float32) for k in INPUT_KEYS}
    t["sil"] = t["sil"] / 255.0
    gt_aa = torch.as_tensor(data["gt_aa"], dtype=torch.float32)
    t["gt_rot"] = axis_angle_to_matrix(gt_aa)
    t["gt_jaw"] = gt_aa[:, 22]
    joints = torch.as_tensor(data["gt_joints"], dtype=torch.float32)
    t["gt_joints"] = joints
    t["gt_rel"] = joints - joints[:, :1]
    t["gt_kp"] = torch.as_tensor(data["gt_kp"], dtype=torch.float32)
    cam, roi = torch.as_tensor(data["cam"]), torch.as_tensor(data["roi"])
    z = joints[..., 2:3].clamp_min(1e-3)
    uv = torch.cat([cam[:, None, :1] * joints[..., :1] / z + cam[:, None, 2:3],
                    cam[:, None, 1:2] * joints[..., 1:2] / z + cam[:, None, 3:4]], -1)
    uv = (uv - (roi[:, None, :2] - roi[:, None, 2:3] / 2)) / roi[:, None, 2:3]
    t["gt_boxes"] = boxes(uv)
    for k in ("gt_betas", "gt_expr", "level", "gt_transl", "cam", "roi", "gt_verts", "gt_face", "gt_depth"):
        t[k] = torch.as_tensor(np.asarray(data[k]), dtype=torch.float32)
    t["gt_aa"] = gt_aa
    t["scene"] = torch.as_tensor(data["scene"])
    t["occlusion_pairs"] = torch.as_tensor(data["occlusion_pairs"])
    return t


def subset(t: dict, idx) -> dict:
    n = len(t["kp"])
    return {k: (v[idx] if isinstance(v, torch.Tensor) and len(v) == n and k != "occlusion_pairs" else v)
            for k, v in t.items()}


def load_data(split: str, cfg: dict = DEFAULT_DATA, progress: bool = True) -> dict:
    n, seed = (cfg["train_scenes"], cfg["train_seed"]) if split == "train" else (cfg["val_scenes"], cfg["val_seed"])
    return prepare(dataset(split, n, seed, cfg["max_clips"], progress=progress))


def plot_curve(log: list[dict], path: Path) -> None:
    plot_loss_curve(log, path)


def train(ablation: str, steps: int, seed: int = 0, batch_size: int = 64, lr: float = 2e-3, run_dir: Path | None = None,
          resume: bool = False, ckpt_every: int = 500, progress: bool = True, data: dict | None = None,
          val: dict | None = None, T: float = 1.0, threads: int = 1, log_every: int = 10,
          w_depth: float = W_DEPTH) -> dict:
    torch.set_num_threads(threads)
    from ..body.model import load_body_model
    from ..estimate.kinematics import SkeletonFK
    run_dir = Path(run_dir or runs_dir() / f"{ablation}_s{seed}")
    run_dir.mkdir(parents=True, exist_ok=True)
    data = data if data is not None else load_data("train", progress=progress)
    fk = SkeletonFK(load_body_model())
    torch.manual_seed(seed)
    model = MepoNet(ablation)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    step, log = 0, []
    ckpt = run_dir / "checkpoint.pt"
    if resume and ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, log = state["step"], state["log"]
        torch.set_rng_state(state["rng"])
    gen = torch.Generator().manual_seed(seed * 7919 + step)
    n = len(data["kp"])
    use_depth = ablation == "henet_depth"
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=steps, initial=step, desc=f"train {ablation}", unit="step")
    t0 = time.perf_counter()
    model.train()

    def save():
        torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), sched=sched.state_dict(), step=step, log=log,
                        rng=torch.get_rng_state(), ablation=ablation, seed=seed, steps=steps, w_depth=w_depth),
                   ckpt.with_suffix(".tmp"))
        ckpt.with_suffix(".tmp").replace(ckpt)
        with open(run_dir / "log.csv", "w", newline="") as fh:
            keys = sorted({k for r in log for k in r})
            w = csv.DictWriter(fh, keys)
            w.writeheader()
            w.writerows(log)
        if log:
            plot_curve(log, run_dir / "loss.png")
    while step < steps:
        idx = torch.randint(n, (batch_size,), generator=gen)
        batch = subset(data, idx)
        out = model(batch)
        losses = compute_losses(out, batch, fk, use_depth, T, w_depth)
        opt.zero_grad()
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        step += 1
        if step % log_every == 0 or step == steps:
            row = {"step": step, "lr": sched.get_last_lr()[0], "seconds": time.perf_counter() - t0}
            row.update({k: float(v.detach()) for k, v in losses.items()})
            log.append(row)
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{float(losses['total']):.3f}")
        if step % ckpt_every == 0 or step == steps:
            if val is not None:
                model.eval()
                m = evaluate_model(model, val, fk)
                model.train()
                log[-1].update({"val_mpjpe_m": m["mpjpe"] / 1000})
            save()
    if bar:
        bar.close()
    return dict(model=model, log=log, run_dir=run_dir)


def export_weights(run_dir: Path, out: Path) -> None:
    state = torch.load(Path(run_dir) / "checkpoint.pt", weights_only=False)
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in state["model"].items()}
    torch.save(dict(model=sd, ablation=state["ablation"], seed=state["seed"], steps=state["step"],
                    data=DEFAULT_DATA, w_depth=state.get("w_depth", 0.2)), out)     # runs before the option: 0.2


def load_net(path: str | Path) -> MepoNet:
    state = torch.load(path, weights_only=False, map_location="cpu")
    if "opt" in state:       # a run checkpoint
        sd = state["model"]
    else:
        sd = {k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()}
    model = MepoNet(state["ablation"])
    model.load_state_dict(sd)
    return model.eval()


# ------------------------------------------------------------------------------------------------ metrics
def _procrustes_batch(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    from ..evaluate import procrustes_align
    return np.stack([procrustes_align(p, g) for p, g in zip(pred, gt)])


def metrics(joints: np.ndarray, verts: np.ndarray, face: np.ndarray, depth_key: np.ndarray, t: dict,
            higher_is_front: bool) -> dict:
    """joints (N, 76, 3), verts (N, 400, 3), face (N, 40, 3): camera axes, any origin; depth_key (N,) ->
    MPJPE / PA-MPJPE (22 body joints, pelvis-aligned), MVE (400 vertices, pelvis-aligned), hand (wrist + 20
    finger points) and face (40 face vertices) after Procrustes alignment (articulation / expression only), in mm, pairwise depth-order accuracy over the true occlusion pairs."""
    gt_j = t["gt_joints"].numpy()
    body = slice(0, 22)
    pj, gj = joints - joints[:, :1], gt_j - gt_j[:, :1]
    mpjpe = np.linalg.norm(pj[:, body] - gj[:, body], axis=-1).mean(1)
    pa = np.linalg.norm(_procrustes_batch(pj[:, body], gj[:, body]) - gj[:, body], axis=-1).mean(1)
    mve = np.linalg.norm((verts - joints[:, :1]) - (t["gt_verts"].numpy() - gt_j[:, :1]), axis=-1).mean(1)
    hand = []
    for wrist, fingers in ((20, list(range(25, 40)) + list(range(71 - 5, 71))),
                           (21, list(range(40, 55)) + list(range(71, 76)))):
        g = gt_j[:, [wrist] + fingers]            # Procrustes-aligned hand (wrist + 20 finger points), like PA-MPVPE
        hand.append(np.linalg.norm(_procrustes_batch(joints[:, [wrist] + fingers], g) - g, axis=-1).mean(1))
    has_hands = t["hands"][..., 3].amax(-1).numpy() > 0                       # (N, 2) hand landmarks present
    hand_err = np.concatenate([hand[0][has_hands[:, 0]], hand[1][has_hands[:, 1]]])
    ok = t["face_ok"].numpy() > 0
    gf = t["gt_face"].numpy()[ok]
    face_err = np.linalg.norm(_procrustes_batch(face[ok], gf) - gf, axis=-1).mean(1)
    depth_acc, pairs = depth_order_accuracy(depth_key, t, higher_is_front)
    return dict(mpjpe=1000 * mpjpe.mean(), pa_mpjpe=1000 * pa.mean(), mve=1000 * mve.mean(),
                hand=1000 * hand_err.mean(), face=1000 * face_err.mean(), depth_acc=depth_acc,
                pairs=pairs, people=len(gt_j))


def depth_order_accuracy(depth_key: np.ndarray, t: dict, higher_is_front: bool) -> tuple[float, int]:
    """Percent of occlusion pairs (Algorithm 1 levels, front above behind) that ``depth_key`` orders right, and
    the number of pairs."""
    pairs = t["occlusion_pairs"].numpy()
    lev = t["level"].numpy()
    pairs = pairs[lev[pairs[:, 1]] > lev[pairs[:, 0]]]                       # ordered pairs (front above behind)
    if higher_is_front:
        correct = depth_key[pairs[:, 1]] > depth_key[pairs[:, 0]]
    else:
        correct = depth_key[pairs[:, 1]] < depth_key[pairs[:, 0]]
    return 100 * correct.mean(), len(pairs)


@torch.no_grad()
def predict(model: MepoNet, t: dict, fk, batch_size: int = 256) -> dict:
    outs = []
    for s in range(0, len(t["kp"]), batch_size):
        b = subset(t, slice(s, s + batch_size))
        outs.append(model(b))
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


@torch.no_grad()
def evaluate_model(model: MepoNet, t: dict, fk, full: bool = False) -> dict:
    from ..nets.synth import VertexSubset, body_vertex_ids, face_vertex_ids
    out = predict(model, t, fk)
    R = full_rotmats(out)
    joints, _ = fk.forward(R, out["betas"])
    if not full:
        gj = t["gt_joints"]
        return dict(mpjpe=1000 * float(((joints - joints[:, :1]) - (gj - gj[:, :1]))[:, :22].norm(dim=-1).mean()))
    body = fk.body_model
    verts = VertexSubset(fk, body_vertex_ids(body))(R, out["betas"], out["expr"])
    face = VertexSubset(fk, face_vertex_ids(body))(R, out["betas"], out["expr"])
    # metric depth from the weak-perspective camera: roi_px * s = f / Z
    z = t["cam"][:, 0] / (t["roi"][:, 2] * out["cam"][:, 0].clamp_min(1e-3))
    m = metrics(joints.numpy(), verts.numpy(), face.numpy(), z.numpy(), t, False)
    m["depth_acc_z"] = m["depth_acc"]
    if model.variant == "henet_depth":          # the learned depth-order level (ties broken by metric depth)
        m["depth_acc"] = depth_order_accuracy((out["level"] - 1e-3 * z).numpy(), t, True)[0]
    return m


def evaluate_fit(t: dict, data_np: dict, body_model, refine_iterations: int = 2, progress: bool = True) -> dict:
    """The fitting-only estimator (SmplxEstimator: IK + LM refinement) on the same synthetic landmarks."""
    from ..estimate.estimator import SmplxEstimator
    return evaluate_estimator(SmplxEstimator(body_model, refine_iterations=refine_iterations), t, data_np,
                              body_model, progress)


def evaluate_estimator(est, t: dict, data_np: dict, body_model, progress: bool = True) -> dict:
    """Any frame estimator (``estimate(frame)``) on the synthetic validation landmarks, through the same code
    path as real footage (for ``MepoEstimator``: inputs rebuilt from ``Landmarks``, capsule silhouettes)."""
    from ..estimate.joint_map import LEFT_HAND_SMPLX, MP_BODY, RIGHT_HAND_SMPLX
    from ..nets.synth import VertexSubset, body_vertex_ids, face_vertex_ids
    from ..records import Camera, FrameRecord, Landmarks, Person
    fk = est.fk
    use_level = getattr(getattr(est, "net", None), "variant", "") == "henet_depth"
    N = len(t["kp"])
    joints = np.zeros((N, 76, 3), np.float32)
    depth = np.zeros(N, np.float32)
    rot = torch.zeros(N, 55, 3, 3)
    betas, expr = torch.zeros(N, 10), torch.zeros(N, 10)
    scenes = data_np["scene"]
    rng = np.random.default_rng(5)
    it = np.unique(scenes)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc=type(est).__name__, unit="scene")
    for s in it:
        rows = np.nonzero(scenes == s)[0]
        c = data_np["cam"][rows[0]]
        cam = Camera(*[float(v) for v in c[:4]], int(c[4]), int(c[5]))
        frame = FrameRecord(0, 0.0, np.zeros((int(c[5]), int(c[4]), 3), np.uint8), cam)
        for r in rows:
            b2 = np.zeros((33, 3), np.float32)
            bw = np.zeros((33, 3), np.float32)
            b2[MP_BODY] = data_np["kp_px"][r]
            bw[MP_BODY] = data_np["world"][r]
            lm = Landmarks(body_2d=b2, body_world=bw)
            for h, (name, m) in enumerate((("left", LEFT_HAND_SMPLX), ("right", RIGHT_HAND_SMPLX))):
                hand = data_np["hands"][r, h]
                if hand[0, 3] > 0:
                    uv = cam.project(data_np["gt_joints"][r, m]) + rng.normal(0, 2.0, (21, 2))
                    setattr(lm, f"{name}_hand_3d", hand[:, :3] * 100.0)
                    setattr(lm, f"{name}_hand_2d", np.concatenate([uv, hand[:, 3:]], 1).astype(np.float32))
            good = b2[:, 2] > 0.3
            box = np.concatenate([b2[good, :2].min(0), b2[good, :2].max(0)]) if good.any() else np.zeros(4)
            frame.people.append(Person(box=box.astype(np.float32), landmarks=lm))
        est.estimate(frame)
        for r, p in zip(rows, frame.people):
            joints[r] = p.joints3d
            depth[r] = (p.depth_level - 1e-3 * p.joints3d[0, 2]) if use_level else p.joints3d[0, 2]
            stacked = {k: torch.as_tensor(getattr(p.params, k))[None] for k in p.params.KEYS}
            rot[r] = est._rotmats(stacked)[0]
            betas[r] = stacked["betas"][0]
            expr[r] = stacked["expression"][0]
    with torch.no_grad():
        verts = VertexSubset(fk, body_vertex_ids(body_model))(rot, betas, expr).numpy()
        face = VertexSubset(fk, face_vertex_ids(body_model))(rot, betas, expr).numpy()
        _, P = fk._chain(rot, body_model.rest_joints(betas), 55)
    # vertices are relative to the chain's origin; express them relative to the fitted pelvis like the joints
    verts = verts - P[:, :1].numpy() + joints[:, :1]
    face = face - P[:, :1].numpy() + joints[:, :1]
    return metrics(joints, verts, face, depth, t, higher_is_front=use_level)


def format_table(rows: list[tuple[str, dict]]) -> str:
    head = (f"{'estimator':24s} {'MPJPE':>7s} {'PA-MPJPE':>9s} {'MVE':>7s} {'hand':>7s} {'face':>7s} {'depth-order':>12s}"
            f" {'order(z)':>9s}")
    lines = [head, "-" * len(head)]
    for name, m in rows:
        z = f"{m['depth_acc_z']:8.1f}%" if "depth_acc_z" in m else f"{'':9s}"
        lines.append(f"{name:24s} {m['mpjpe']:7.1f} {m['pa_mpjpe']:9.1f} {m['mve']:7.1f} {m['hand']:7.1f} "
                     f"{m['face']:7.1f} {m['depth_acc']:11.1f}% {z}")
    lines.append(f"(mm; synthetic validation: {rows[0][1]['people']} people, {rows[0][1]['pairs']} ordered occlusion "
                 "pairs; clips disjoint from training. depth-order: fraction of true (behind, front) pairs ordered right "
                 "by metric depth, or by the learned level for henet_depth; order(z): by the net's weak-perspective "
                 "depth)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- CLI
def train_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mepo train", description="Train the MEPO networks on synthetic scenes.")
    p.add_argument("what", choices=["mepo", "face"], help="face: the real-footage face branch (nets/face.py)")
    p.add_argument("--ablation", choices=VARIANTS, default="henet_depth")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threshold", type=float, default=1.0, help="T of the depth-order loss (Eq. 5)")
    p.add_argument("--depth-weight", type=float, default=W_DEPTH,
                   help="weight of the depth-order loss (henet_depth); the shipped mepo.pt was trained with 0.2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--run-dir", help="default: <cache>/nets/runs/<ablation>_s<seed>")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("--export", help="write the final weights (fp16) to this file")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.what == "face":
        return _train_face_main(a)
    val = load_data("val", progress=not a.quiet)
    res = train(a.ablation, a.steps, a.seed, a.batch, a.lr, a.run_dir, a.resume, progress=not a.quiet,
                val=val, T=a.threshold, threads=a.threads, w_depth=a.depth_weight)
    if a.export:
        export_weights(res["run_dir"], Path(a.export))
    print(f"mepo: trained {a.ablation} -> {res['run_dir']}")
    return 0


def _train_face_main(a) -> int:
    from ..body.model import load_body_model
    from ..nets.face import face_weights, save_face, train_face
    net, log = train_face(load_body_model(), a.steps, a.seed, progress=not a.quiet)
    out = Path(a.export) if a.export else face_weights()
    save_face(net, out, a.seed, a.steps)
    print(f"mepo: trained the face branch ({a.steps} steps, final L1 {log[-1]['total']:.3f}) -> {out}")
    return 0


def eval_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mepo eval mepo", description="Ablation table on synthetic validation scenes.")
    p.add_argument("--runs", nargs="*", default=[f"{v}_s0" for v in VARIANTS],
                   help="run folders (names under <cache>/nets/runs or paths) or weight files")
    p.add_argument("--no-fit", action="store_true", help="skip the fitting-only reference row")
    p.add_argument("--estimator-path", action="store_true",
                   help="also run each net through MepoEstimator (the real-footage input path), with and without "
                        "2 LM refinement steps")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from ..body.model import load_body_model
    from ..estimate.kinematics import SkeletonFK
    cfg = DEFAULT_DATA
    data_np = dataset("val", cfg["val_scenes"], cfg["val_seed"], cfg["max_clips"], progress=not a.quiet)
    t = prepare(data_np)
    body = load_body_model()
    fk = SkeletonFK(body)
    rows = []
    if not a.no_fit:
        rows.append(("fit (IK + refine)", evaluate_fit(t, data_np, body, progress=not a.quiet)))
    for r in a.runs:
        path = Path(r)
        if not path.exists():
            path = runs_dir() / r
        if path.is_dir():
            path = path / "checkpoint.pt"
        if not path.is_file():
            print(f"mepo: skipping {r}: no checkpoint")
            continue
        model = load_net(path)
        name = path.parent.name if path.name == "checkpoint.pt" else f"{model.variant} ({path.name})"
        rows.append((f"mepo {name}", evaluate_model(model, t, fk, full=True)))
        if a.estimator_path:
            from ..nets.estimator import MepoEstimator
            for it in (0, 2):
                est = MepoEstimator(body, weights=path, refine_iterations=it)
                rows.append((f"  as estimator{' +2 LM' if it else ''}",
                             evaluate_estimator(est, t, data_np, body, progress=not a.quiet)))
    print(format_table(rows))
    return 0


def bench_main(argv: list[str]) -> int:
    """`mepo bench nets`: inference cost per person of the networks alone and of the whole estimators."""
    p = argparse.ArgumentParser(prog="mepo bench nets", description="Per-person inference cost of the MEPO nets.")
    p.add_argument("--weights", help="default: assets/nets/mepo.pt")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from ..body.model import load_body_model
    from ..estimate.estimator import SmplxEstimator
    from ..estimate.joint_map import MP_BODY
    from ..nets.estimator import MepoEstimator
    from ..records import Camera, FrameRecord, Landmarks, Person
    cfg = DEFAULT_DATA
    d = dataset("val", cfg["val_scenes"], cfg["val_seed"], cfg["max_clips"], progress=False)
    body = load_body_model()
    ests = {"fit (IK + 2 LM)": SmplxEstimator(body, refine_iterations=2),
            "mepo (net only)": MepoEstimator(body, weights=a.weights)}
    net = ests["mepo (net only)"].net
    t = prepare(d)
    print(f"threads={a.threads}")
    print(f"{'people':>6s} {'network forward':>16s} " + " ".join(f"{k:>17s}" for k in ests) + "   (ms per person)")
    for P in (1, 3, 5):
        scenes = [s for s in np.unique(d["scene"]) if (d["scene"] == s).sum() == P][:a.repeats]
        if not scenes:
            continue
        times = {k: [] for k in ests}
        tnet = []
        for s in scenes:
            rows = np.nonzero(d["scene"] == s)[0]
            b = subset(t, torch.as_tensor(rows))
            with torch.no_grad():
                net(b)
                t0 = time.perf_counter()
                net(b)
                tnet.append((time.perf_counter() - t0) / P)
            c = d["cam"][rows[0]]
            for name, est in ests.items():
                frame = FrameRecord(0, 0.0, np.zeros((480, 640, 3), np.uint8), Camera(*map(float, c[:4]), 640, 480))
                for r in rows:
                    b2, bw = np.zeros((33, 3), np.float32), np.zeros((33, 3), np.float32)
                    b2[MP_BODY], bw[MP_BODY] = d["kp_px"][r], d["world"][r]
                    good = b2[:, 2] > 0.3
                    box = np.concatenate([b2[good, :2].min(0), b2[good, :2].max(0)])
                    frame.people.append(Person(box=box.astype(np.float32), landmarks=Landmarks(b2, bw)))
                t0 = time.perf_counter()
                est.estimate(frame)
                times[name].append((time.perf_counter() - t0) / P)
        print(f"{P:6d} {1000 * np.median(tnet):16.2f} " + " ".join(f"{1000 * np.median(v):17.2f}" for v in times.values()))
    return 0
