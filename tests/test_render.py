"""Mesh overlay, GL platform choice and video writing (headless: EGL or OSMesa on the CPU)."""
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import trimesh

from mepo_core.records import Camera
from mepo_core.render.overlay import MeshItem, OverlayRenderer, draw_keypoints, palette
from mepo_core.render.video_writer import VideoWriter

RED, BLUE = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)
SPHERE = trimesh.creation.icosphere(subdivisions=4, radius=1.0)


def sphere(center, radius, color):
    return MeshItem(SPHERE.vertices * radius + np.asarray(center), SPHERE.faces, color)


@pytest.fixture(scope="module")
def camera():
    # Off-centre principal point and fx != fy, so a convention slip (flipped axis, swapped cx/cy) shows up.
    return Camera(fx=520.0, fy=500.0, cx=300.0, cy=260.0, width=640, height=480)


@pytest.fixture(scope="module")
def renderer(camera):
    r = OverlayRenderer(camera, alpha=1.0)
    yield r
    r.close()


def hue(image, xy):
    """'red' or 'blue' when that channel clearly dominates the pixel (lighting adds some white), else 'other'."""
    r, _, b = image[xy[1], xy[0]].astype(int)
    return "red" if r > 2 * b + 40 else "blue" if b > 2 * r + 40 else "other"


def coverage(out, background):
    return np.any(out != background, axis=2)


def test_nearer_person_occludes_farther_whatever_the_list_order(renderer, camera):
    image = np.zeros((camera.height, camera.width, 3), np.uint8)
    near = sphere([0.15, 0.0, 2.0], 0.25, RED)
    far = sphere([-0.15, 0.0, 2.6], 0.35, BLUE)
    u_near, _ = camera.project(np.array([0.15, 0.0, 2.0]))
    u_far, v = camera.project(np.array([-0.15, 0.0, 2.6]))
    overlap = (int(u_near - 10), int(v))      # inside both silhouettes, between the centres
    near_only = (int(u_near + 45), int(v))    # right edge region of the near sphere, outside the far one
    far_only = (int(u_far - 60), int(v))
    for meshes in ([near, far], [far, near]):
        out = renderer.render(image, meshes)
        assert hue(out, overlap) == "red", "the nearer sphere must win where they overlap"
        assert hue(out, near_only) == "red"
        assert hue(out, far_only) == "blue", "the farther sphere must stay visible outside the overlap"


@pytest.mark.parametrize("max_side", [1920, 320])   # 320: rendered at half size and scaled back up
def test_mesh_lands_where_camera_projects_it(camera, max_side):
    center = np.array([0.4, -0.25, 3.0])
    item = sphere(center, 0.15, RED)
    image = np.zeros((camera.height, camera.width, 3), np.uint8)
    with OverlayRenderer(camera, alpha=1.0, max_side=max_side) as r:
        mask = coverage(r.render(image, [item]), image)
    ys, xs = np.nonzero(mask)
    expected = camera.project(item.vertices)
    # A small far sphere: its silhouette centre is its projected centre to well under a pixel.
    np.testing.assert_allclose([xs.mean(), ys.mean()], camera.project(center), atol=1.0)
    scale = min(1.0, max_side / camera.width)
    np.testing.assert_allclose([xs.min(), xs.max(), ys.min(), ys.max()],
                               [expected[:, 0].min(), expected[:, 0].max(),
                                expected[:, 1].min(), expected[:, 1].max()], atol=1.5 / scale)


def test_background_untouched_and_input_not_modified(renderer, camera):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (camera.height, camera.width, 3), dtype=np.uint8)
    before = image.copy()
    item = sphere([0.0, 0.0, 2.5], 0.3, palette(3))
    out = renderer.render(image, [item])
    np.testing.assert_array_equal(image, before)
    uv = camera.project(item.vertices)
    outside = np.ones(image.shape[:2], bool)
    outside[int(uv[:, 1].min()) - 2:int(uv[:, 1].max()) + 3, int(uv[:, 0].min()) - 2:int(uv[:, 0].max()) + 3] = False
    np.testing.assert_array_equal(out[outside], image[outside])
    assert (out[~outside] != image[~outside]).any(axis=1).mean() > 0.5
    np.testing.assert_array_equal(renderer.render(image, []), image)


def test_huge_frame_renders_at_capped_size(camera):
    big = Camera(fx=camera.fx * 6.25, fy=camera.fy * 6.25, cx=2000.0, cy=1500.0, width=4000, height=3000)
    image = np.full((3000, 4000, 3), 40, np.uint8)
    with OverlayRenderer(big) as r:
        assert r.render_size(4000, 3000) == (1920, 1440)
        out = r.render(image, [sphere([0.0, 0.0, 3.0], 0.3, RED)])
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out[1500, 2000, 0] > out[1500, 2000, 2] and (out[0, 0] == 40).all()


