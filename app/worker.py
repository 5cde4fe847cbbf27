"""The capture worker: frames are grabbed in one thread and run through the pipeline, recorded and drawn in another.

The UI thread only sends requests (open a source, pause, seek, record, view options) and receives ``FrameResult``s
through queued Qt signals; it never waits on either thread. Between grabber and processor sits a one-frame slot:
in live mode a new frame replaces the one not yet taken (dropped, so latency stays one frame deep); with
``every_frame`` the grabber waits for the processor instead (scripted runs, offline files: nothing is dropped).
"""
from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal

from mepo_core.errors import MepoError
from mepo_core.records import FrameRecord
from mepo_core.render.overlay import MeshItem, palette

from .drawing import OrbitCamera, ViewOptions, ViewportPainter

_END = object()      # put into the slot after a source's last frame


@dataclass(frozen=True)
class SourceSpec:
    kind: str                        # "camera" | "video" | "images" | "take"
    path: str = ""
    index: int = 0
    width: Optional[int] = None      # camera resolution / fps request
    height: Optional[int] = None
    fps: Optional[float] = None
    max_frames: Optional[int] = None
    fov_deg: Optional[float] = None

    @property
    def seekable(self) -> bool:
        return self.kind != "camera"

    def label(self) -> str:
        return f"camera {self.index}" if self.kind == "camera" else self.path

    def open(self):
        from mepo_core import sources
        if self.kind == "camera":
            return sources.CameraSource(self.index, self.width, self.height, self.fps, fov_deg=self.fov_deg)
        if self.kind == "video":
            return sources.VideoSource(self.path, fov_deg=self.fov_deg, max_frames=self.max_frames)
        if self.kind == "images":
            return sources.ImageSource(self.path, fov_deg=self.fov_deg)
        if self.kind == "take":
            from .replay import TakeReplaySource
            return TakeReplaySource(self.path)
        raise ValueError(self.kind)


@dataclass(frozen=True)
class SourceInfo:
    spec: SourceSpec
    fps: float
    num_frames: int
    width: int
    height: int


@dataclass
class FrameResult:
    index: int
    timestamp: float
    ids: list
    overlay: Optional[np.ndarray]    # (h, w, 3) uint8 RGB
    view3d: Optional[np.ndarray]
    grabbed_at: float                # time.monotonic() when the frame left the source
    process_ms: float                # pipeline + drawing
    fps: float                       # processed frames per second over the last ~2 s
    dropped: int                     # frames dropped since the source was opened
    recording_frames: int            # frames in the take being recorded (0 when not recording)

    @property
    def people(self) -> int:
        return len(self.ids)


class LatestSlot:
    """A one-item hand-over. ``put`` replaces an item nobody took (counted in ``dropped``) unless ``block``."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._closed = False
        self.dropped = 0

    def put(self, item, block: bool = False) -> bool:
        with self._cond:
            while block and self._item is not None and not self._closed:
                self._cond.wait(0.1)
            if self._closed:
                return False
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify_all()
            return True

    def get(self, timeout: float):
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def has_item(self) -> bool:
        return self._item is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def clear(self) -> None:
        with self._cond:
            self._item = None
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed, self._item, self.dropped = False, None, 0


class _Grabber:
    """Reads one source in its own thread, paced to the source's frame rate unless every frame is processed."""

    def __init__(self, spec: SourceSpec, slot: LatestSlot, every_frame: bool, paused: bool, worker: "CaptureWorker"):
        self.spec, self.slot, self.every_frame, self.worker = spec, slot, every_frame, worker
        self.stop = threading.Event()
        self.paused = paused
        self._seek: Optional[int] = None
        self._step = False
        self.thread = threading.Thread(target=self._run, name="mepo-grab", daemon=True)
        self.thread.start()

    def seek(self, index: int) -> None:
        self._seek, self._step = int(index), True

    def _run(self) -> None:
        try:
            self.source = self.spec.open()
        except MepoError as e:
            self.worker.sourceFailed.emit(str(e))
            return
        except Exception as e:  # a broken device or file must not take the app down
            self.worker.sourceFailed.emit(f"cannot open {self.spec.label()}: {e}")
            return
        try:
            if not self.stop.is_set():
                src = self.source
                self.worker._source_opened(SourceInfo(self.spec, float(src.fps), int(src.num_frames or 0),
                                                      src.width, src.height))
                self._loop()
        finally:
            self.source.close()

    def _loop(self) -> None:
        frames = iter(self.source)
        pace_t0 = pace_ts0 = None
        while not self.stop.is_set():
            if self.paused and not self._step:
                time.sleep(0.02)
                pace_t0 = None
                continue
            if self._seek is not None:
                if frames is None:                      # ended: reopen to seek back into the file
                    self.source.close()
                    self.source = self.spec.open()
                    frames = iter(self.source)
                self.source.seek(self._seek)
                self._seek, pace_t0 = None, None
            if frames is None:
                time.sleep(0.02)
                continue
            frame = next(frames, None)
            self._step = False
            if frame is None:
                frames = None
                if not self.stop.is_set():
                    self.slot.put(_END, block=True)
                continue
            now = time.monotonic()
            if not self.every_frame and self.spec.kind != "camera":   # play files in real time
                if pace_t0 is None:
                    pace_t0, pace_ts0 = now, frame.timestamp
                delay = pace_t0 + (frame.timestamp - pace_ts0) - now
                if delay > 0 and self.stop.wait(delay):
                    break
                now = time.monotonic()
            if self.stop.is_set():
                break
            self.slot.put((frame, now), block=self.every_frame)


