"""`mepo bench`: fps, latency and peak memory of the headless pipeline vs. MediaPipe Holistic on the shared clips.

Every configuration (clip x system) runs in its own spawned child process, so the peak resident memory reported
(``getrusage(RUSAGE_SELF).ru_maxrss`` of that child) belongs to that configuration alone. Frames are decoded and
letterboxed to 640x480 before timing starts; the timed loop is only ``pipeline.process(frame)`` (plus the overlay
render with ``--overlay``) or ``holistic.process(rgb)``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

VIDEO_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"
WIDTH, HEIGHT = 640, 480
STAGES = ("detect", "pose", "hands", "face", "estimate")


@dataclass(frozen=True)
class Clip:
    name: str
    file: str
    start: int          # first frame of the segment used
    target_fps: float


# openpose_video.avi frames 20-89: the pipeline finds exactly 3 people in every frame (romp_sample_video flips
# between 2 and 4). The two demo clips are 40 frames long; longer runs play them back and forth (no jump cut).
CLIPS = {
    "1p": Clip("1 person", "single_person_demo.mp4", 0, 15.0),
    "2p": Clip("2 people", "multi_person_demo.mp4", 0, 8.0),
    "3p": Clip("3 people", "openpose_video.avi", 20, 8.0),
}
TARGET_RSS_MB = 1500.0


@dataclass
class Result:
    clip: str
    system: str
    frames: int
    fps: float
    median_ms: float
    p95_ms: float
    people: float
    rss_mb: float
    frames_mb: float
    stages_ms: dict = field(default_factory=dict)


def letterbox(bgr: np.ndarray, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """BGR frame of any size -> (height, width, 3) RGB, aspect kept, centred on black padding."""
    import cv2
    scale = min(width / bgr.shape[1], height / bgr.shape[0])
    w, h = max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale))
    out = np.zeros((height, width, 3), np.uint8)
    x, y = (width - w) // 2, (height - h) // 2
    out[y:y + h, x:x + w] = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


def read_frames(path: Path, start: int, count: int, convert=lambda bgr: bgr) -> list[np.ndarray]:
    """``count`` frames from ``start`` (BGR, or what ``convert`` makes of each), played back and forth if the clip
    is shorter."""
    import cv2
    from .errors import MepoError
    cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = []
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(convert(bgr))
    cap.release()
    if not frames:
        raise MepoError(f"cannot read frames from {path}")
    order = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1)) or [0]
    return [frames[order[i % len(order)]] for i in range(count)]


def load_frames(path: Path, start: int, count: int) -> np.ndarray:
    """``count`` letterboxed RGB frames from ``start``, played back and forth if the clip is shorter."""
    return np.stack(read_frames(path, start, count, letterbox))


def _run_ours(frames: np.ndarray, warmup: int, opts: dict) -> tuple[list[float], list[int], dict]:
    from .pipeline import CapturePipeline, StageTimes
    from .records import Camera, FrameRecord
    pipeline = CapturePipeline.create(model_dir=opts["model_dir"], hands=opts["hands"], face=opts["face"],
                                      refine_iterations=opts["refine_iters"], with_vertices=opts["overlay"],
                                      num_threads=opts["threads"])
    camera = Camera.from_fov(WIDTH, HEIGHT, 60.0)
    renderer = None
    if opts["overlay"]:
        from .render.overlay import MeshItem, OverlayRenderer, palette
        renderer = OverlayRenderer(camera)
    times, people, stages = [], [], dict.fromkeys(STAGES, 0.0)
    for i, image in enumerate(frames):
        if i == warmup:
            pipeline.times = StageTimes()
        frame = FrameRecord(i, i / 30.0, image, camera)
        t0 = time.perf_counter()
        pipeline.process(frame)
        if renderer is not None:
            faces = pipeline.body_model.faces
            renderer.render(frame.image, [MeshItem(p.vertices, faces, palette(p.track_id))
                                          for p in frame.people if p.vertices is not None])
        elapsed = time.perf_counter() - t0
        if i >= warmup:
            times.append(elapsed)
            people.append(len(frame.people))
            for k, v in pipeline.landmarker.timings.items():
                stages[k] = stages.get(k, 0.0) + v
    n = max(len(times), 1)
    stages = {k: v / n for k, v in stages.items()}
    stages["estimate"] = pipeline.times.mean_ms().get("track+estimate", 0.0)
    if renderer is not None:
        renderer.close()
    return times, people, stages


def _run_holistic(frames: np.ndarray, warmup: int, opts: dict) -> tuple[list[float], list[int], dict]:
    import os
    os.environ.setdefault("GLOG_minloglevel", "2")   # MediaPipe's C++ start-up warnings would bury the table
    import mediapipe as mpipe
    times, people = [], []
    with mpipe.solutions.holistic.Holistic(static_image_mode=False, model_complexity=1) as holistic:
        for i, image in enumerate(frames):
            t0 = time.perf_counter()
            out = holistic.process(image)
            elapsed = time.perf_counter() - t0
            if i >= warmup:
                times.append(elapsed)
                people.append(int(out.pose_landmarks is not None))
    return times, people, {}


def run_config(clip_key: str, system: str, count: int, warmup: int, opts: dict) -> dict:
    """Child-process body: decode the clip, run one system over it, return a Result as a dict."""
    clip = CLIPS[clip_key]
    frames = load_frames(Path(opts["video_dir"]) / clip.file, clip.start, warmup + count)
    run = _run_holistic if system == "holistic" else _run_ours
    times, people, stages = run(frames, warmup, opts)
    ms = 1000.0 * np.asarray(times)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB
    frames_mb = frames.nbytes / 2 ** 20
    return asdict(Result(clip_key, system, len(times), 1000.0 / ms.mean(), float(np.median(ms)),
                         float(np.percentile(ms, 95)), float(np.mean(people)), rss_mb - frames_mb, frames_mb,
                         stages))


def run_isolated(*args) -> dict:
    """``run_config`` in a fresh spawned interpreter (its own peak RSS)."""
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(run_config, args)


def _target(row: dict, clip: Clip) -> str:
    if row["system"] == "holistic":
        return "baseline"
    fps_ok = "ok" if row["fps"] >= clip.target_fps else "MISS"
    mem_ok = "ok" if row["rss_mb"] < TARGET_RSS_MB else "MISS"
    return f">={clip.target_fps:g}fps {fps_ok}, <{TARGET_RSS_MB:g}MB {mem_ok}"


def format_table(rows: list[dict]) -> str:
    holistic_fps = {r["clip"]: r["fps"] for r in rows if r["system"] == "holistic"}
    head = (f"{'clip':9s} {'system':13s} {'frames':>6s} {'fps':>6s} {'med ms':>7s} {'p95 ms':>7s} {'ppl/fr':>6s} "
            f"{'RSS MB':>7s} " + " ".join(f"{s:>8s}" for s in STAGES) + f" {'vs Hol':>6s}  target")
    lines = [head, "-" * len(head)]
    for r in rows:
        clip = CLIPS[r["clip"]]
        stages = " ".join(f"{r['stages_ms'][s]:8.1f}" if s in r["stages_ms"] else f"{'-':>8s}" for s in STAGES)
        base = holistic_fps.get(r["clip"])
        ratio = f"{r['fps'] / base:5.2f}x" if base else f"{'-':>6s}"
        lines.append(f"{clip.name:9s} {r['system']:13s} {r['frames']:6d} {r['fps']:6.1f} {r['median_ms']:7.1f} "
                     f"{r['p95_ms']:7.1f} {r['people']:6.2f} {r['rss_mb']:7.0f} {stages} {ratio}  "
                     f"{_target(r, clip)}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mepo bench", description="Headless pipeline fps / latency / peak RSS at "
                                "640x480 vs. MediaPipe Holistic, each configuration in its own process.")
    p.add_argument("--frames", type=int, default=60, help="timed frames per configuration")
    p.add_argument("--warmup", type=int, default=5, help="untimed frames before timing")
    p.add_argument("--clips", nargs="+", choices=list(CLIPS), default=list(CLIPS))
    p.add_argument("--threads", type=int, default=2, help="CPU threads for the landmark models and torch")
    p.add_argument("--no-hands", action="store_true")
    p.add_argument("--no-face", action="store_true")
    p.add_argument("--refine-iters", type=int, default=2)
    p.add_argument("--model-dir", help="SMPL-X model directory (default: open model)")
    p.add_argument("--overlay", action="store_true", help="add a row per clip with mesh overlay rendering")
    p.add_argument("--no-baseline", action="store_true", help="skip MediaPipe Holistic")
    p.add_argument("--video-dir", default=str(VIDEO_DIR))
    p.add_argument("--json", help="save the rows and settings to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    opts = dict(threads=args.threads, hands=not args.no_hands, face=not args.no_face, refine_iters=args.refine_iters,
                model_dir=args.model_dir, video_dir=args.video_dir, overlay=False)
    systems = ["ours"] + (["ours+overlay"] if args.overlay else []) + ([] if args.no_baseline else ["holistic"])
    rows = []
    for clip in args.clips:
        for system in systems:
            run_opts = dict(opts, overlay=system == "ours+overlay")
            rows.append(run_isolated(clip, system, args.frames, args.warmup, run_opts))
    parts = [f"threads={args.threads}", f"refine={args.refine_iters}", "hands=" + ("off" if args.no_hands else "on"),
             "face=" + ("off" if args.no_face else "on")]
    print(f"mepo bench: {WIDTH}x{HEIGHT}, {args.frames} timed frames after {args.warmup} warm-up, "
          + ", ".join(parts))
    print(format_table(rows))
    print(f"stage columns: mean ms per timed frame (detect runs every 10th frame or when someone is lost; estimate "
          f"= track+estimate); RSS = child's peak RSS minus its {rows[0]['frames_mb']:.0f} MB pre-decoded frames")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2))
    return 0
