"""The `mepo` command end to end on real footage, and its behaviour on bad input."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mepo_core.body.model import load_body_model
from mepo_core.io.npz import load_take
from mepo_core.records import SmplxParams

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEMO = ROOT / "assets" / "demo" / "multi_person_demo.mp4"
COCO = SHARED / "images" / "coco_val2014" / "COCO_val2014_000000000536.jpg"


def mepo(*args, timeout=600, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "mepo_core.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def assert_clean_error(result, *words):
    assert result.returncode not in (0, 1), result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [l for l in result.stderr.splitlines() if l.startswith("mepo: error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture(scope="module")
def demo_take(tmp_path_factory):
    out = tmp_path_factory.mktemp("take")
    r = mepo("--video", DEMO, "--out", out / "take.npz", "--overlay", out / "take.mp4", "--max-frames", 16)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def test_video_capture_finds_both_people_with_stable_ids(demo_take):
    out, _ = demo_take
    take = load_take(str(out / "take.npz"))
    T, P = take["valid"].shape
    assert T == 16
    per_id = take["valid"].sum(0)
    main_ids = np.sort(per_id)[-2:]
    assert (main_ids >= 0.9 * T).all(), per_id        # both people, one stable ID each, in >= 90% of frames
    assert take["body_pose"].shape == (T, P, 63) and take["left_hand_pose"].shape == (T, P, 45)
    assert take["joints3d"].shape[2:] == (76, 3) and take["keypoints2d"].shape[2:] == (76, 3)
    assert str(take["body_model"]) == "mepo-open-anny"
    # people stand at plausible metric depths, in front of the camera
    z = take["transl"][..., 2][take["valid"]]
    assert (z > 0.5).all() and (z < 30).all()
    # fitted joints reproject near the detected 2D body landmarks (hips, knees, shoulders, elbows)
    kp, lm = take["keypoints2d"][take["valid"]], take["landmarks_body2d"][take["valid"]]
    err = np.linalg.norm(kp[:, [1, 2, 4, 5, 16, 17, 18, 19], :2] - lm[:, [23, 24, 25, 26, 11, 12, 13, 14], :2], axis=-1)
    assert np.median(err) < 0.03 * take["image_size"].max()


def test_npz_parameters_reproduce_saved_joints_through_smplx(demo_take):
    out, _ = demo_take
    take = load_take(str(out / "take.npz"))
    model = load_body_model()
    valid = take["valid"]
    params = {k: take[k][valid] for k in SmplxParams.KEYS}
    _, joints = model.forward(params)
    err = np.linalg.norm(joints[:, :76].detach().numpy() - take["joints3d"][valid], axis=-1)
    assert err.max() < 1e-3                     # metres


def test_overlay_video_and_progress(demo_take):
    out, r = demo_take
    cap = cv2.VideoCapture(str(out / "take.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 16
    assert "frame" in r.stderr and "people=" in r.stderr      # tqdm progress bar with people count


def test_inspect_describes_take(demo_take):
    out, _ = demo_take
    r = mepo("inspect", out / "take.npz")
    assert r.returncode == 0
    assert "frames         : 16" in r.stdout and "mepo-open-anny" in r.stdout and "body_pose" in r.stdout


def test_image_capture_with_overlay(tmp_path):
    r = mepo("--image", COCO, "--out", tmp_path / "photo.npz", "--overlay", tmp_path / "photo.png")
    assert r.returncode == 0, r.stderr[-3000:]
    take = load_take(str(tmp_path / "photo.npz"))
    assert take["valid"].shape[0] == 1 and take["valid"].sum() >= 2
    overlay = cv2.imread(str(tmp_path / "photo.png"))
    original = cv2.imread(str(COCO))
    assert overlay.shape == original.shape
    assert np.abs(overlay.astype(int) - original.astype(int)).mean() > 2   # meshes were drawn


def test_standin_smplx_model_dir_same_code_path(tmp_path, standin_model_dir):
    r = mepo("--image", COCO, "--out", tmp_path / "s.npz", "--model-dir", standin_model_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    take = load_take(str(tmp_path / "s.npz"))
    assert str(take["body_model"]) == "smplx"
    model = load_body_model(standin_model_dir)
    valid = take["valid"]
    _, joints = model.forward({k: take[k][valid] for k in SmplxParams.KEYS})
    assert np.abs(joints[:, :76].detach().numpy() - take["joints3d"][valid]).max() < 1e-3


@pytest.mark.parametrize("case", ["missing_video", "corrupt_video", "zero_frames", "bad_image", "missing_image",
                                  "wrong_model_dir", "unwritable_output", "no_input"])
def test_bad_input_gives_one_clear_line(tmp_path, case):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(5000))
    empty = tmp_path / "empty.mp4"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    writer.release()
    bad_image = tmp_path / "bad.jpg"
    bad_image.write_bytes(b"not a jpeg")
    out = tmp_path / "o.npz"
    args = {
        "missing_video": (["--video", tmp_path / "nope.mp4", "--out", out], "not found"),
        "corrupt_video": (["--video", corrupt, "--out", out], "video"),
        "zero_frames": (["--video", empty, "--out", out], "video"),
        "bad_image": (["--image", bad_image, "--out", out], "cannot read image"),
        "missing_image": (["--image", tmp_path / "nope.png", "--out", out], "not found"),
        "wrong_model_dir": (["--image", COCO, "--out", out, "--model-dir", tmp_path], "SMPLX_NEUTRAL"),
        "unwritable_output": (["--image", COCO, "--out", tmp_path / "no" / "such" / "dir.npz"], "does not exist"),
        "no_input": (["--out", out], "input"),
    }[case]
    r = mepo(*args[0])
    assert_clean_error(r, args[1])
    assert not out.exists()


def test_no_person_found_is_an_error_but_not_a_crash(tmp_path):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((480, 640, 3), 128, np.uint8))
    r = mepo("--image", blank, "--out", tmp_path / "b.npz")
    assert_clean_error(r, "no person")


def test_ctrl_c_keeps_processed_frames(tmp_path):
    video = SHARED / "video" / "romp_sample_video.mp4"
    out = tmp_path / "partial.npz"
    proc = subprocess.Popen([sys.executable, "-m", "mepo_core.cli", "--video", str(video), "--out", str(out)],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    # wait until a few frames went through (the progress bar reports them), then interrupt
    deadline = time.time() + 240
    seen = ""
    while time.time() < deadline:
        seen += proc.stderr.read(200) or ""
        if "ids=" in seen and any(f" {n}/257" in seen for n in range(5, 200)):
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, (seen + rest)[-2000:]
    assert "Traceback" not in rest
    take = load_take(str(out))
    assert 5 <= take["valid"].shape[0] < 257
    assert take["valid"].any()


def test_app_without_display_is_a_clear_error():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    r = subprocess.run([sys.executable, "-m", "mepo_core.cli"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env=env)
    assert_clean_error(r, "display")