class CaptureWorker(QObject):
    """Owns the grabber and processor threads. All public methods are called from the UI thread and return at once."""

    pipelineReady = pyqtSignal()
    pipelineFailed = pyqtSignal(str)
    sourceOpened = pyqtSignal(object)          # SourceInfo
    sourceFailed = pyqtSignal(str)
    sourceEnded = pyqtSignal()
    frameReady = pyqtSignal(object)            # FrameResult
    viewReady = pyqtSignal(object)             # (h, w, 3) 3D view redrawn after an orbit change
    recordingStarted = pyqtSignal(str)
    recordingSaved = pyqtSignal(str, int)      # path, frames
    recordingFailed = pyqtSignal(str)

    def __init__(self, pipeline_factory: Callable[[str], object], parent=None, flush_seconds: float = 1.0,
                 smoothing: str = "off"):
        super().__init__(parent)
        self._pipeline_factory = pipeline_factory      # smoothing preset -> pipeline
        self.smoothing = smoothing                     # preset for runs that process every frame
        self._slot = LatestSlot()
        self._commands: "queue.SimpleQueue" = queue.SimpleQueue()
        self._stop = threading.Event()
        self._grabber: Optional[_Grabber] = None
        self._info: Optional[SourceInfo] = None
        self.options = ViewOptions()
        self.orbit = OrbitCamera()
        self._view_dirty = False
        self.every_frame = False
        self.flush_seconds = flush_seconds
        self._draw_slot = LatestSlot()                 # processed frames waiting to be drawn
        self._draw_reset = threading.Event()
        self._draw_thread = threading.Thread(target=self._draw_loop, name="mepo-draw", daemon=True)
        self._thread = threading.Thread(target=self._process_loop, name="mepo-process", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ requests from the UI thread
    def open_source(self, spec: SourceSpec, paused: bool = False) -> None:
        self.close_source()
        every = self.every_frame or spec.kind == "images"
        # Offline smoothing looks ahead, which only makes sense when every frame is processed; live runs get the
        # causal filter instead.
        preset = self.smoothing if every or self.smoothing == "off" else "live"
        self._commands.put(("reset", preset))
        self._slot.reopen()
        self._grabber = _Grabber(spec, self._slot, every, paused, self)

    def close_source(self) -> None:
        if self._grabber is not None:
            self._grabber.stop.set()
            self._slot.close()              # wakes a grabber blocked on a full slot
            self._grabber.thread.join(timeout=0.3)  # it stops by itself; never hold the UI on a slow device
            self._grabber = None
        self._info = None

    def set_paused(self, paused: bool) -> None:
        if self._grabber is not None:
            self._grabber.paused = paused

    def seek(self, index: int) -> None:
        if self._grabber is not None and self._grabber.spec.seekable:
            self._slot.clear()
            self._commands.put(("reset", None))     # a jump breaks tracking and smoothing continuity
            self._grabber.seek(index)

    def set_options(self, options: ViewOptions) -> None:
        self.options = options
        self._view_dirty = True

    def set_orbit(self, orbit: OrbitCamera) -> None:
        self.orbit = orbit
        self._view_dirty = True

    def start_recording(self, path: str) -> None:
        self._commands.put(("record", str(path)))

    def stop_recording(self) -> None:
        self._commands.put(("stop",))

    def shutdown(self, timeout: float = 3.0) -> None:
        """Stop both threads; a recording in progress is finished and saved first."""
        self.close_source()
        self._commands.put(("stop",))
        self._stop.set()
        self._slot.close()
        t_end = time.monotonic() + timeout
        self._thread.join(timeout)
        if self._draw_thread.is_alive():
            self._draw_thread.join(max(0.0, t_end - time.monotonic()))

    @property
    def source_info(self) -> Optional[SourceInfo]:
        return self._info

    def is_alive(self) -> bool:
        return self._thread.is_alive() or self._draw_thread.is_alive() or (self._grabber is not None and self._grabber.thread.is_alive())

    def _source_opened(self, info: SourceInfo) -> None:
        self._info = info
        self.sourceOpened.emit(info)

    # ------------------------------------------------------------------ processor thread
    def _process_loop(self) -> None:
        self._preset = self.smoothing
        try:
            self._pipeline = self._pipeline_factory(self._preset)
        except Exception as e:
            self.pipelineFailed.emit(f"{type(e).__name__}: {e}")
            return
        _prepare_display_mesh(self._pipeline)
        self.pipelineReady.emit()
        self._journal = None
        self._record_path: Optional[str] = None
        self._grab_times: dict[int, float] = {}
        self._draw_thread.start()
        try:
            while True:
                self._handle_commands()
                if self._stop.is_set():
                    break
                item = self._slot.get(timeout=0.05)
                if self._journal is not None:
                    self._journal.maybe_flush()
                if item is None:
                    continue
                t0 = time.perf_counter()
                if item is _END:
                    for frame in _flush(self._pipeline):     # frames held back by offline smoothing
                        self._deliver(frame, t0)
                    self._draw_slot.put(_END, block=True)     # after the last frame is drawn: sourceEnded
                    continue
                frame, grabbed_at = item
                if self._grabber is not None and self._grabber.spec.kind == "take":   # replay: already solved
                    ready = [frame]
                else:
                    self._grab_times[id(frame)] = grabbed_at
                    ready = _feed(self._pipeline, frame)
                for done in ready:
                    self._deliver(done, t0)
        finally:
            self._finish_recording()
            self._draw_slot.close()

    def _deliver(self, frame: FrameRecord, t0: float) -> None:
        """Record one finished frame, compute its meshes and hand it to the drawing thread.

        Live, a frame the drawing thread has not started on is replaced by the newer one (the display drops it, the
        take does not); with every frame processed, drawing keeps pace with processing instead."""
        grabbed_at = self._grab_times.pop(id(frame), time.monotonic())
        self._record(frame, self._pipeline)
        people = [p for p in frame.people if p.params is not None]
        opts, grabber = self.options, self._grabber
        # Live (frames dropped when behind): the decimated display mesh; every frame / paused / stepping: the full one.
        live = grabber is not None and not grabber.every_frame and not grabber.paused
        meshes = _meshes(self._pipeline.body_model, people, decimated=live) if (opts.mesh and people) else []
        recording = self._journal.frames if self._journal is not None else 0
        self._draw_slot.put((frame, people, meshes, grabbed_at, t0, recording),
                            block=grabber is None or grabber.every_frame)

    # ------------------------------------------------------------------ drawing thread (owns the GL contexts)
    def _draw_loop(self) -> None:
        painter = ViewportPainter()
        done: deque = deque(maxlen=64)
        state = None
        try:
            while not self._stop.is_set() or self._draw_slot.has_item():
                if self._draw_reset.is_set():
                    self._draw_reset.clear()
                    painter.reset()
                    done.clear()
                item = self._draw_slot.get(timeout=0.05)
                if item is None:
                    if self._view_dirty and state is not None and self.options.view3d:
                        self._view_dirty = False
                        self.viewReady.emit(painter.view3d(state, self.orbit, self.options))
                    if self._draw_slot.closed:
                        break
                    continue
                if item is _END:
                    self.sourceEnded.emit()
                    continue
                frame, people, meshes, grabbed_at, t0, recording = item
                opts = self.options
                overlay = painter.overlay(frame, meshes, opts)
                state = painter.scene_state(frame, meshes, opts)
                self._view_dirty = False
                view = painter.view3d(state, self.orbit, opts) if opts.view3d else None
                done.append(time.monotonic())
                fps = (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] else 0.0
                self.frameReady.emit(FrameResult(
                    frame.index, frame.timestamp, [p.track_id for p in people], overlay, view, grabbed_at,
                    1000.0 * (time.perf_counter() - t0), fps, self._slot.dropped, recording))
        finally:
            self._draw_slot.close()        # a processor waiting to hand over a frame must not wait forever
            painter.close()

    def _handle_commands(self) -> None:
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            if cmd[0] == "reset":
                preset = cmd[1]
                if preset is not None and preset != self._preset:
                    self._pipeline = self._pipeline_factory(preset)     # a new motion stage for the new preset
                    _prepare_display_mesh(self._pipeline)
                    self._preset = preset
                else:
                    self._pipeline.reset()
                self._draw_slot.clear()
                self._draw_reset.set()
                self._grab_times.clear()
            elif cmd[0] == "record":
                self._finish_recording()
                self._record_path = cmd[1]        # the journal starts with the next frame (it needs its fps)
                self.recordingStarted.emit(cmd[1])
            elif cmd[0] == "stop":
                self._finish_recording()

    def _record(self, frame: FrameRecord, pipeline) -> None:
        if self._record_path is None:
            return
        if self._journal is None:
            from mepo_core.io.take_journal import TakeJournal
            body = pipeline.body_model
            fps = self._info.fps if self._info is not None else 30.0
            try:
                self._journal = TakeJournal(self._record_path, fps, body.name, body.joint_names[:76],
                                            flush_seconds=self.flush_seconds)
            except MepoError as e:
                self._record_path = None
                self.recordingFailed.emit(str(e))
                return
        self._journal.add(frame)

    def _finish_recording(self) -> None:
        journal, path = self._journal, self._record_path
        self._journal = self._record_path = None
        if journal is None:
            if path is not None:
                self.recordingFailed.emit("nothing was recorded (no frames arrived)")
            return
        try:
            saved = journal.finish()
        except Exception as e:
            self.recordingFailed.emit(f"saving {path} failed: {e} (chunks kept in {journal.folder})")
            return
        self.recordingSaved.emit(saved, journal.frames)


def _feed(pipeline, frame: FrameRecord) -> list[FrameRecord]:
    """The frames the pipeline has finished (offline smoothing returns each one a few frames later)."""
    feed = getattr(pipeline, "feed", None)
    return feed(frame) if feed is not None else [pipeline.process(frame)]


def _flush(pipeline) -> list[FrameRecord]:
    flush = getattr(pipeline, "flush", None)
    return flush() if flush is not None else []


def _prepare_display_mesh(pipeline) -> None:
    """Build the decimated display mesh now (~0.1 s) rather than on the first live frame."""
    body = getattr(pipeline, "body_model", None)
    if hasattr(body, "smplx"):
        from mepo_core.render.decimate import display_mesh
        display_mesh(body)


def _meshes(body_model, people, decimated: bool = False) -> list[MeshItem]:
    """Vertices of all people in one batched pass: the full mesh (smplx forward) or, with ``decimated``, the display
    mesh (about 2,500 of the model's vertices, skinned alone: ~6x cheaper to compute, ~2x to render)."""
    import torch
    keys = people[0].params.KEYS
    if decimated and hasattr(body_model, "smplx"):
        from mepo_core.render.decimate import display_mesh
        dm = display_mesh(body_model)
        verts = dm.vertices({k: np.stack([getattr(p.params, k) for p in people]) for k in keys})
        return [MeshItem(verts[i], dm.faces, palette(p.track_id)) for i, p in enumerate(people)]
    with torch.no_grad():
        verts, _ = body_model.forward({k: np.stack([getattr(p.params, k) for p in people]) for k in keys})
    verts = verts.numpy() if hasattr(verts, "numpy") else np.asarray(verts)
    return [MeshItem(verts[i], body_model.faces, palette(p.track_id)) for i, p in enumerate(people)]
