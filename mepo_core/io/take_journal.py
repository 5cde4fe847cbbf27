"""Crash-safe recording: a take written as short chunk files while it records, assembled into the take NPZ at the end.

A recording to ``take.npz`` writes the folder ``take.npz.parts/`` beside it, holding ``chunk_000000.npz``,
``chunk_000001.npz``, ... Each chunk is an ordinary take (same keys as ``TakeRecorder`` writes) of the frames added
since the previous chunk, written atomically, so a crash or ``kill -9`` loses at most the frames of the chunk being
filled: ``flush_seconds`` of recording (call ``maybe_flush`` while no frames arrive to keep that bound).
``assemble_take`` merges the chunks into exactly the arrays one ``TakeRecorder`` would have written for the same
frames; ``recover_take`` turns a folder left behind by a crash into the take NPZ.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import TakeFormatError
from ..records import FrameRecord, SmplxParams
from .npz import LANDMARK_SHAPES, TakeRecorder, write_npz

SUFFIX = ".parts"
#: Keys with a (T, P, ...) layout; everything else is per frame (T,) or per take.
PER_PERSON_KEYS = ("valid", "joints3d", "keypoints2d", "boxes", "scores", "depth_level") + SmplxParams.KEYS \
    + tuple(LANDMARK_SHAPES)
PER_FRAME_KEYS = ("frame_index", "timestamps")
FILL = {"depth_level": -1}


def journal_folder(take_path: str | Path) -> Path:
    """The chunk folder that belongs to the take NPZ at ``take_path``."""
    return Path(str(take_path) + SUFFIX)


class TakeJournal:
    """Records frames into per-``flush_seconds`` chunk files; ``finish()`` writes the take NPZ and removes them."""

    def __init__(self, take_path: str | Path, fps: float, body_model_name: str, joint_names: list[str],
                 flush_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.take_path = Path(take_path)
        self.folder = journal_folder(take_path)
        if self.folder.exists():
            raise TakeFormatError(f"an unfinished recording is in the way: {self.folder} (recover or delete it)")
        if not self.take_path.parent.is_dir():
            raise TakeFormatError(f"output folder does not exist: {self.take_path.parent}")
        self.folder.mkdir()
        self._new = lambda: TakeRecorder(fps, body_model_name, joint_names)
        self._chunk = self._new()
        self.flush_seconds, self._clock = float(flush_seconds), clock
        self._last_flush = clock()
        self.chunks = 0
        self.frames = 0

    def add(self, frame: FrameRecord) -> None:
        self._chunk.add(frame)
        self.frames += 1
        self.maybe_flush()

    def maybe_flush(self) -> None:
        """Write the pending frames if the oldest of them is ``flush_seconds`` old."""
        if self._clock() - self._last_flush >= self.flush_seconds:
            self.flush()
        elif not len(self._chunk):
            self._last_flush = self._clock()   # nothing pending: the next frame starts a fresh interval

    def flush(self) -> None:
        if len(self._chunk):
            write_npz(str(self.folder / f"chunk_{self.chunks:06d}.npz"), self._chunk.arrays())
            self.chunks += 1
            self._chunk = self._new()
        self._last_flush = self._clock()

    def finish(self) -> str:
        """Write the take NPZ (atomically) and remove the chunk folder; returns its path."""
        self.flush()
        return recover_take(self.folder, self.take_path)

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def chunk_files(folder: str | Path) -> list[Path]:
    return sorted(Path(folder).glob("chunk_*.npz"))


def assemble_take(folder: str | Path) -> dict[str, np.ndarray]:
    """Merge the chunks of a journal folder into one take's arrays (same layout as ``TakeRecorder.arrays``)."""
    chunks = []
    for path in chunk_files(folder):
        try:
            with np.load(path, allow_pickle=False) as z:
                chunks.append({k: z[k] for k in z.files})
        except Exception as e:  # a chunk is renamed into place complete, so this is outside damage
            raise TakeFormatError(f"unreadable chunk {path} ({type(e).__name__})") from None
    if not chunks:
        raise TakeFormatError(f"no recorded frames in {folder}")
    ids = sorted({int(i) for c in chunks for i in c["person_ids"]})
    col = {pid: i for i, pid in enumerate(ids)}
    T, P = sum(len(c["frame_index"]) for c in chunks), len(ids)
    with_people = [c for c in chunks if len(c["person_ids"])] or chunks
    out = dict(chunks[-1])                       # per-take values: the last frame's camera, like TakeRecorder
    out["person_ids"] = np.array(ids, np.int32)
    for k in PER_FRAME_KEYS:
        out[k] = np.concatenate([c[k] for c in chunks])
    for k in PER_PERSON_KEYS:
        ref = with_people[0][k]
        out[k] = np.full((T, P) + ref.shape[2:], FILL.get(k, 0), ref.dtype)
        t0 = 0
        for c in chunks:
            n = len(c["frame_index"])
            for j, pid in enumerate(c["person_ids"]):
                out[k][t0:t0 + n, col[int(pid)]] = c[k][:, j]
            t0 += n
    return out


def recover_take(folder: str | Path, take_path: str | Path | None = None) -> str:
    """Assemble a journal folder into its take NPZ (default: the folder's name without ``.parts``), then remove it."""
    folder = Path(folder)
    if take_path is None:
        if not folder.name.endswith(SUFFIX):
            raise TakeFormatError(f"not a take journal folder: {folder}")
        take_path = folder.with_name(folder.name[:-len(SUFFIX)])
    path = write_npz(str(take_path), assemble_take(folder))
    shutil.rmtree(folder, ignore_errors=True)
    return path


def unfinished_takes(folder: str | Path) -> list[Path]:
    """Journal folders in ``folder`` that were never finished (the recording crashed or was killed)."""
    return sorted(p for p in Path(folder).glob("*" + SUFFIX) if p.is_dir())
