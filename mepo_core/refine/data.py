"""Refiner training data: the synthetic scenes of ``nets.synth`` (reused, not re-generated) plus the initial
estimate of every person, produced by the fitting estimator (IK + 2 LM steps) on the scenes' synthetic landmarks
through the same ``estimate(frame)`` path as real footage. Cached next to the scene cache."""
from __future__ import annotations

import os

import numpy as np
import torch

from ..estimate.joint_map import MP_BODY
from ..paths import cache_dir
from ..records import Camera, FrameRecord, Landmarks, Person

SCENES = dict(train=(3000, 0), val=(300, 1))      # the MEPO issue's cached synthetic datasets (DEFAULT_DATA)
MAX_CLIPS = 600


def frame_from_rows(d: dict, rows: np.ndarray) -> FrameRecord:
    """One synthetic scene as a FrameRecord with body landmarks (2D px + metric world) and boxes."""
    c = d["cam"][rows[0]]
    cam = Camera(*[float(v) for v in c[:4]], int(c[4]), int(c[5]))
    frame = FrameRecord(0, 0.0, np.zeros((1, 1, 3), np.uint8), cam)
    for r in rows:
        b2, bw = np.zeros((33, 3), np.float32), np.zeros((33, 3), np.float32)
        b2[MP_BODY], bw[MP_BODY] = d["kp_px"][r], d["world"][r]
        good = b2[:, 2] > 0.3
        box = np.concatenate([b2[good, :2].min(0), b2[good, :2].max(0)]) if good.any() else np.zeros(4)
        frame.people.append(Person(box=box.astype(np.float32), landmarks=Landmarks(body_2d=b2, body_world=bw)))
    return frame


def initial_estimates(d: dict, body_model, refine_iterations: int = 2, progress: bool = True) -> dict:
    """Per row: initial rotmats (55, 3, 3), betas (10,), transl (3,), box (4,) from the fitting estimator."""
    from ..estimate.estimator import SmplxEstimator
    est = SmplxEstimator(body_model, refine_iterations=refine_iterations, face_fit=False)
    N = len(d["scene"])
    out = dict(init_rot=np.zeros((N, 55, 3, 3), np.float32), init_betas=np.zeros((N, 10), np.float32),
               init_transl=np.zeros((N, 3), np.float32), box=np.zeros((N, 4), np.float32))
    it = np.unique(d["scene"])
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="initial estimates", unit="scene")
    for s in it:
        rows = np.nonzero(d["scene"] == s)[0]
        frame = est.estimate(frame_from_rows(d, rows))
        for r, p in zip(rows, frame.people):
            st = {k: torch.as_tensor(getattr(p.params, k))[None] for k in p.params.KEYS}
            out["init_rot"][r] = est._rotmats(st)[0].numpy()
            out["init_betas"][r] = p.params.betas
            out["init_transl"][r] = p.params.transl
            out["box"][r] = p.box
    return out


def load(split: str, progress: bool = True) -> dict:
    """Synthetic scenes (``nets.synth.dataset``) + cached initial estimates, as numpy arrays."""
    from ..nets.synth import VERSION, dataset
    n, seed = SCENES[split]
    d = dataset(split, n, seed, MAX_CLIPS, progress=progress)
    path = cache_dir() / "refiner" / f"init_v{VERSION}_{split}_{n}_{seed}_{MAX_CLIPS}.npz"
    if path.is_file():
        with np.load(path) as z:
            init = {k: z[k] for k in z.files}
    else:
        from ..body.model import load_body_model
        init = initial_estimates(d, load_body_model(), progress=progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **init)
        os.replace(tmp, path)
    d = dict(d)
    d.update(init)
    return d


if __name__ == "__main__":
    torch.set_num_threads(1)
    for s in ("val", "train"):
        load(s)
