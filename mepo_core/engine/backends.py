"""One interface over every way of running MediaPipe's landmark/detector models.

``load_model(relative_path, backend)`` returns an object with ``input_size``, ``run(image)`` (one (S, S, 3) crop) and
``run_batch(images)`` ((B, S, S, 3) -> outputs with a batch axis), in the output order of ``detect.tflite``:

- ``litert``: the shipped .tflite in LiteRT's XNNPACK interpreter, one crop at a time (the headless issue's path);
- ``torch``: the torch port (``engine.torch_port``) in eager mode;
- ``compile``: the torch port through ``torch.compile`` (inductor, CPU or CUDA);
- ``onnx``: the torch port exported to ONNX once (cached), run by ONNX Runtime (CUDA provider when present);
- ``tensorrt``: the torch port compiled by torch-tensorrt, FP16, dynamic batch 1-8, cached program (CUDA only);
- ``auto``: TensorRT when CUDA and torch-tensorrt are present, else the fastest CPU backend measured on this
  machine at first use (remembered in the cache, see ``engine.select``).
"""
from __future__ import annotations

import functools
import os
import threading
import warnings

import numpy as np

from mepo_core.errors import MepoError
from mepo_core.paths import cache_dir

from .cache import cached_engine, engine_key

CPU_BACKENDS = ("litert", "torch", "compile", "onnx")
BACKENDS = CPU_BACKENDS + ("tensorrt",)
MAX_BATCH = 8


def cuda_available() -> bool:
    import torch
    return torch.cuda.is_available()


def tensorrt_available() -> bool:
    if not cuda_available():
        return False
    try:
        import torch_tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def available_backends() -> list[str]:
    names = ["litert", "torch", "compile"]
    try:
        import onnxruntime  # noqa: F401
        import onnx  # noqa: F401
        names.append("onnx")
    except ImportError:
        pass
    if tensorrt_available():
        names.append("tensorrt")
    return names


class BatchedModel:
    """Common front: ``run``/``run_batch`` in numpy, chunks of at most MAX_BATCH crops."""

    input_size: int

    def run(self, image: np.ndarray) -> list[np.ndarray]:
        return [o[0] for o in self.run_batch(image[None])]

    def run_batch(self, images: np.ndarray) -> list[np.ndarray]:
        images = np.ascontiguousarray(images, dtype=np.float32)
        if len(images) <= MAX_BATCH:
            return self._run(images)
        parts = [self._run(images[i:i + MAX_BATCH]) for i in range(0, len(images), MAX_BATCH)]
        return [np.concatenate(chunk) for chunk in zip(*parts)]

    def run_crops(self, image: np.ndarray, rois: list[np.ndarray], flips: list[bool] | None = None
                  ) -> list[np.ndarray]:
        """The model on the (size, size) crops of ``rois`` (``detect.roi`` geometry; ``flips``: mirror that crop) of
        one RGB uint8 frame, as one batch; the crops are made on the CPU here, on the model's device by GPU backends."""
        from mepo_core.detect.roi import crop_roi
        flips = flips or [False] * len(rois)
        return self.run_batch(np.stack([crop_roi(image, roi, self.input_size, f) for roi, f in zip(rois, flips)]))

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError


class LiteRtModel(BatchedModel):
    def __init__(self, relative_path: str, num_threads: int):
        from mepo_core.detect.tflite import TfliteModel
        self._model = TfliteModel(relative_path, num_threads)
        self.path, self.input_size = self._model.path, self._model.input_size

    def run(self, image: np.ndarray) -> list[np.ndarray]:
        return self._model.run(image)

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        outs = [self._model.run(image) for image in images]
        return [np.stack(o) for o in zip(*outs)]


class TorchModel(BatchedModel):
    """Eager, ``torch.compile``d or TensorRT-compiled torch port on ``device``: ``run_tensor`` keeps tensors there,
    ``run``/``run_batch``/``run_crops`` return numpy (on a GPU, crops are made there too)."""

    def __init__(self, relative_path: str, mode: str = "eager", device: str = "cpu", num_threads: int = 2):
        import torch
        from mepo_core.detect.tflite import model_path
        from .torch_port import TorchTflite
        self.path = model_path(relative_path)
        self.device = torch.device(device)
        self.num_threads = num_threads
        self.device_crops = self.device.type == "cuda"      # pre-processing stays on the GPU
        self.module = TorchTflite.load(self.path).to(self.device)
        self.input_size = self.module.input_size
        self.forward = self.module
        self.buckets = False
        if mode == "compile":
            # Inductor keeps its compiled kernels on disk (keyed by graph, shapes and versions): only the first
            # run on a machine pays minutes per model. Static shapes per batch bucket (1, 2, 4, 8) compile faster
            # and run faster than dynamic ones; batches are zero-padded up to their bucket.
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))
            # All ports share one forward(): 8 models x 4 buckets would pass dynamo's default of 8 compiled
            # variants per code object, after which it silently falls back to eager.
            import torch._dynamo.config as dynamo_config
            dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 64)
            dynamo_config.accumulated_recompile_limit = max(dynamo_config.accumulated_recompile_limit, 512)
            self.forward, self.buckets = torch.compile(self.module, dynamic=False), True
        elif mode == "tensorrt":
            self.forward = _tensorrt_program(self.module, self.path)

    def run_tensor(self, images):
        """(B, S, S, 3) float tensor on ``device`` -> list of output tensors on ``device``."""
        import torch
        if self.device.type != "cpu" or threading.current_thread() is not threading.main_thread():
            with torch.inference_mode():
                return self.forward(images)
        # The body model estimator keeps torch at 1 thread (tiny tensors); convolutions want all of them. Not in
        # the overlapped capture, where the estimator runs beside this in the main thread and torch's thread
        # count is process-wide: there each of the two stages keeps one core.
        previous = torch.get_num_threads()
        torch.set_num_threads(self.num_threads)
        try:
            with torch.inference_mode():
                return self.forward(images)
        finally:
            torch.set_num_threads(previous)

    def run_crops(self, image: np.ndarray, rois: list[np.ndarray], flips: list[bool] | None = None
                  ) -> list[np.ndarray]:
        if not self.device_crops:
            return super().run_crops(image, rois, flips)
        from mepo_core.detect.roi import crop_matrix
        from .crops import crop_batch, frame_tensor
        flips = flips or [False] * len(rois)
        matrices = np.stack([crop_matrix(roi, self.input_size, f) for roi, f in zip(rois, flips)])
        crops = crop_batch(frame_tensor(image, self.device), matrices, self.input_size)
        outs = [self._forward(crops[start:start + MAX_BATCH]) for start in range(0, len(crops), MAX_BATCH)]
        return [np.concatenate(chunk) for chunk in zip(*outs)]

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        import torch
        return self._forward(torch.from_numpy(images).to(self.device))

    def _forward(self, images) -> list[np.ndarray]:
        """A (B <= MAX_BATCH, S, S, 3) tensor on the device -> numpy outputs; ``compile`` pads B to its bucket."""
        import torch
        count = len(images)
        if self.buckets and count & (count - 1):
            padding = images.new_zeros(((1 << count.bit_length()) - count,) + tuple(images.shape[1:]))
            images = torch.cat([images, padding])
        return [o[:count].float().cpu().numpy() for o in self.run_tensor(images)]


