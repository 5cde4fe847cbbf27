"""Overlapped capture (decode / landmarks / estimate / output threads) gives the same take as the sequential loop,
keeps every processed frame when the source fails part-way, and raises errors from any stage."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mepo_core.capture import run_capture
from mepo_core.errors import SourceError
from mepo_core.pipeline import CapturePipeline
from mepo_core.sources import VideoSource

CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "openpose_video.avi"


class FailingSource:
    """A real clip whose decoder fails after ``fail_after`` frames (like a truncated file)."""

    def __init__(self, fail_after: int):
        self._source = VideoSource(str(CLIP), max_frames=40)
        self.fail_after = fail_after

    def __getattr__(self, name):
        return getattr(self._source, name)

    def __iter__(self):
        for i, frame in enumerate(self._source):
            if i == self.fail_after:
                raise SourceError("corrupt frame 12")
            yield frame


def _take(tmp_path: Path, staged: bool, name: str, frames: int = 24):
    pipeline = CapturePipeline.create(face=False, smooth="medium")
    run_capture(VideoSource(str(CLIP), max_frames=frames), pipeline, str(tmp_path / name), progress=False,
                staged=staged)
    return np.load(tmp_path / name)


def test_staged_capture_gives_the_sequential_take(tmp_path):
    sequential, staged = _take(tmp_path, False, "seq.npz"), _take(tmp_path, True, "staged.npz")
    assert sequential.files == staged.files
    np.testing.assert_array_equal(sequential["person_ids"], staged["person_ids"])
    np.testing.assert_array_equal(sequential["valid"], staged["valid"])
    assert sequential["valid"].sum() >= 30                  # the clip starts empty, then 2-3 people
    for key in ("joints3d", "transl", "body_pose", "keypoints2d", "landmarks_body2d"):
        # torch's own run-to-run noise is ~1e-6 (measured: two sequential runs differ by as much)
        np.testing.assert_allclose(sequential[key], staged[key], atol=1e-3, err_msg=key)


@pytest.mark.parametrize("staged", [False, True])
def test_a_source_failing_part_way_keeps_the_frames_before_it(tmp_path, staged):
    out = tmp_path / "partial.npz"
    pipeline = CapturePipeline.create(face=False, hands=False, smooth="medium")
    with pytest.raises(SourceError, match="corrupt frame"):
        run_capture(FailingSource(fail_after=12), pipeline, str(out), progress=False, staged=staged)
    take = np.load(out)
    assert len(take["frame_index"]) == 12                   # every frame before the failure, smoothing flushed


def test_an_error_in_the_output_stage_reaches_the_caller(tmp_path):
    from mepo_core.staged import run_staged
    pipeline = CapturePipeline.create(face=False, hands=False)

    def emit(frame):
        if frame.index == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run_staged(VideoSource(str(CLIP), max_frames=6), pipeline, emit)
