"""The inference engine: torch ports of the shipped tflite models against LiteRT, every backend against eager torch,
the on-disk engine cache, and the pipeline on a real clip with a torch-port backend."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mepo_core.detect.roi import sigmoid
from mepo_core.detect.tflite import TfliteModel
from mepo_core.engine import backends as B
from mepo_core.engine.cache import cached_engine, engine_key
from mepo_core.engine.tflite_graph import read_graph
from mepo_core.engine.torch_port import TorchTflite
from mepo_core.errors import MepoError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MODELS = ["pose_detection/pose_detection.tflite", "pose_landmark/pose_landmark_full.tflite",
          "palm_detection/palm_detection_full.tflite", "hand_landmark/hand_landmark_full.tflite",
          "face_detection/face_detection_short_range.tflite", "face_landmark/face_landmark.tflite",
          "iris_landmark/iris_landmark.tflite", "holistic_landmark/hand_recrop.tflite"]


def real_crops(size: int, count: int = 3) -> np.ndarray:
    """``count`` (size, size, 3) crops in [0, 1] of real photos: whole image, and zoomed regions around people."""
    crops = []
    for name, boxes in (("tennis_lesson.jpg", [(0.0, 0.0, 1.0, 1.0), (0.25, 0.1, 0.75, 0.9)]),
                        ("skates.png", [(0.2, 0.0, 0.8, 1.0)])):
        image = cv2.imread(str(DATA / "images" / name))[:, :, ::-1]
        h, w = image.shape[:2]
        for x0, y0, x1, y1 in boxes:
            part = image[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)]
            crops.append(cv2.resize(part, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255)
    return np.stack(crops[:count])


def scaled_inputs(relative: str, crops: np.ndarray) -> np.ndarray:
    """Detectors take [-1, 1] inputs, landmark models [0, 1] (as the detect modules feed them)."""
    return crops * 2 - 1 if "detection" in relative else crops


def assert_outputs_close(ref: list, ours: list, size: int, tol: float = 1e-3) -> None:
    """Coordinates (output 0, crop pixels) within ``tol`` of the crop size (the issue's target is 1e-3); the
    segmentation (logits reach +-1000 after five upsamplings) as the probability the pipeline uses; other outputs
    (scores, logits, world metres, heatmaps) within ``tol`` of their own scale."""
    assert len(ref) == len(ours)
    for k, (r, o) in enumerate(zip(ref, ours)):
        assert r.shape == o.shape
        if k == 0:
            diff, limit = float(np.abs(r - o).max()), tol * size
        elif r.shape[-3:] == (256, 256, 1):
            diff, limit = float(np.abs(sigmoid(r) - sigmoid(o)).max()), 5 * tol
        else:
            diff, limit = float(np.abs(r - o).max()), tol * max(1.0, float(np.abs(r).max()))
        assert diff < limit, (k, diff, limit)


@pytest.mark.parametrize("relative", MODELS)
def test_torch_port_matches_litert_on_real_crops(relative):
    lite = TfliteModel(relative, num_threads=1)
    port = B.TorchModel(relative)
    images = scaled_inputs(relative, real_crops(lite.input_size))
    ours = port.run_batch(images)                       # all crops in one batch
    for i, image in enumerate(images):
        assert_outputs_close(lite.run(image), [o[i] for o in ours], lite.input_size)


def test_sparse_weights_are_densified_at_load():
    graph = read_graph(B.LiteRtModel("pose_detection/pose_detection.tflite", 1).path)
    kinds = {op.kind for op in graph.ops}
    assert "DENSIFY" not in kinds and "DEQUANTIZE" not in kinds      # folded into dense fp32 constants
    conv_weights = [graph.constants[op.inputs[1]] for op in graph.ops if op.kind == "CONV_2D"]
    assert all(w.dtype == np.float32 for w in conv_weights)
    assert sum(float((w == 0).mean()) > 0.3 for w in conv_weights) >= 10   # the sparse ones, now dense with zeros


def test_a_batch_equals_single_runs():
    port = B.TorchModel("hand_landmark/hand_landmark_full.tflite")
    crops = real_crops(port.input_size)
    batch = port.run_batch(crops)
    for i, crop in enumerate(crops):
        for b, s in zip(batch, port.run(crop)):
            np.testing.assert_allclose(b[i], s, atol=1e-4)


def _compare_backend(backend: str, relative: str, tol: float):
    eager = B.TorchModel(relative)
    other = B.load_model(relative, backend)
    images = scaled_inputs(relative, real_crops(eager.input_size))
    assert_outputs_close(eager.run_batch(images), other.run_batch(images), eager.input_size, tol)


@pytest.mark.parametrize("relative", ["pose_landmark/pose_landmark_full.tflite", "pose_detection/pose_detection.tflite",
                                      "face_landmark/face_landmark.tflite"])
def test_onnx_runtime_matches_eager_torch(relative, tmp_path, monkeypatch):
    monkeypatch.setenv("MEPO_CACHE_DIR", str(tmp_path))
    _compare_backend("onnx", relative, 1e-3)


def test_torch_compile_matches_eager_torch():
    _compare_backend("compile", "hand_landmark/hand_landmark_full.tflite", 1e-3)


def test_litert_matches_eager_torch_on_a_batch():
    _compare_backend("litert", "pose_landmark/pose_landmark_full.tflite", 1e-3)


@pytest.mark.skipif(not B.tensorrt_available(), reason="TensorRT needs an NVIDIA GPU with CUDA and torch-tensorrt "
                                                       "(the 'gpu' extra); this machine has neither")
@pytest.mark.parametrize("relative", MODELS)
def test_tensorrt_fp16_matches_eager_torch(relative, tmp_path, monkeypatch):
    monkeypatch.setenv("MEPO_CACHE_DIR", str(tmp_path))
    _compare_backend("tensorrt", relative, 2e-2)           # FP16: ~3 significant digits


@pytest.mark.skipif(not B.cuda_available(), reason="needs a CUDA GPU")
def test_onnx_cuda_provider_matches_eager_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("MEPO_CACHE_DIR", str(tmp_path))
    _compare_backend("onnx", "pose_landmark/pose_landmark_full.tflite", 1e-3)


def test_a_corrupt_engine_cache_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("MEPO_CACHE_DIR", str(tmp_path))
    relative = "hand_landmark/hand_landmark_full.tflite"
    first = B.load_model(relative, "onnx")
    (cached,) = list((tmp_path / "engines").glob("hand_landmark_full-onnx-*.onnx"))
    cached.write_bytes(b"not an onnx file")                     # e.g. a truncated write or a disk error
    again = B.load_model(relative, "onnx")
    assert cached.stat().st_size > 1_000_000
    crops = real_crops(first.input_size)
    np.testing.assert_allclose(first.run_batch(crops)[0], again.run_batch(crops)[0], atol=1e-5)


def test_engine_cache_builds_once_and_keys_change_with_what_makes_an_engine_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("MEPO_CACHE_DIR", str(tmp_path))
    builds = []

    def build(path):
        builds.append(path)
        path.write_text("engine")
    for _ in range(2):
        assert cached_engine("x.bin", build, lambda p: p.read_text()) == "engine"
    assert len(builds) == 1
    assert not list((tmp_path / "engines").glob("*.partial"))
    model = B.LiteRtModel("hand_landmark/hand_landmark_full.tflite", 1).path
    other = B.LiteRtModel("hand_landmark/hand_landmark_lite.tflite", 1).path
    keys = {engine_key(model, "onnx", "fp32", "a"), engine_key(model, "onnx", "fp16", "a"),
            engine_key(model, "tensorrt", "fp32", "a"), engine_key(model, "onnx", "fp32", "b"),
            engine_key(other, "onnx", "fp32", "a")}
    assert len(keys) == 5


def test_unknown_or_unavailable_backends_give_clear_errors():
    with pytest.raises(MepoError, match="unknown backend"):
        B.load_model("hand_landmark/hand_landmark_full.tflite", "openvino")
    if not B.tensorrt_available():
        with pytest.raises(MepoError, match="NVIDIA GPU"):
            B.load_model("hand_landmark/hand_landmark_full.tflite", "tensorrt")


def test_auto_picks_a_measured_cpu_backend_and_remembers_it(tmp_path, monkeypatch):
    from mepo_core.engine import select
    monkeypatch.setenv("MEPO_CACHE_DIR", str(tmp_path))
    select.auto_backend.cache_clear()
    record = tmp_path / "engines" / "cpu_backend.json"
    try:
        choice = select.auto_backend()
        if not B.tensorrt_available():
            assert choice in B.CPU_BACKENDS and record.is_file()
            assert choice in record.read_text()
            record.write_text("{corrupt")                       # re-measured, never a crash
            select.auto_backend.cache_clear()
            assert select.auto_backend() in B.CPU_BACKENDS
    finally:
        select.auto_backend.cache_clear()


def test_pipeline_on_the_onnx_backend_finds_the_same_people_as_litert(tmp_path, monkeypatch):
    """Same clip, same frames: the torch port (via ONNX Runtime) and LiteRT give the same people and landmarks.
    Compared in still-image mode, where each frame stands alone (video mode feeds each frame's landmarks into the
    next frame's crop, so 1e-4 px differences can grow over frames)."""
    from mepo_core.pipeline import CapturePipeline
    from mepo_core.sources import VideoSource
    monkeypatch.setenv("MEPO_CACHE_DIR", str(tmp_path))
    results = {}
    for backend in ("litert", "onnx"):
        pipeline = CapturePipeline.create(backend=backend, still_image=True, face=False, refine_iterations=0)
        clip = VideoSource(str(DATA / "video" / "openpose_video.avi"), max_frames=23)
        frames = [pipeline.landmarker.process(f) for i, f in enumerate(clip) if i >= 20]   # 3 people there
        results[backend] = [[p.landmarks.body_2d for p in f.people] for f in frames]
    for lite, onnx in zip(results["litert"], results["onnx"]):
        assert len(lite) == len(onnx) >= 2
        for a, b in zip(lite, onnx):
            diff = np.abs(a[:, :2] - b[:, :2]).max(axis=1)       # frame pixels per landmark
            # Thresholds amplify 1e-4 px model differences: a detection scored near 0.5 enters or leaves the
            # weighted NMS and shifts the ROI (all joints move ~1-3 px), and the heatmap refinement switches per
            # joint at confidence 0.5 (one joint moves ~6 px). Most people agree to 0.1 px; a broken port is off by
            # tens of pixels (tests above compare the models themselves on identical crops).
            assert np.median(diff) < 2.0 and diff.max() < 10.0, diff


def test_backend_bench_scenes():
    """1 and 3 people are found in every frame at 640x480; the 6-person scene is the 3-person half beside its
    mirror image (the detector finds 3-4 of the 6 there: the bench's "found" column reports it)."""
    from mepo_core.detect.landmarker import WholeBodyLandmarker
    from mepo_core.engine.bench import scene_frames
    from mepo_core.records import Camera, FrameRecord
    found = {}
    for people in (1, 3, 6):
        frames = scene_frames(people, (640, 480), 4)
        assert frames.shape == (4, 480, 640, 3)
        landmarker = WholeBodyLandmarker(hands=False, face=False)
        found[people] = [len(landmarker.process(FrameRecord(i, i / 30, f, Camera.from_fov(640, 480, 60.0))).people)
                         for i, f in enumerate(frames)]
    assert found[1] == [1] * 4 and found[3] == [3] * 4 and min(found[6]) > 3
    six = scene_frames(6, (1280, 720), 1)[0]
    np.testing.assert_array_equal(six[:, :640], six[:, 640:][:, ::-1])


def test_backend_bench_prints_one_row_per_backend_and_scene(capsys):
    from mepo_core.engine import bench
    assert bench.main(["--backends", "litert,onnx", "--people", "1", "--sizes", "640x480", "--frames", "2",
                       "--warmup", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("backend"))
    for column in ("median ms", "fps", "staged fps", "vs litert", "peak MB", "max |d| px"):
        assert column in header
    rows = {line.split()[0]: line.split() for line in lines if line.split()[:1] in (["litert"], ["onnx"])}
    assert set(rows) == {"litert", "onnx"}
    assert rows["litert"][8] == "1.00x"
    assert float(rows["onnx"][-2]) < 0.256          # 1e-3 of a 256 px crop


def test_device_side_crops_match_the_cpu_crops():
    """GPU backends crop on the device (engine/crops.py, grid_sample); forced on here for the CPU: the crops equal
    cv2.s within one grey level (cv2 rounds to integers), and the pipeline's landmarks within a small fraction of a pixel."""
    import torch
    from mepo_core.detect.roi import crop_matrix, crop_roi
    from mepo_core.engine.crops import crop_batch, frame_tensor
    image = np.ascontiguousarray(cv2.imread(str(DATA / "images" / "tennis_lesson.jpg"))[:, :, ::-1])
    rois = [np.array([300.0, 250, 200, 200, 0.3]), np.array([50.0, 40, 300, 300, -1.0]), np.array([900.0, 400, 260, 260, 0])]
    for flip in (False, True):
        ref = np.stack([crop_roi(image, r, 256, flip) for r in rois])
        ours = crop_batch(frame_tensor(image, torch.device("cpu")), np.stack([crop_matrix(r, 256, flip) for r in rois]),
                          256).numpy()
        assert np.abs(ref - ours).max() < 1.0 / 255
    model = B.TorchModel("pose_landmark/pose_landmark_full.tflite")
    cpu = model.run_crops(image, rois)
    model.device_crops = True
    device = model.run_crops(image, rois, flips=[False, False, False])
    xy = lambda out: out[0].reshape(-1, 39, 5)[:, :33, :2]     # body landmark x, y in the 256 px crop
    diff = np.abs(xy(cpu) - xy(device))
    assert np.median(diff) < 0.2 and diff.max() < 2.0, (np.median(diff), diff.max())