def test_renderer_follows_frame_size_changes(renderer, camera):
    item = sphere([0.0, 0.0, 2.5], 0.3, RED)
    for w, h in [(320, 240), (640, 480)]:    # camera intrinsics are rescaled to the frame
        out = renderer.render(np.zeros((h, w, 3), np.uint8), [item])
        assert out.shape == (h, w, 3) and out[h // 2, w * 300 // 640, 0] > 0


def test_closing_one_renderer_leaves_others_working(renderer, camera):
    image = np.zeros((camera.height, camera.width, 3), np.uint8)
    item = sphere([0.0, 0.0, 2.5], 0.3, RED)
    with OverlayRenderer(camera) as other:
        other.render(image, [item])
    assert coverage(renderer.render(image, [item]), image).any()   # EGL: no eglTerminate of the shared display


def test_platform_choice_respects_environment():
    script = "from mepo_core.render.gl_platform import import_pyrender as i; i(); import os; print(os.environ['PYOPENGL_PLATFORM'])"
    for env_value, expected in [("osmesa", {"osmesa"}), (None, {"egl", "osmesa"})]:
        env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
        if env_value:
            env["PYOPENGL_PLATFORM"] = env_value
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() in expected


def test_palette_is_stable_and_distinct():
    colors = np.array([palette(i) for i in range(12)])
    np.testing.assert_array_equal(colors, [palette(i) for i in range(12)])
    dists = np.linalg.norm(colors[:, None] - colors[None], axis=2) + np.eye(12)
    assert dists.min() > 0.1
    assert ((0 <= colors) & (colors <= 1)).all()


def test_draw_keypoints_skips_low_confidence():
    image = np.zeros((100, 100, 3), np.uint8)
    kps = np.array([[20, 20, 0.9], [80, 20, 0.9], [50, 80, 0.1]])
    draw_keypoints(image, kps, [(0, 1), (1, 2)], color=(0, 1, 0), radius=3)
    assert image[20, 50, 1] > 0 and image[20, 50, 0] == 0     # the confident edge
    assert image[80, 50].sum() == 0 and image[50, 65].sum() == 0   # the low-confidence point and its edge


def read_video(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame[..., ::-1])
    cap.release()
    return frames


def test_video_writer_round_trip(tmp_path):
    path = tmp_path / "out.mp4"
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)] * 4
    with VideoWriter(path, fps=25, size=(96, 64)) as writer:
        for c in colors:
            writer.write(np.full((64, 96, 3), c, np.uint8))
    assert writer.backend == "pyav-h264"
    frames = read_video(path)
    assert len(frames) == len(colors)
    assert frames[0].shape == (64, 96, 3)
    for frame, c in zip(frames, colors):
        np.testing.assert_allclose(frame.reshape(-1, 3).mean(0), c, atol=12)
    with pytest.raises(ValueError):
        VideoWriter(tmp_path / "x.mp4", 25, (96, 64)).write(np.zeros((10, 10, 3), np.uint8))


def test_video_writer_pads_odd_sizes(tmp_path):
    with VideoWriter(tmp_path / "odd.mp4", fps=30, size=(65, 49)) as writer:
        for _ in range(5):
            writer.write(np.full((49, 65, 3), 128, np.uint8))
    frames = read_video(tmp_path / "odd.mp4")
    assert len(frames) == 5 and frames[0].shape == (50, 66, 3)


def test_killed_run_leaves_playable_prefix(tmp_path):
    path = tmp_path / "killed.mp4"
    script = textwrap.dedent(f"""
        import os, numpy as np
        from mepo_core.render.video_writer import VideoWriter
        w = VideoWriter({str(path)!r}, fps=10, size=(64, 48))
        for i in range(100):
            w.write(np.full((48, 64, 3), (i * 7) % 256, np.uint8))
        os._exit(1)   # no close(), no flush: as if killed
    """)
    subprocess.run([sys.executable, "-c", script], check=False, cwd=os.getcwd(), timeout=120)
    frames = read_video(path)
    assert len(frames) >= 40   # keyframe (fragment) every 20 frames; the unfinished tail may be lost


def test_still_image_output(tmp_path):
    image = np.zeros((30, 40, 3), np.uint8)
    image[..., 0] = 200
    with VideoWriter(tmp_path / "photo.png", fps=1, size=(40, 30)) as writer:
        writer.write(image)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "photo.png"))[..., ::-1], image)
