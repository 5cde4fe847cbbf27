"""Write RGB frames to an H.264 mp4 (or to one image when the path ends in .png/.jpg).

The mp4 is fragmented (a fragment per keyframe, one keyframe per ~2 s) and written straight to its final path, so a
run killed half-way leaves a file that plays up to its last complete fragment. ``close()`` finishes it properly.
"""
from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def write_image(path: str | Path, rgb: np.ndarray) -> None:
    """Save one (H, W, 3) uint8 RGB image; the format follows the suffix."""
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write image {path}")


class VideoWriter:
    """``VideoWriter(path, fps, (width, height))``; ``write(rgb)`` per frame; ``close()`` or use ``with``.

    H.264 needs even sizes: an odd width or height is padded by one repeated edge pixel (see ``frame_size``).
    Frames must match ``size``. With an image suffix every ``write`` overwrites the image (stills: one frame).
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], crf: int = 20):
        self.path = Path(path)
        self.fps = float(fps)
        self.size = (int(size[0]), int(size[1]))
        self.frame_size = (self.size[0] + self.size[0] % 2, self.size[1] + self.size[1] % 2)
        self.frames_written = 0
        self._av = self._cv = self._stream = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.suffix.lower() in IMAGE_SUFFIXES:
            self.backend = "image"
            return
        try:
            self._open_av(crf)
            self.backend = "pyav-h264"
        except Exception as err:     # no PyAV, or an FFmpeg build without libx264
            log.warning("PyAV H.264 unavailable (%s); falling back to OpenCV mp4v", err)
            self._open_cv()
            self.backend = "opencv-mp4v"

    def _open_av(self, crf: int) -> None:
        import av
        rate = Fraction(self.fps).limit_denominator(1001)   # 29.97 -> 30000/1001
        container = av.open(str(self.path), mode="w", format="mp4",
                            container_options={"movflags": "frag_keyframe+empty_moov+default_base_moof",
                                               "flush_packets": "1"})
        try:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = self.frame_size
            stream.pix_fmt = "yuv420p"
            stream.time_base = 1 / rate
            stream.codec_context.gop_size = max(1, round(2 * self.fps))   # keyframe (= fragment) every ~2 s
            stream.options = {"crf": str(crf), "preset": "veryfast"}
            stream.codec_context.thread_type = "AUTO"
        except Exception:
            container.close()
            self.path.unlink(missing_ok=True)
            raise
        self._av, self._stream = container, stream

    def _open_cv(self) -> None:
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.frame_size)
        if not writer.isOpened():
            raise OSError(f"could not open a video writer for {self.path}")
        self._cv = writer

    def write(self, rgb: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame of the writer's ``size``."""
        if rgb.shape != (self.size[1], self.size[0], 3) or rgb.dtype != np.uint8:
            raise ValueError(f"frame {rgb.shape} {rgb.dtype} does not match writer size {self.size} uint8 RGB")
        if self.backend == "image":
            write_image(self.path, rgb)
        else:
            pad_w, pad_h = self.frame_size[0] - self.size[0], self.frame_size[1] - self.size[1]
            if pad_w or pad_h:
                rgb = cv2.copyMakeBorder(rgb, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
            if self._av is not None:
                import av
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame.pts = self.frames_written
                for packet in self._stream.encode(frame):
                    self._av.mux(packet)
            elif self._cv is not None:
                self._cv.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            else:
                raise ValueError(f"writer for {self.path} is closed")
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and finish the file; safe to call twice."""
        if self._av is not None:
            container, self._av = self._av, None
            try:
                for packet in self._stream.encode(None):
                    container.mux(packet)
            finally:
                container.close()
        if self._cv is not None:
            self._cv.release()
            self._cv = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

