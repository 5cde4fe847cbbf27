"""On-disk cache of compiled inference engines (ONNX graphs, TensorRT programs).

A key covers everything that makes an engine stale: the source model's bytes, the backend, precision, the input
shapes and the versions of the libraries that built it. An entry that fails to load (truncated write, library
upgrade that the key missed, disk corruption) is deleted and rebuilt, never raised to the user.
"""
from __future__ import annotations

import hashlib
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Callable, TypeVar

from mepo_core.paths import cache_dir

T = TypeVar("T")
log = logging.getLogger(__name__)


@lru_cache(maxsize=None)
def file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def library_versions() -> str:
    import importlib.metadata as md
    parts = []
    for name in ("torch", "onnxruntime", "onnxruntime-gpu", "torch-tensorrt", "tensorrt"):
        try:
            parts.append(f"{name}={md.version(name)}")
        except md.PackageNotFoundError:
            pass
    return ",".join(parts)


def engine_key(model_path: str | Path, backend: str, precision: str, shapes: str) -> str:
    text = "|".join([file_digest(str(model_path)), backend, precision, shapes, library_versions()])
    return f"{Path(model_path).stem}-{backend}-{precision}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def engines_dir() -> Path:
    path = cache_dir() / "engines"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cached_engine(name: str, build: Callable[[Path], None], load: Callable[[Path], T]) -> T:
    """``build(path)`` writes the engine file; ``load(path)`` opens it. Builds when missing, rebuilds when broken."""
    path = engines_dir() / name
    if path.is_file():
        try:
            return load(path)
        except Exception as error:                       # noqa: BLE001 - any failure means: rebuild it
            log.warning("engine cache entry %s is unusable (%s); rebuilding", path.name, error)
            path.unlink(missing_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.partial")
    build(partial)
    os.replace(partial, path)                            # atomic: a crash mid-build leaves no half file behind
    return load(path)
