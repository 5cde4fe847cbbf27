"""Composes the stages: detect -> assign IDs -> estimate -> (shape memory). Used unchanged by CLI and app."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from .records import FrameRecord


@dataclass
class StageTimes:
    """Milliseconds spent per stage, accumulated over frames."""
    totals: dict[str, float] = field(default_factory=dict)
    frames: int = 0

    def add(self, name: str, seconds: float) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + 1000.0 * seconds

    def mean_ms(self) -> dict[str, float]:
        return {k: v / max(self.frames, 1) for k, v in self.totals.items()}


class CapturePipeline:
    """One frame in, the same frame out with people, IDs, SMPL-X parameters and joints filled in."""

    def __init__(self, landmarker, estimator, tracker, shape_memory=None):
        self.landmarker, self.estimator, self.tracker, self.shape_memory = landmarker, estimator, tracker, shape_memory
        self.times = StageTimes()

    @classmethod
    def create(cls, model_dir: str | None = None, still_image: bool = False, hands: bool = True, face: bool = True,
               refine_iterations: int = 2, with_vertices: bool = False, num_threads: int = 2, max_missing: int = 30):
        from .body.model import load_body_model
        from .detect.landmarker import WholeBodyLandmarker
        from .estimate.estimator import SmplxEstimator
        from .track.ids import IdTracker, ShapeMemory
        body = load_body_model(model_dir)
        landmarker = WholeBodyLandmarker(hands=hands, face=face, num_threads=num_threads, still_image=still_image)
        estimator = SmplxEstimator(body, refine_iterations=refine_iterations, with_vertices=with_vertices)
        return cls(landmarker, estimator, IdTracker(max_missing=max_missing), ShapeMemory())

    @property
    def body_model(self):
        return self.estimator.body_model

    def reset(self) -> None:
        self.landmarker.reset()
        self.tracker.reset()

    def process(self, frame: FrameRecord) -> FrameRecord:
        t0 = time.perf_counter()
        self.landmarker.process(frame)
        t1 = time.perf_counter()
        self.tracker.update(frame)
        hints = self.shape_memory.hints() if self.shape_memory else None
        self.estimator.estimate(frame, betas_hint=hints)
        if self.shape_memory:
            self.shape_memory.update(frame)
        t2 = time.perf_counter()
        self.times.add("detect+landmarks", t1 - t0)
        self.times.add("track+estimate", t2 - t1)
        self.times.frames += 1
        return frame
