"""Headless capture job: a source through the pipeline into a take NPZ and an optional overlay."""
from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass

from .errors import SourceError
from .io.npz import TakeRecorder
from .records import FrameRecord


@dataclass
class CaptureResult:
    frames: int
    people: int
    seconds: float
    interrupted: bool
    out: str | None
    overlay: str | None


def _overlay_meshes(frame: FrameRecord, faces):
    from .render.overlay import MeshItem, palette
    return [MeshItem(p.vertices, faces, palette(p.track_id)) for p in frame.people if p.vertices is not None]


def run_capture(source, pipeline, out: str | None, overlay: str | None = None, progress: bool = True,
                staged: bool = True) -> CaptureResult:
    """Process every frame of ``source``; Ctrl-C or SIGTERM stops early and still saves every processed frame, and
    so does an error part-way (e.g. a corrupt frame), which is raised after saving. ``staged`` overlaps decoding,
    landmarks, estimation and output in threads (``staged.run_staged``); the take is the same either way."""
    from tqdm import tqdm
    from .staged import run_staged
    body = pipeline.body_model
    recorder = TakeRecorder(source.fps, body.name, body.joint_names[:76])
    output = _Output(overlay, source, body.faces)
    interrupted, failure = False, None
    # Ctrl-C and SIGTERM stop the capture and save it, even where SIGINT was inherited as ignored (a job started
    # in the background of a script, e.g. `mepo ... &`, ignores it by default).
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    start = time.perf_counter()
    bar = tqdm(total=source.num_frames or None, unit="frame", disable=not progress, dynamic_ncols=True,
               file=sys.stderr)
    ids: set[int] = set()

    def emit(frame: FrameRecord) -> None:
        recorder.add(frame)
        ids.update(p.track_id for p in frame.people if p.params is not None)
        output.write(frame)

    def on_frame(frame: FrameRecord) -> None:
        bar.update(1)
        elapsed = time.perf_counter() - start
        bar.set_postfix(fps=f"{bar.n / max(elapsed, 1e-6):.1f}", people=len(frame.people), ids=len(ids))

    try:
        if staged:
            interrupted = run_staged(source, pipeline, emit, on_frame, close=output.close)
        else:
            interrupted = _run_sequential(source, pipeline, emit, on_frame)
    except KeyboardInterrupt:
        interrupted = True
    except Exception as error:                   # noqa: BLE001 - saved below, then raised
        failure = error
    finally:
        bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        output.close()
        source.close()
    seconds = time.perf_counter() - start
    if len(recorder) and out:
        recorder.save(out)
    if failure is not None:
        raise failure
    if len(recorder) == 0:
        raise SourceError("no frames were processed")
    return CaptureResult(len(recorder), len(ids), seconds, interrupted, out, overlay)


def _run_sequential(source, pipeline, emit, on_frame) -> bool:
    interrupted, failure = False, None
    try:
        for frame in source:
            for done in pipeline.feed(frame):    # offline smoothing holds a few frames back
                emit(done)
            on_frame(frame)
    except KeyboardInterrupt:
        interrupted = True
    except Exception as error:                   # noqa: BLE001 - raised after the held-back frames are kept
        failure = error
    for done in pipeline.flush():                # frames still held back are part of the take too
        emit(done)
    if failure is not None:
        raise failure
    return interrupted


class _Output:
    """Overlay rendering and encoding; the renderer is made on first use, in the thread that draws."""

    def __init__(self, overlay: str | None, source, faces):
        self.path, self.source, self.faces = overlay, source, faces
        self.renderer = self.writer = None

    def write(self, frame: FrameRecord) -> None:
        if not self.path:
            return
        if self.renderer is None:
            from .render.overlay import OverlayRenderer
            from .render.video_writer import VideoWriter
            self.renderer = OverlayRenderer(self.source.camera)
            if not _is_image_path(self.path):
                self.writer = VideoWriter(self.path, self.source.fps, (self.source.width, self.source.height))
        image = self.renderer.render(frame.image, _overlay_meshes(frame, self.faces))
        if self.writer is not None:
            self.writer.write(image)
        else:
            from .render.video_writer import write_image
            write_image(self.path, image)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.renderer is not None:
            self.renderer.close()
        self.writer = self.renderer = None


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _is_image_path(path: str) -> bool:
    return path.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".webp"))
