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


def run_capture(source, pipeline, out: str | None, overlay: str | None = None, progress: bool = True) -> CaptureResult:
    """Process every frame of ``source``; Ctrl-C or SIGTERM stops early and still saves every processed frame."""
    from tqdm import tqdm
    body = pipeline.body_model
    recorder = TakeRecorder(source.fps, body.name, body.joint_names[:76])
    renderer = writer = None
    interrupted = False
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    start = time.perf_counter()
    bar = tqdm(total=source.num_frames or None, unit="frame", disable=not progress, dynamic_ncols=True,
               file=sys.stderr)
    ids: set[int] = set()
    try:
        if overlay:
            from .render.overlay import OverlayRenderer
            from .render.video_writer import VideoWriter
            renderer = OverlayRenderer(source.camera)
            if not _is_image_path(overlay):
                writer = VideoWriter(overlay, source.fps, (source.width, source.height))

        def emit(frame: FrameRecord) -> None:
            recorder.add(frame)
            ids.update(p.track_id for p in frame.people if p.params is not None)
            if renderer is not None:
                image = renderer.render(frame.image, _overlay_meshes(frame, body.faces))
                if writer is not None:
                    writer.write(image)
                else:
                    from .render.video_writer import write_image
                    write_image(overlay, image)

        try:
            for frame in source:
                for done in pipeline.feed(frame):    # offline smoothing holds a few frames back
                    emit(done)
                bar.update(1)
                elapsed = time.perf_counter() - start
                bar.set_postfix(fps=f"{len(recorder) / max(elapsed, 1e-6):.1f}", people=len(frame.people),
                                ids=len(ids))
        except KeyboardInterrupt:
            interrupted = True
        for done in pipeline.flush():                # frames still held back are part of the take too
            emit(done)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, previous)
        if writer is not None:
            writer.close()
        if renderer is not None:
            renderer.close()
        source.close()
    seconds = time.perf_counter() - start
    if len(recorder) == 0:
        raise SourceError("no frames were processed")
    if out:
        recorder.save(out)
    return CaptureResult(len(recorder), len(ids), seconds, interrupted, out, overlay)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _is_image_path(path: str) -> bool:
    return path.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".webp"))