class OnnxModel(BatchedModel):
    """The torch port exported once to ONNX (dynamic batch, cached on disk) and run by ONNX Runtime."""

    def __init__(self, relative_path: str, num_threads: int, device: str = "cpu"):
        import onnxruntime as ort
        from mepo_core.detect.tflite import model_path
        self.path = model_path(relative_path)
        providers = ["CPUExecutionProvider"]
        if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")   # don't starve other stages

        def load(path):
            return ort.InferenceSession(str(path), options, providers=providers)
        self.session = cached_engine(engine_key(self.path, "onnx", "fp32", "dynamic-batch") + ".onnx",
                                     functools.partial(export_onnx, self.path), load)
        shape = self.session.get_inputs()[0].shape
        self.input_size = int(shape[1])
        self._input = self.session.get_inputs()[0].name

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self._input: images})


def export_onnx(tflite_path, out_path) -> None:
    import torch
    from .torch_port import TorchTflite
    module = TorchTflite.load(tflite_path)
    size = module.input_size
    example = torch.zeros(2, size, size, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(out_path), dynamo=False, opset_version=17,
                          input_names=["image"], dynamic_axes={"image": {0: "batch"}})


def _tensorrt_program(module, tflite_path):
    """FP16 TensorRT program for batch 1..MAX_BATCH, built once and cached on disk as a serialized ExportedProgram.
    A cached program is checked on batches 1 and 3 when loaded (a library upgrade the key missed, or a program
    saved without its dynamic batch, is rebuilt). Untested here: no CUDA machine was available (see README)."""
    import torch
    import torch_tensorrt
    size = module.input_size
    module = module.half()                       # explicit typing: FP16 weights and inputs make an FP16 engine
    spec = torch_tensorrt.Input(min_shape=(1, size, size, 3), opt_shape=(4, size, size, 3),
                                max_shape=(MAX_BATCH, size, size, 3), dtype=torch.half)

    def build(path):
        compiled = torch_tensorrt.compile(module, ir="dynamo", inputs=[spec], enabled_precisions={torch.half})
        try:
            torch_tensorrt.save(compiled, str(path), output_format="exported_program", arg_inputs=[spec])
        except TypeError:                        # torch-tensorrt < 2.5 names it ``inputs``
            torch_tensorrt.save(compiled, str(path), output_format="exported_program", inputs=[spec])

    def load(path):
        program = torch.export.load(str(path)).module()
        for batch in (1, 3):
            program(torch.zeros(batch, size, size, 3, device="cuda", dtype=torch.half))
        return program
    program = cached_engine(engine_key(tflite_path, "tensorrt", "fp16", f"1-{MAX_BATCH}x{size}") + ".ep", build, load)
    return lambda images: program(images.half())


def load_model(relative_path: str, backend: str = "litert", num_threads: int = 2) -> BatchedModel:
    """A shipped MediaPipe model on ``backend`` (one of BACKENDS or "auto")."""
    if backend == "auto":
        from .select import auto_backend
        backend = auto_backend()
    if backend not in BACKENDS:
        raise MepoError(f"unknown backend {backend!r}: choose one of auto, {', '.join(BACKENDS)}")
    if backend == "tensorrt" and not tensorrt_available():
        raise MepoError("the tensorrt backend needs an NVIDIA GPU with CUDA and the 'gpu' extra "
                        "(pip install -e .[gpu]); use --backend auto to fall back to the CPU")
    if backend == "litert":
        return LiteRtModel(relative_path, num_threads)
    if backend == "onnx":
        if "onnx" not in available_backends():
            raise MepoError("the onnx backend needs onnx and onnxruntime (pip install -e .)")
        return OnnxModel(relative_path, num_threads, "cuda" if cuda_available() else "cpu")
    device = "cuda" if cuda_available() else "cpu"
    mode = {"torch": "eager", "compile": "compile", "tensorrt": "tensorrt"}[backend]
    return TorchModel(relative_path, mode, device, num_threads)
