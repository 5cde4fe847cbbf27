"""`mepo eval h36m`: PA-MPJPE / MPJPE against the Human3.6M frames with 3D ground truth in ../shared/data/gt/h36m."""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import cv2
import numpy as np

from .records import Camera, FrameRecord

# H36M 17-joint order (mmpose) -> SMPL-X joint index, for the joints both skeletons define at the same place.
H36M_TO_SMPLX = {1: 2, 2: 5, 3: 8, 4: 1, 5: 4, 6: 7, 11: 16, 12: 18, 13: 20, 14: 17, 15: 19, 16: 21}
# The same joints in MediaPipe's pose landmarks (baseline: MediaPipe's own metric world landmarks).
H36M_TO_MEDIAPIPE = {1: 24, 2: 26, 3: 28, 4: 23, 5: 25, 6: 27, 11: 11, 12: 13, 13: 15, 14: 12, 15: 14, 16: 16}


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Similarity transform (scale, rotation, translation) of pred (N, 3) onto gt (N, 3); returns aligned pred."""
    mp, mg = pred.mean(0), gt.mean(0)
    p, g = pred - mp, gt - mg
    U, S, Vt = np.linalg.svd(p.T @ g)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.diag([1.0, 1.0, d])
    R = U @ D @ Vt
    scale = (S * np.diag(D)).sum() / (p ** 2).sum()
    return scale * p @ R + mg


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(np.linalg.norm(procrustes_align(pred, gt) - gt, axis=-1).mean())


def mpjpe_pelvis_aligned(pred: np.ndarray, gt: np.ndarray, hips: tuple[int, int]) -> float:
    pc = pred - pred[list(hips)].mean(0)
    gc = gt - gt[list(hips)].mean(0)
    return float(np.linalg.norm(pc - gc, axis=-1).mean())


def load_h36m(root: Path):
    data = np.load(root / "test_h36m_body3d.npz", allow_pickle=False)
    with open(root / "cameras.pkl", "rb") as fh:
        cams = pickle.load(fh)
    for i, name in enumerate(data["imgname"]):
        name = str(name)
        subject, seq = name.split("/")[0], name.split("/")[1]
        cam = cams[(subject, seq.split(".")[-1])]
        yield name, root / name, data["S"][i, :, :3], data["center"][i], cam


def evaluate_h36m(root: Path, pipeline_factory) -> list[dict]:
    rows = []
    gt_idx = list(H36M_TO_SMPLX)
    for name, path, gt3d, center, cam in load_h36m(root):
        bgr = cv2.imread(str(path))
        h, w = bgr.shape[:2]
        camera = Camera(float(cam["f"][0, 0]), float(cam["f"][1, 0]), float(cam["c"][0, 0]), float(cam["c"][1, 0]), w, h)
        frame = FrameRecord(0, 0.0, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), camera)
        pipeline = pipeline_factory()
        pipeline.process(frame)
        people = [p for p in frame.people if p.joints3d is not None]
        row = {"frame": Path(name).name, "found": len(people)}
        if people:
            dist = [np.linalg.norm(0.5 * (p.box[:2] + p.box[2:]) - center) for p in people]
            person = people[int(np.argmin(dist))]
            gt = gt3d[gt_idx]
            ours = person.joints3d[[H36M_TO_SMPLX[j] for j in gt_idx]]
            mp_world = person.landmarks.body_world[[H36M_TO_MEDIAPIPE[j] for j in gt_idx]]
            row.update(pa_mpjpe=1000 * pa_mpjpe(ours, gt), mpjpe=1000 * mpjpe_pelvis_aligned(ours, gt, (0, 3)),
                       mp_pa_mpjpe=1000 * pa_mpjpe(mp_world, gt),
                       root_depth_err=1000 * abs(float(ours[[0, 3]].mean(0)[2] - gt[[0, 3]].mean(0)[2])))
        rows.append(row)
    return rows


def main(argv: list[str]) -> int:
    if argv and argv[0] == "refiner":               # `mepo eval refiner`: refiner ablation on synthetic scenes
        from .refine.train import eval_main as refiner_eval_main
        return refiner_eval_main(argv[1:])
    if argv and argv[0] == "mepo":                  # `mepo eval mepo`: ablation table on synthetic scenes
        from .train.mepo import eval_main
        return eval_main(argv[1:])
    p = argparse.ArgumentParser(prog="mepo eval", description="Accuracy against ground truth.")
    p.add_argument("dataset", choices=["h36m"])
    p.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "gt" / "h36m"))
    p.add_argument("--model-dir")
    p.add_argument("--refine-iters", type=int, default=2)
    p.add_argument("--estimator", choices=("fit", "mepo", "skeleton"), default="fit")
    p.add_argument("--weights", help="weights of --estimator mepo|skeleton (default: assets/nets, assets/refiner)")
    p.add_argument("--refiner", choices=("off", "on"), default="off", help="relation-aware refiner after the estimator")
    p.add_argument("--refiner-weights", help="default: the ones trained for the --estimator (assets/refiner)")
    args = p.parse_args(argv)
    from .errors import MepoError
    from .pipeline import CapturePipeline
    root = Path(args.root)
    if not (root / "test_h36m_body3d.npz").is_file():
        raise MepoError(f"H36M ground truth not found under {root}")
    rows = evaluate_h36m(root, lambda: CapturePipeline.create(model_dir=args.model_dir, still_image=True,
                                                              refine_iterations=args.refine_iters,
                                                              estimator=args.estimator, weights=args.weights,
                                                              refiner=args.refiner == "on",
                                                              refiner_weights=args.refiner_weights))
    print(f"{'frame':44s} {'found':>5s} {'PA-MPJPE':>9s} {'MPJPE':>7s} {'MP-world PA':>11s} {'root dz':>8s}  (mm, 12 joints)")
    for r in rows:
        vals = [f"{r.get(k, float('nan')):9.1f}" for k in ("pa_mpjpe", "mpjpe", "mp_pa_mpjpe", "root_depth_err")]
        print(f"{r['frame']:44s} {r['found']:5d} {vals[0]} {vals[1]:>7s} {vals[2]:>11s} {vals[3]:>8s}")
    ok = [r for r in rows if "pa_mpjpe" in r]
    if ok:
        mean = lambda k: np.mean([r[k] for r in ok])
        print(f"{'mean':44s} {len(ok):5d} {mean('pa_mpjpe'):9.1f} {mean('mpjpe'):7.1f} {mean('mp_pa_mpjpe'):11.1f} "
              f"{mean('root_depth_err'):8.1f}")
    return 0 if ok else 1
