"""`mepo bench tracking`: ID switches / fragments on the shared videos against a hand-labelled keyframe ground
truth, jitter (mean joint acceleration) raw vs every smoothing preset on real video, lag of every preset on a
step, and depth-order pairwise accuracy on synthetic 3-5 person scenes built from BVH mocap clips.

The videos go through the real pipeline once (detect -> IDs -> estimate, no smoothing; hands/face off for speed:
they change neither the IDs nor the body joints measured); each smoothing preset then re-runs the motion stage on
copies of those raw frames. ``--cache DIR`` keeps the raw per-video results between runs.
"""
from __future__ import annotations

import argparse
import copy
import os
import pickle
import time
from pathlib import Path

import numpy as np

from ..records import Camera, FrameRecord
from .depth_order import depth_levels, occlusion_relations
from .metrics import load_ground_truth, mean_acceleration, score_ids, step_lag
from .smoothing import OFFLINE_SIGMA, PRESETS, LiveSmoother, MotionState, gaussian_smooth
from .synthetic import load_bvh_clips, render_scene, standing_figure

VIDEO_DIR = os.environ.get("MEPO_SHARED_VIDEO", str(Path(__file__).resolve().parents[3] / "shared/data/video"))
MOCAP = os.environ.get("MEPO_SHARED_MOCAP",
                       str(Path(__file__).resolve().parents[3] / "shared/data/mocap/bandai_namco_bvh.tar.xz"))
GT_PATH = Path(__file__).resolve().parents[2] / "tests/data/track_gt.json"
VIDEOS = ("multi_person_demo.mp4", "openpose_video.avi", "romp_sample_video.mp4")
BODY_JOINTS = 22                               # SMPL-X body joints (pelvis .. wrists) for jitter


# -- depth order -----------------------------------------------------------------------------------------------
def synthetic_scene(rng: np.random.Generator, clips: list[np.ndarray] | None, P: int) -> np.ndarray:
    """P bodies (P, 33, 3) camera-space metres: mocap poses (random clip, frame and heading) or the procedural
    figure, feet on a floor 0.9 m below the camera, at random lateral offsets and depths 3-8 m."""
    bodies = []
    for _ in range(P):
        if clips:
            clip = clips[int(rng.integers(len(clips)))]
            b = clip[int(rng.integers(len(clip)))].copy()
            b -= 0.5 * (b[23] + b[24])
            a = rng.uniform(0, 2 * np.pi)                  # heading about the vertical (y) axis
            R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
            b = b @ R.T
            b[:, 1] -= b[:, 1].max() - 0.9                 # lowest point on the floor (y down, 0.9 m below hips)
        else:
            b = standing_figure(rng.uniform(0, 6))
        bodies.append(b)
    bodies = np.stack(bodies)
    return bodies + np.stack([rng.uniform(-1.2, 1.2, P), np.full(P, 0.0 if clips else 0.9), rng.uniform(3, 8, P)],
                             1)[:, None]


def depth_accuracy(scenes: int = 200, seed: int = 0, clips: list[np.ndarray] | None = None) -> tuple[float, int]:
    """Pairwise accuracy of the depth levels over the truly occluding pairs: correct when the occluder's level is
    above the occluded person's. The fitted depth the pipeline passes is simulated as truth with 10 % noise."""
    rng, cam = np.random.default_rng(seed), Camera.from_fov(1280, 720, 60)
    correct = total = 0
    for _ in range(scenes):
        P = int(rng.integers(3, 6))
        bodies = synthetic_scene(rng, clips, P)
        v = render_scene(bodies, cam, rng)
        levels = depth_levels(P, occlusion_relations(v.boxes, v.body_2d, v.depth * (1 + rng.normal(0, 0.1, P))))
        for behind, front in v.occluded_by:
            total += 1
            correct += int(levels[front] > levels[behind])
    return correct / max(total, 1), total


# -- lag -------------------------------------------------------------------------------------------------------
def preset_response(preset: str, signal: np.ndarray, fps: float = 30.0) -> np.ndarray:
    """A translation signal (T, 3) through one preset's smoother (offline: the full window both ways)."""
    states = [MotionState(np.zeros((1, 3)), x.astype(np.float64), np.zeros(1)) for x in signal]
    if preset == "off":
        return signal.copy()
    if preset == "live":
        sm = LiveSmoother()
        return np.array([sm(s, 1 / fps).transl for s in states])
    W = int(np.ceil(3 * OFFLINE_SIGMA[preset]))
    out = []
    for c in range(len(states)):
        lo, hi = max(0, c - W), min(len(states), c + W + 1)
        out.append(gaussian_smooth(states[lo:hi], c - lo, OFFLINE_SIGMA[preset]).transl)
    return np.array(out)


