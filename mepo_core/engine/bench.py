"""`mepo bench backends`: the capture pipeline on each inference backend, one table.

For each backend (each in its own spawned process, so its peak memory is its own) and each scene (1, 3 and 6 people
at 640x480 and 1280x720): per-frame latency of ``pipeline.process`` (landmarks, tracking, body model estimate;
no display, no decode), fps of the sequential loop and of the overlapped one (``staged.run_staged``), people found,
and the largest difference of the backend's model outputs from eager torch on crops of the same frames.
Scenes: ``single_person_demo`` (1), ``openpose_video`` frames 20+ (3), and that clip above its mirror image (6).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import numpy as np

from mepo_core.bench import VIDEO_DIR
SIZES = {"640x480": (640, 480), "1280x720": (1280, 720)}
DIFF_MODELS = ("pose_detection/pose_detection.tflite", "pose_landmark/pose_landmark_full.tflite",
               "hand_landmark/hand_landmark_full.tflite", "face_landmark/face_landmark.tflite")


def scene_frames(people: int, size: tuple[int, int], count: int) -> np.ndarray:
    """(count, H, W, 3) RGB frames of ``size`` (letterboxed) showing ``people`` people."""
    from mepo_core.bench import letterbox, read_frames
    if people == 1:
        raw = read_frames(VIDEO_DIR / "single_person_demo.mp4", 0, count)
    else:
        raw = read_frames(VIDEO_DIR / "openpose_video.avi", 20, count)  # 3 people in 1280x720
        if people == 6:                                                # their half of the frame beside its mirror
            raw = [np.concatenate([f[:, 240:880], f[:, 240:880][:, ::-1]], axis=1) for f in raw]
    return np.stack([letterbox(f, *size) for f in raw])


def _pipeline_and_records(backend: str, frames: np.ndarray, threads: int):
    from mepo_core.pipeline import CapturePipeline
    from mepo_core.records import Camera, FrameRecord
    pipeline = CapturePipeline.create(backend=backend, num_threads=threads)
    camera = Camera.from_fov(frames.shape[2], frames.shape[1], 60.0)
    return pipeline, [FrameRecord(i, i / 30.0, image, camera) for i, image in enumerate(frames)]


def _process_times(backend: str, frames: np.ndarray, warmup: int, threads: int):
    pipeline, records = _pipeline_and_records(backend, frames, threads)
    times, people = [], []
    for i, frame in enumerate(records):
        start = time.perf_counter()
        pipeline.process(frame)
        if i >= warmup:
            times.append(time.perf_counter() - start)
            people.append(len(frame.people))
    return np.asarray(times) * 1e3, float(np.mean(people))


def _staged_fps(backend: str, frames: np.ndarray, warmup: int, threads: int) -> float:
    from mepo_core.staged import run_staged
    pipeline, records = _pipeline_and_records(backend, frames, threads)
    for frame in records[:warmup]:
        pipeline.process(frame)
    start = time.perf_counter()
    run_staged(records[warmup:], pipeline, lambda frame: None)
    return (len(records) - warmup) / (time.perf_counter() - start)


def output_difference(backend: str, frames: np.ndarray) -> float:
    """Largest |backend - eager torch| of each model's coordinate output, in pixels of its input crop, on crops
    (whole frame and centred squares) of ``frames``."""
    import cv2
    from .backends import TorchModel, load_model
    worst = 0.0
    for relative in DIFF_MODELS:
        eager, other = TorchModel(relative), load_model(relative, backend)
        size = eager.input_size
        crops = []
        for image in frames[:: max(1, len(frames) // 3)][:3]:
            h, w = image.shape[:2]
            side = min(h, w)
            for part in (image, image[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2]):
                crops.append(cv2.resize(part, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255)
        batch = np.stack(crops)
        if "detection" in relative:
            batch = batch * 2 - 1
        worst = max(worst, float(np.abs(eager.run_batch(batch)[0] - other.run_batch(batch)[0]).max()))
    return worst


def run_backend(backend: str, people_counts: list[int], sizes: list[str], count: int, warmup: int,
                threads: int) -> list[dict]:
    """Child-process body: every scene on one backend."""
    import torch
    from .backends import load_model
    rows = []
    start = time.perf_counter()
    for relative in DIFF_MODELS:                 # engine build / load (cached on disk after the first run)
        load_model(relative, backend)
    build_s = time.perf_counter() - start
    for size_name in sizes:
        for people in people_counts:
            frames = scene_frames(people, SIZES[size_name], warmup + count)
            ms, found = _process_times(backend, frames, warmup, threads)
            rows.append(dict(backend=backend, size=size_name, people=people, found=found,
                             median_ms=float(np.median(ms)), p95_ms=float(np.percentile(ms, 95)),
                             fps=1000.0 / float(ms.mean()), staged_fps=_staged_fps(backend, frames, warmup, threads)))
    diff = output_difference(backend, scene_frames(3, SIZES["640x480"], 6)) if backend != "torch" else 0.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    gpu = torch.cuda.max_memory_allocated() / 2 ** 20 if torch.cuda.is_available() else 0.0
    for row in rows:
        row.update(rss_mb=rss, gpu_mb=gpu, max_diff_px=diff, build_s=build_s)
    return rows


def format_table(rows: list[dict]) -> str:
    head = (f"{'backend':<9} {'size':<9} {'people':>6} {'found':>5} {'median ms':>9} {'p95 ms':>7} {'fps':>6} "
            f"{'staged fps':>10} {'vs litert':>9} {'peak MB':>8} {'GPU MB':>7} {'max |d| px':>10} {'build s':>7}")
    base = {(r["size"], r["people"]): r["staged_fps"] for r in rows if r["backend"] == "litert"}
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = r["staged_fps"] / base[(r["size"], r["people"])] if (r["size"], r["people"]) in base else float("nan")
        lines.append(f"{r['backend']:<9} {r['size']:<9} {r['people']:>6} {r['found']:>5.1f} {r['median_ms']:>9.1f} "
                     f"{r['p95_ms']:>7.1f} {r['fps']:>6.1f} {r['staged_fps']:>10.1f} {ratio:>8.2f}x "
                     f"{r['rss_mb']:>8.0f} {r['gpu_mb']:>7.0f} {r['max_diff_px']:>10.2e} {r['build_s']:>7.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from .backends import available_backends
    p = argparse.ArgumentParser(prog="mepo bench backends", description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default=None,
                   help="comma-separated (default: every available one but compile, whose first build takes "
                        "minutes per model and batch size)")
    p.add_argument("--people", default="1,3,6")
    p.add_argument("--sizes", default="640x480,1280x720")
    p.add_argument("--frames", type=int, default=20, help="timed frames per scene")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    names = args.backends.split(",") if args.backends else [b for b in available_backends() if b != "compile"]
    rows = []
    context = mp.get_context("spawn")
    for name in names:
        pool = context.Pool(1, maxtasksperchild=1)
        rows += pool.apply(run_backend, (name, [int(n) for n in args.people.split(",")],
                                         args.sizes.split(","), args.frames, args.warmup, args.threads))
        pool.close()            # let the child exit by itself (terminate() breaks torch.compile's worker pipes)
        pool.join()
        print(f"bench: {name} done", flush=True)
    print(format_table(rows))
    print("latency/fps: pipeline.process per frame (landmarks + tracking + estimate, no decode/display); staged fps:"
          " the overlapped loop; vs litert: staged fps ratio to the litert row of the same scene (same run); "
          "max |d| px: largest difference of a model's coordinate output from eager torch, pixels of its input crop")
    return 0
