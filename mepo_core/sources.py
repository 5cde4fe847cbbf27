"""Frame sources: video file, still image, image folder, camera. Each yields FrameRecords (RGB)."""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .errors import SourceError
from .records import Camera, FrameRecord

DEFAULT_FOV_DEG = 60.0
MAX_SIDE = 1920           # frames larger than this are downscaled for processing (intrinsics follow)
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def _fit_size(w: int, h: int, max_side: int) -> tuple[int, int, float]:
    s = min(1.0, max_side / max(w, h))
    return int(round(w * s)), int(round(h * s)), s


def _to_rgb(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    elif bgr.shape[2] == 4:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_BGRA2BGR)
    if (bgr.shape[1], bgr.shape[0]) != size:
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def exif_fov(path: str) -> float | None:
    """Horizontal FOV (deg) from EXIF FocalLengthIn35mmFilm, if the image has it."""
    try:
        from PIL import Image
        exif = Image.open(path).getexif()
        f35 = exif.get_ifd(0x8769).get(0xA405) or exif.get(0xA405)
        if f35:
            return math.degrees(2 * math.atan(36.0 / (2.0 * float(f35))))
    except Exception:  # EXIF is optional metadata; any failure means "not present"
        return None
    return None


class VideoSource:
    """Frames of a video file, in order, with timestamps from the container's frame rate."""

    def __init__(self, path: str, fov_deg: float | None = None, max_side: int = MAX_SIDE, max_frames: int | None = None):
        if not os.path.isfile(path):
            raise SourceError(f"video not found: {path}")
        self.path = path
        self.cap = cv2.VideoCapture(path)
        if not self.cap.isOpened():
            raise SourceError(f"cannot open video (corrupt or unsupported format): {path}")
        ok, first = self.cap.read()
        if not ok or first is None:
            raise SourceError(f"video has no readable frames: {path}")
        self._first = first
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1.0 <= fps <= 1000.0 else 30.0
        n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.num_frames = min(n, max_frames) if (n > 0 and max_frames) else (n or max_frames or 0)
        self.max_frames = max_frames
        h, w = first.shape[:2]
        self.width, self.height, _ = _fit_size(w, h, max_side)
        self.camera = Camera.from_fov(self.width, self.height, fov_deg or DEFAULT_FOV_DEG)
        self._seek_to: int | None = None

    def seek(self, index: int) -> None:
        """Make the running iteration continue at frame ``index`` (from the next frame it yields)."""
        self._seek_to = max(0, int(index))

    def __iter__(self) -> Iterator[FrameRecord]:
        index, frame = 0, self._first
        while frame is not None:
            if self._seek_to is not None:
                index, self._seek_to = self._seek_to, None
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, index)
                ok, frame = self.cap.read()
                if not ok:
                    break
            if self.max_frames is not None and index >= self.max_frames:
                break
            yield FrameRecord(index, index / self.fps, _to_rgb(frame, (self.width, self.height)), self.camera)
            index += 1
            ok, frame = self.cap.read()
            if not ok:
                frame = None
        self.cap.release()

    def close(self) -> None:
        self.cap.release()


class ImageSource:
    """One still image, or every image of a folder (sorted), each a frame."""

    def __init__(self, path: str, fov_deg: float | None = None, max_side: int = MAX_SIDE):
        p = Path(path)
        if p.is_dir():
            self.paths = sorted(str(x) for x in p.iterdir() if x.suffix.lower() in IMAGE_EXTENSIONS)
            if not self.paths:
                raise SourceError(f"no images in folder: {path}")
        elif p.is_file():
            self.paths = [str(p)]
        else:
            raise SourceError(f"image not found: {path}")
        self.fov_deg, self.max_side = fov_deg, max_side
        self.fps = 1.0
        self.num_frames = len(self.paths)
        self._first = self._read(self.paths[0])        # decoded once: the first frame of the iteration too
        self.height, self.width = self._first.shape[:2]
        self.camera = Camera.from_fov(self.width, self.height, fov_deg or exif_fov(self.paths[0]) or DEFAULT_FOV_DEG)
        self._seek_to: int | None = None

    def seek(self, index: int) -> None:
        """Make the running iteration continue at image ``index`` (from the next frame it yields)."""
        self._seek_to = min(max(0, int(index)), len(self.paths) - 1)

    def _read(self, path: str) -> np.ndarray:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None or bgr.size == 0:
            raise SourceError(f"cannot read image (corrupt or unsupported format): {path}")
        h, w = bgr.shape[:2]
        nw, nh, _ = _fit_size(w, h, self.max_side)
        return _to_rgb(bgr, (nw, nh))

    def __iter__(self) -> Iterator[FrameRecord]:
        i = 0
        while i < len(self.paths):
            if self._seek_to is not None:
                i, self._seek_to = self._seek_to, None
            path = self.paths[i]
            rgb = self._first if i == 0 and self._first is not None else self._read(path)
            self._first = None
            cam = self.camera
            if rgb.shape[:2] != (cam.height, cam.width):
                cam = Camera.from_fov(rgb.shape[1], rgb.shape[0], self.fov_deg or exif_fov(path) or DEFAULT_FOV_DEG)
            yield FrameRecord(i, float(i), rgb, cam)
            i += 1

    def close(self) -> None:
        pass


class CameraSource:
    """A live camera through OpenCV. Raises SourceError when the device does not exist."""

    def __init__(self, index: int = 0, width: int | None = None, height: int | None = None, fps: float | None = None,
                 fov_deg: float | None = None):
        if os.path.isdir("/dev") and sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{index}"):
            raise SourceError(f"no camera at index {index}" + (f" (cameras: {list_cameras()})" if list_cameras()
                                                                  else " (no camera found)"))
        self.cap = cv2.VideoCapture(index)
        if not self.cap.isOpened():
            raise SourceError(f"no camera at index {index}")
        if width and height:
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            self.cap.set(cv2.CAP_PROP_FPS, fps)
        ok, first = self.cap.read()
        if not ok:
            self.cap.release()
            raise SourceError(f"camera {index} gives no frames")
        self._first = first
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 30.0)
        self.num_frames = 0
        self.height, self.width = first.shape[:2]
        self.camera = Camera.from_fov(self.width, self.height, fov_deg or DEFAULT_FOV_DEG)

    def __iter__(self) -> Iterator[FrameRecord]:
        import time
        t0, index, frame = time.monotonic(), 0, self._first
        while frame is not None:
            yield FrameRecord(index, time.monotonic() - t0, _to_rgb(frame, (self.width, self.height)), self.camera)
            index += 1
            ok, frame = self.cap.read()
            frame = frame if ok else None

    def close(self) -> None:
        self.cap.release()


def list_cameras(max_index: int = 8) -> list[int]:
    """Indices of /dev/video* devices that exist (cheap: no device is opened)."""
    return [i for i in range(max_index) if os.path.exists(f"/dev/video{i}")]