def preset_lag(preset: str, fps: float = 30.0, size: float = 0.3) -> int:
    """Frames of delay of a ``size`` metre step (time to reach half of it; 0 for zero-phase filters)."""
    step = np.zeros((60, 3))
    step[30:, 0] = size
    return step_lag(preset_response(preset, step, fps)[:, 0] / size, 30)


# -- videos ----------------------------------------------------------------------------------------------------
def process_video(path: str, pipeline, max_frames: int | None = None) -> dict:
    """The raw (unsmoothed) pipeline result of a video: per frame its people (copies, no images) and cuts."""
    from ..sources import VideoSource
    from .motion import MotionStage
    source = VideoSource(path, max_frames=max_frames)
    pipeline.reset()
    shapes = MotionStage(pipeline.estimator, smooth="off", pin_feet=False, depth_order=False)
    frames = []
    for frame in source:
        if pipeline.tracker.detect_cut(frame):
            pipeline.landmarker.reset()
        pipeline.landmarker.process(frame)
        pipeline.tracker.update(frame)
        pipeline.estimator.estimate(frame, betas_hint=shapes.hints())
        shapes.forget(pipeline.tracker.closed)
        pipeline.tracker.closed.clear()
        frame.image = None
        raw = copy.deepcopy(frame)                     # before shape memory / order / smoothing touch it
        shapes.push(frame)
        frames.append(raw)
    return {"frames": frames, "cuts": list(pipeline.tracker.cut_frames), "size": (source.width, source.height),
            "fps": source.fps}


def smoothed_joints(result: dict, preset: str, estimator) -> dict[int, list[tuple[int, np.ndarray]]]:
    """Re-run the motion stage with ``preset`` over copies of the raw frames -> {id: [(frame, joints)]}."""
    from .motion import MotionStage
    stage = MotionStage(estimator, smooth=preset)
    tracks: dict[int, list] = {}

    def collect(f: FrameRecord):
        for p in f.people:
            if p.joints3d is not None and p.params is not None and p.track_id >= 0:
                tracks.setdefault(p.track_id, []).append((f.index, p.joints3d[:BODY_JOINTS].copy()))
    cuts = set(result["cuts"])
    for raw in result["frames"]:
        if raw.index in cuts:                          # the pipeline drops every track at a cut
            for f in stage.flush():
                collect(f)
            stage.reset()
        for f in stage.push(copy.deepcopy(raw)):
            collect(f)
    for f in stage.flush():
        collect(f)
    return tracks


def predicted_boxes(result: dict) -> dict[int, list[tuple[int, np.ndarray]]]:
    W, H = result["size"]
    scale = np.array([W, H, W, H], np.float32)
    return {f.index: [(p.track_id, np.asarray(p.box, np.float32) / scale) for p in f.people if p.track_id >= 0]
            for f in result["frames"]}


def gt_frames(entry: dict) -> dict:
    return {int(k): [(lab, np.array(box, np.float32)) for lab, box in v.items()] for k, v in entry["frames"].items()}


def load_or_process(name: str, pipeline_factory, cache: str | None, max_frames: int | None = None) -> dict:
    path = os.path.join(VIDEO_DIR, name)
    cached = os.path.join(cache, name + ".raw.pkl") if cache else None
    if cached and os.path.exists(cached):
        with open(cached, "rb") as fh:
            return pickle.load(fh)
    result = process_video(path, pipeline_factory(), max_frames)
    if cached:
        os.makedirs(cache, exist_ok=True)
        with open(cached, "wb") as fh:
            pickle.dump(result, fh)
    return result


