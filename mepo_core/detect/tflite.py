"""Locating MediaPipe's shipped .tflite files and running them with LiteRT."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def model_path(relative: str) -> Path:
    """Path of a model shipped in the mediapipe wheel, e.g. ``"pose_detection/pose_detection.tflite"``."""
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the mediapipe package (which ships the .tflite models) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "modules" / relative
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


class TfliteModel:
    """One single-input model; ``run`` returns its outputs ordered by tensor name (Identity, Identity_1, ...)."""

    def __init__(self, relative_path: str, num_threads: int = 2):
        self.path = model_path(relative_path)
        self._interpreter = Interpreter(str(self.path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        detail = self._interpreter.get_input_details()[0]
        self._input_index = detail["index"]
        self.input_size = int(detail["shape"][1])   # square models: (1, S, S, 3)
        outputs = sorted(self._interpreter.get_output_details(), key=lambda d: (len(d["name"]), d["name"]))
        self._output_indices = [d["index"] for d in outputs]

    def run(self, image: np.ndarray) -> list[np.ndarray]:
        """(S, S, 3) float32 -> list of output arrays with the batch axis removed."""
        self._interpreter.set_tensor(self._input_index, image[None].astype(np.float32, copy=False))
        self._interpreter.invoke()
        return [self._interpreter.get_tensor(i)[0] for i in self._output_indices]
