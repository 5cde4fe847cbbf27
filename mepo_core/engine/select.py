"""``--backend auto``: TensorRT on an NVIDIA GPU, else the fastest CPU backend measured once on this machine.

The measurement (the pose landmark model, the pipeline's biggest per-person cost, on a batch of 3 crops) is stored
in the cache keyed by CPU and library versions, so only the first run pays for it (a few seconds).
"""
from __future__ import annotations

import json
import platform
import time
from functools import lru_cache

import numpy as np

from .cache import engines_dir, library_versions

PROBE_MODEL = "pose_landmark/pose_landmark_full.tflite"


def _machine_key() -> str:
    import os
    cpu = platform.processor() or platform.machine()
    return f"{cpu}|{os.cpu_count()}|{library_versions()}"


def measure_cpu_backends(backends=("litert", "onnx", "torch"), batch: int = 3, repeats: int = 5) -> dict[str, float]:
    """Median milliseconds for ``batch`` pose-landmark crops per backend (unavailable ones are left out)."""
    from .backends import available_backends, load_model
    images = np.random.default_rng(0).random((batch, 256, 256, 3), dtype=np.float32)
    times = {}
    available = available_backends()
    for name in backends:
        if name not in available:
            continue
        model = load_model(PROBE_MODEL, name)
        model.run_batch(images)
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.run_batch(images)
            samples.append((time.perf_counter() - start) * 1e3)
        times[name] = float(np.median(samples))
    return times


@lru_cache(maxsize=1)
def auto_backend() -> str:
    from .backends import tensorrt_available
    if tensorrt_available():
        return "tensorrt"
    record = engines_dir() / "cpu_backend.json"
    key = _machine_key()
    try:
        saved = json.loads(record.read_text())
        if saved.get("key") == key and saved.get("backend"):
            return saved["backend"]
    except (OSError, ValueError):
        pass                                          # missing or corrupt: measure again
    times = measure_cpu_backends()
    best = min(times, key=times.get)
    record.write_text(json.dumps({"key": key, "backend": best, "ms": times}, indent=1))
    return best
