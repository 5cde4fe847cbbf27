"""The take file: an NPZ with SMPL-X parameters per person per frame (schema in docs/npz_schema.md).

Arrays are dense (T frames x P people); ``valid[t, p]`` says whether person p was seen in frame t.
Writes go to a temporary name and are renamed into place, so a file at the final path is always complete.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import TakeFormatError
from ..records import FrameRecord, SmplxParams

FORMAT_VERSION = 1
LANDMARK_SHAPES = {"landmarks_body2d": (33, 3), "landmarks_left_hand2d": (21, 3),
                   "landmarks_right_hand2d": (21, 3), "landmarks_face2d": (478, 3)}
REQUIRED_KEYS = ("format_version", "body_model", "fps", "image_size", "camera_K", "frame_index", "timestamps",
                 "person_ids", "valid", "joints3d", "joint_names", "keypoints2d") + SmplxParams.KEYS


class TakeRecorder:
    """Collects per-frame records in memory (compactly) and writes the take NPZ."""

    def __init__(self, fps: float, body_model_name: str, joint_names: list[str]):
        self.fps, self.body_model_name, self.joint_names = fps, body_model_name, list(joint_names)
        self.frames: list[tuple[int, float]] = []
        self.rows: list[dict] = []          # one dict per (frame, person)
        self.camera = None

    def __len__(self) -> int:
        return len(self.frames)

    def add(self, frame: FrameRecord) -> None:
        self.camera = frame.camera
        t = len(self.frames)
        self.frames.append((frame.index, frame.timestamp))
        for person in frame.people:
            if person.params is None or person.track_id < 0:
                continue
            lm = person.landmarks
            row = {"t": t, "id": person.track_id, "box": person.box, "score": person.score,
                   "depth_level": person.depth_level, "joints3d": person.joints3d,
                   "keypoints2d": person.keypoints2d, **person.params.as_dict()}
            if lm is not None:
                row.update(landmarks_body2d=lm.body_2d, landmarks_left_hand2d=lm.left_hand_2d,
                           landmarks_right_hand2d=lm.right_hand_2d, landmarks_face2d=lm.face_2d)
            self.rows.append(row)

    def arrays(self) -> dict[str, np.ndarray]:
        T = len(self.frames)
        ids = sorted({r["id"] for r in self.rows})
        col = {pid: i for i, pid in enumerate(ids)}
        P = len(ids)
        J = len(self.joint_names)
        out: dict[str, np.ndarray] = {
            "format_version": np.array(FORMAT_VERSION),
            "body_model": np.array(self.body_model_name),
            "fps": np.array(self.fps, np.float32),
            "image_size": np.array([self.camera.width, self.camera.height] if self.camera else [0, 0], np.int32),
            "camera_K": self.camera.K if self.camera else np.eye(3, dtype=np.float32),
            "frame_index": np.array([f[0] for f in self.frames], np.int32),
            "timestamps": np.array([f[1] for f in self.frames], np.float64),
            "person_ids": np.array(ids, np.int32),
            "valid": np.zeros((T, P), bool),
            "joint_names": np.array(self.joint_names),
            "joints3d": np.zeros((T, P, J, 3), np.float32),
            "keypoints2d": np.zeros((T, P, J, 3), np.float32),
            "boxes": np.zeros((T, P, 4), np.float32),
            "scores": np.zeros((T, P), np.float32),
            "depth_level": np.full((T, P), -1, np.int16),
        }
        sizes = dict(SmplxParams.SIZES)
        for r in self.rows[:1]:
            sizes.update({k: len(r[k]) for k in SmplxParams.KEYS})
        for k in SmplxParams.KEYS:
            out[k] = np.zeros((T, P, sizes[k]), np.float32)
        for k, shape in LANDMARK_SHAPES.items():
            out[k] = np.zeros((T, P) + shape, np.float16 if k == "landmarks_face2d" else np.float32)
        for r in self.rows:
            t, p = r["t"], col[r["id"]]
            out["valid"][t, p] = True
            out["boxes"][t, p], out["scores"][t, p], out["depth_level"][t, p] = r["box"], r["score"], r["depth_level"]
            out["joints3d"][t, p], out["keypoints2d"][t, p] = r["joints3d"], r["keypoints2d"]
            for k in SmplxParams.KEYS:
                out[k][t, p] = r[k]
            for k in LANDMARK_SHAPES:
                if r.get(k) is not None:
                    out[k][t, p] = r[k]
        return out

    def save(self, path: str) -> str:
        return write_npz(path, self.arrays())


def write_npz(path: str, arrays: dict[str, np.ndarray]) -> str:
    """Atomically write ``arrays`` to ``path`` (tmp file in the same folder, then rename)."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise TakeFormatError(f"output folder does not exist: {folder}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp.npz", dir=folder)
    except OSError as e:
        raise TakeFormatError(f"cannot write to {folder}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp creates 0600; give the take normal file permissions
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return str(target)


def load_take(path: str, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Load and validate a take; raises TakeFormatError with one clear line.

    ``keys``: load only these arrays (plus ``format_version``), e.g. to keep big landmark arrays out of memory.
    """
    if not os.path.isfile(path):
        raise TakeFormatError(f"take not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: (z[k] if keys is None or k in keys or k == "format_version" else None) for k in z.files}
    except Exception as e:  # zip/pickle/format errors all mean "not a take"
        raise TakeFormatError(f"not a readable NPZ take: {path} ({type(e).__name__})") from None
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise TakeFormatError(f"{path} is missing keys: {', '.join(missing)}")
    version = int(data["format_version"])
    if version > FORMAT_VERSION:
        raise TakeFormatError(f"{path} has format version {version}; this mepo reads up to {FORMAT_VERSION}")
    return {k: v for k, v in data.items() if v is not None}


def describe_take(data: dict[str, np.ndarray]) -> str:
    """Human-readable summary for ``mepo inspect``."""
    T, P = data["valid"].shape
    lines = [f"format version : {int(data['format_version'])}",
             f"body model     : {data['body_model']}",
             f"frames         : {T}   fps: {float(data['fps']):.2f}   image size: {tuple(int(x) for x in data['image_size'])}",
             f"people         : {P}   ids: {list(map(int, data['person_ids']))}"]
    for p, pid in enumerate(data["person_ids"]):
        lines.append(f"  id {int(pid):3d}: in {int(data['valid'][:, p].sum())}/{T} frames")
    lines.append("keys:")
    for k in sorted(data):
        lines.append(f"  {k:24s} {str(data[k].dtype):8s} {tuple(data[k].shape)}")
    return "\n".join(lines)
