"""Live figures of the app's capture worker (no window): fps, latency and where a frame's time goes.

``python -m app.bench_live --people 1 --seconds 20`` plays the bundled demo clip, letterboxed to 640x480 (``--people
1``: cropped to the right-hand person), as a 30 fps live camera through ``CaptureWorker`` with the viewport on (overlay
and 3D view drawn for every processed frame), and prints medians. Stage times come from wrappers around the worker's
steps, so the same script measures older versions of ``app``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def letterboxed_frames(people: int, size=(640, 480)) -> list[np.ndarray]:
    import cv2

    from mepo_core.bench import letterbox
    from mepo_core.paths import ASSETS_DIR
    cap, frames = cv2.VideoCapture(str(ASSETS_DIR / "demo" / "multi_person_demo.mp4")), []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if people == 1:
            bgr = bgr[:, 560:]                      # the woman on the right only
        frames.append(letterbox(bgr, *size))
    return frames


class LoopSource:
    """The clip looped forever at ``rate`` fps, like a camera."""

    def __init__(self, frames, rate=30.0):
        from mepo_core.records import Camera
        self.frames, self.rate, self.fps, self.num_frames = frames, rate, rate, 0
        self.height, self.width = frames[0].shape[:2]
        self.camera = Camera.from_fov(self.width, self.height, 60.0)

    def __iter__(self):
        from mepo_core.records import FrameRecord
        t0, i = time.monotonic(), 0
        while True:
            delay = t0 + i / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield FrameRecord(i, i / self.rate, self.frames[i % len(self.frames)].copy(), self.camera)
            i += 1

    def close(self):
        pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=1, choices=(1, 2))
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=4.0)
    ap.add_argument("--no-view3d", action="store_true")
    ap.add_argument("--json", help="append the figures to this file (one JSON object a line)")
    ap.add_argument("--label", default="")
    args = ap.parse_args(argv)

    from app.main import use_pyqt_plugins
    use_pyqt_plugins()
    from PyQt6.QtWidgets import QApplication

    import app.worker as W
    from app.drawing import ViewOptions, ViewportPainter
    from mepo_core.pipeline import CapturePipeline

    stages: dict[str, list] = {}
    t_start = [0.0]

    def timed(name, fn):
        def wrapper(*a, **kw):
            t, c = time.perf_counter(), time.thread_time()
            out = fn(*a, **kw)
            if time.monotonic() > t_start[0]:
                stages.setdefault(name, []).append((time.perf_counter() - t, time.thread_time() - c))
            return out
        return wrapper

    W._feed = timed("pipeline", W._feed)
    W._meshes = timed("meshes", W._meshes)
    ViewportPainter.overlay = timed("overlay", ViewportPainter.overlay)
    ViewportPainter.view3d = timed("view3d", ViewportPainter.view3d)
    W.CaptureWorker._deliver = timed("deliver", W.CaptureWorker._deliver)     # record + meshes + drawing + emit
    W.LatestSlot.get = timed("wait", W.LatestSlot.get)                         # processor idle, waiting for a frame

    frames = letterboxed_frames(args.people)

    class Spec(W.SourceSpec):
        def open(self):
            return LoopSource(frames)

    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    worker = W.CaptureWorker(lambda smooth: CapturePipeline.create(with_vertices=False, smooth=smooth))
    worker.set_options(ViewOptions(view3d=not args.no_view3d))
    got = []
    worker.frameReady.connect(lambda r: got.append((r, time.monotonic(), time.process_time())))
    ready = []
    worker.pipelineReady.connect(lambda: ready.append(1))
    while not ready:
        qapp.processEvents()
        time.sleep(0.01)
    worker.open_source(Spec("camera"))
    t_start[0] = time.monotonic() + args.warmup
    end = t_start[0] + args.seconds
    cpu0 = None
    while time.monotonic() < end:
        qapp.processEvents()
        if cpu0 is None and time.monotonic() > t_start[0]:
            cpu0 = time.process_time()
        time.sleep(0.002)
    cpu = time.process_time() - cpu0
    worker.shutdown()
    res = [(r, t) for r, t, _ in got if t > t_start[0]]
    lat = [1000 * (t - r.grabbed_at) for r, t in res]
    out = {"label": args.label, "people": args.people, "view3d": not args.no_view3d, "seconds": args.seconds,
           "frames": len(res), "fps": len(res) / args.seconds,
           "people_seen_median": float(np.median([r.people for r, _ in res])) if res else 0,
           "latency_ms_median": float(np.median(lat)) if lat else None,
           "latency_ms_p90": float(np.percentile(lat, 90)) if lat else None,
           "process_cpu_s_per_s": cpu / args.seconds,
           "load1": os.getloadavg()[0]}
    for name, v in stages.items():
        v = np.array(v) * 1000
        out[f"{name}_ms"] = round(float(np.median(v[:, 0])), 1)
        out[f"{name}_cpu_ms"] = round(float(np.median(v[:, 1])), 1)
    print(json.dumps(out))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