def plot_trajectory(raw, live, offline, joint_name: str, out: str, fps: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    for k, (ax, axis) in enumerate(zip(axes, "xyz")):
        for (frames, xyz), label, style in ((raw, "raw", dict(color="0.6", lw=1)),
                                            (live, "live (One-Euro, causal)", dict(color="tab:red", lw=1.3)),
                                            (offline, "medium (offline window)", dict(color="tab:blue", lw=1.3))):
            ax.plot(np.asarray(frames) / fps, 1000 * xyz[:, k], label=label, **style)
        ax.set_ylabel(f"{axis} (mm)")
    axes[0].set_title(f"{joint_name}: camera-space trajectory, raw vs smoothed")
    axes[0].legend(loc="best", fontsize=8)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def _track_xyz(tracks, track_id, joint):
    seq = sorted(tracks[track_id], key=lambda s: s[0])
    return [s[0] for s in seq], np.stack([s[1][joint] for s in seq])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="mepo bench tracking", description=__doc__)
    p.add_argument("--scenes", type=int, default=200, help="synthetic depth-order scenes")
    p.add_argument("--videos", nargs="*", default=list(VIDEOS), help="which shared videos (names)")
    p.add_argument("--no-video", action="store_true", help="synthetic parts only (no pipeline run)")
    p.add_argument("--cache", default=None, help="keep the raw per-video pipeline results in this folder")
    p.add_argument("--plot", default="tracking_trajectory.png", help="PNG of one joint raw vs smoothed")
    p.add_argument("--gt", default=str(GT_PATH))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    t0 = time.perf_counter()

    clips = load_bvh_clips(MOCAP, count=40, seed=0) if os.path.exists(MOCAP) else None
    acc, pairs = depth_accuracy(args.scenes, clips=clips)
    acc_proc, pairs_proc = depth_accuracy(args.scenes, seed=1)
    lags = {preset: preset_lag(preset) for preset in PRESETS}

    video_rows, jitter_rows = [], []
    if not args.no_video:
        gt = load_ground_truth(args.gt)
        state = {}

        def factory():
            if "pipeline" not in state:
                from ..pipeline import CapturePipeline
                state["pipeline"] = CapturePipeline.create(hands=False, face=False, num_threads=args.threads)
            return state["pipeline"]
        for name in args.videos:
            result = load_or_process(name, factory, args.cache)
            entry = gt.get(name)
            if entry:
                s = score_ids(gt_frames(entry), predicted_boxes(result))
                ids = {lab: sorted(set(v)) for lab, v in s.per_person.items()}
                video_rows.append((name, len(entry["frames"]), len(ids), s, result["cuts"], ids))
            estimator = factory().estimator if "pipeline" in state else None
            if estimator is None:
                from ..body.model import load_body_model
                from ..estimate.estimator import SmplxEstimator
                estimator = state.setdefault("estimator", SmplxEstimator(load_body_model()))
            per_preset = {preset: smoothed_joints(result, preset, estimator) for preset in PRESETS}
            jitter_rows.append((name, {k: mean_acceleration(v) for k, v in per_preset.items()}))
            if name == "openpose_video.avi" and args.plot:
                raw = per_preset["off"]
                tid = max(raw, key=lambda k: len(raw[k]))               # the longest track
                j = 20                                                    # left wrist
                plot_trajectory(_track_xyz(raw, tid, j), _track_xyz(per_preset["live"], tid, j),
                                _track_xyz(per_preset["medium"], tid, j), f"left wrist of ID {tid}, {name}",
                                args.plot, result["fps"])

    print("mepo bench tracking" + (f" ({time.perf_counter() - t0:.0f} s)"))
    print()
    if video_rows:
        print("IDs vs keyframe GT   keyframes  people  matched  misses  switches  fragments  mixes  cuts at")
        for name, kf, n, s, cuts, ids in video_rows:
            print(f"  {name:22s} {kf:7d} {n:7d} {s.matched:8d} {s.misses:7d} {s.switches:9d} {s.fragments:10d}"
                  f" {s.mixes:6d}  {cuts}")
            print("      GT person -> track IDs: " + ", ".join(f"{k}:{v}" for k, v in sorted(ids.items())))
        print()
    if jitter_rows:
        print("jitter, mean body-joint acceleration (mm/frame^2); ratio = raw / preset")
        print("  video                  " + "".join(f"{pr:>14s}" for pr in PRESETS))
        for name, j in jitter_rows:
            print(f"  {name:22s} " + "".join(f"{j[pr]:7.1f} ({j['off'] / max(j[pr], 1e-9):4.1f}x)" for pr in PRESETS))
        print()
    print("step lag (frames to half of a 30 cm step): " + ", ".join(f"{k} {v}" for k, v in lags.items()))
    src = f"{len(clips)} BVH clips" if clips else "procedural figures (mocap archive not found)"
    print(f"depth order pairwise accuracy, synthetic 3-5 people, {src}: {100 * acc:.1f} % of {pairs} occluding pairs")
    print(f"depth order pairwise accuracy, synthetic 3-5 people, procedural walkers: {100 * acc_proc:.1f} % of "
          f"{pairs_proc} pairs")
    if jitter_rows and args.plot:
        print(f"trajectory plot: {args.plot}")
    return 0
