"""Overlapped capture: decoding, landmarks, estimation and output each in their own thread.

    reader thread      source -> frames                      (video decode / camera grab)
    landmarks thread   pipeline.landmarks(frame)             (detector + landmark models; LiteRT/ORT/torch
                                                              release the GIL while they compute)
    caller's thread    pipeline.finish(frame) in frame order  (tracking, body model estimate, smoothing)
    output thread      emit(frame)                           (record, overlay render, video encode)

Bounded queues (a few frames) keep memory flat and hand back-pressure to the slowest stage. The landmarks stage
only depends on earlier frames' landmarks, so it runs one frame ahead of estimation without changing any result:
the take is identical to the sequential ``pipeline.feed`` loop (tested). An exception in any thread stops the
others and is raised in the caller's thread; Ctrl-C stops reading and everything already read is finished.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable

_END = object()
DEPTH = 3


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class _Stage(threading.Thread):
    """Runs ``work(item)`` over ``inputs`` (an iterable or a queue) and puts the results in ``self.out``."""

    def __init__(self, name: str, inputs, work: Callable, stop: threading.Event):
        super().__init__(name=name, daemon=True)
        self.inputs, self.work, self.stop = inputs, work, stop
        self.out: queue.Queue = queue.Queue(maxsize=DEPTH)

    def _items(self):
        if isinstance(self.inputs, queue.Queue):
            while True:
                item = self.inputs.get()
                yield item
                if item is _END or isinstance(item, _Failure):
                    return
        else:
            yield from self.inputs
            yield _END

    def _put(self, item) -> None:
        while True:                       # once stopped, nobody may read on: never block forever
            try:
                self.out.put(item, timeout=0.1)
                return
            except queue.Full:
                if self.stop.is_set():
                    return

    def run(self) -> None:
        try:
            for item in self._items():
                if item is _END or isinstance(item, _Failure):
                    self._put(item)
                    return
                if self.stop.is_set():
                    self._put(_END)
                    return
                self._put(self.work(item))
        except BaseException as error:    # noqa: BLE001 - handed to the caller's thread
            self._put(_Failure(error))


class _Output(threading.Thread):
    """Calls ``emit`` on every frame in order until _END; never stops early (every finished frame is kept) and,
    after a failure, keeps draining so the producer never blocks. ``error`` holds the first failure."""

    def __init__(self, emit: Callable, close: Callable | None):
        super().__init__(name="mepo-output", daemon=True)
        self.emit, self.close, self.error = emit, close, None
        self.inputs: queue.Queue = queue.Queue(maxsize=DEPTH)

    def run(self) -> None:
        while (item := self.inputs.get()) is not _END:
            if self.error is None:
                try:
                    self.emit(item)
                except BaseException as error:    # noqa: BLE001 - raised in the caller's thread
                    self.error = error
        if self.close is not None:                # in this thread: GL contexts belong to the thread that drew
            try:
                self.close()
            except BaseException as error:        # noqa: BLE001
                self.error = self.error or error


def run_staged(source: Iterable, pipeline, emit: Callable, on_frame: Callable | None = None,
               close: Callable | None = None) -> bool:
    """Feed every frame of ``source`` through ``pipeline`` with the stages overlapped; ``emit`` gets each final
    frame in order (in the output thread), then ``close()`` runs there. Returns True when interrupted by Ctrl-C (frames read so far are
    finished and emitted first)."""
    stop = threading.Event()
    reader = _Stage("mepo-read", source, lambda frame: frame, stop)
    marks = _Stage("mepo-landmarks", reader.out, lambda frame: (frame, pipeline.landmarks(frame)), stop)
    output = _Output(emit, close)
    for thread in (reader, marks, output):
        thread.start()
    interrupted, failure = False, None
    try:
        try:
            while True:
                item = marks.out.get()
                if item is _END:
                    break
                if isinstance(item, _Failure):
                    failure = item.error
                    break
                for done in pipeline.finish(*item):
                    output.inputs.put(done)
                if on_frame is not None:
                    on_frame(item[0])
        except KeyboardInterrupt:
            interrupted = True
            stop.set()
            _drain_finished(marks.out, pipeline, output.inputs)
        try:                                          # also after a failure: what was processed is kept
            for done in pipeline.flush():
                output.inputs.put(done)
        except KeyboardInterrupt:
            interrupted = True
    finally:
        stop.set()
        output.inputs.put(_END)
        output.join()
    if failure is not None:
        raise failure
    if output.error is not None:
        raise output.error
    return interrupted


def _drain_finished(marks_out: queue.Queue, pipeline, results: queue.Queue) -> None:
    """After Ctrl-C: frames whose landmarks are already done are finished too (nothing processed is lost)."""
    while True:
        try:
            item = marks_out.get(timeout=1.0)
        except queue.Empty:
            return
        if item is _END or isinstance(item, _Failure):
            return
        for done in pipeline.finish(*item):
            results.put(done)
