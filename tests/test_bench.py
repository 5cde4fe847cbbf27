"""Smoke test of `mepo bench`: a tiny run (1-person clip, 3 frames) prints the expected table."""
import json

import pytest

from mepo_core import bench

pytestmark = pytest.mark.skipif(not (bench.VIDEO_DIR / bench.CLIPS["1p"].file).is_file(),
                                reason="shared demo videos not available")


def test_letterbox_keeps_aspect_and_pads():
    import numpy as np
    rgb = bench.letterbox(np.full((1920, 1080, 3), 255, np.uint8))
    assert rgb.shape == (480, 640, 3)
    assert rgb[:, 0].max() == 0 and rgb[240, 320].min() == 255     # side padding, content in the middle


def test_bench_tiny_run(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--frames", "3", "--warmup", "1", "--clips", "1p", "--refine-iters", "1",
                       "--json", str(out)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("clip"))
    for column in ("fps", "med ms", "p95 ms", "ppl/fr", "RSS MB", *bench.STAGES, "vs Hol", "target"):
        assert column in header
    rows = [line for line in lines if line.startswith("1 person")]
    assert [r.split()[2] for r in rows] == ["ours", "holistic"]
    data = json.loads(out.read_text())["rows"]
    assert [r["system"] for r in data] == ["ours", "holistic"]
    for r in data:
        assert r["frames"] == 3 and r["fps"] > 0 and r["rss_mb"] > 0 and r["people"] > 0
    assert set(bench.STAGES) <= set(data[0]["stages_ms"])
