"""Composes the stages: (cut check) -> detect -> assign IDs -> estimate -> motion (shape per ID, depth order,
smoothing, feet). Used unchanged by CLI and app."""
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
    """One frame in, the same frame out with people, IDs, SMPL-X parameters and joints filled in.

    ``process(frame)`` for causal smoothing (``off``/``live``: the app and cameras); ``feed(frame)`` returns the
    frames that are final (offline presets hold ``motion.window`` frames back) and ``flush()`` the rest."""

    def __init__(self, landmarker, estimator, tracker, motion=None, refiner=None):
        self.landmarker, self.estimator, self.tracker, self.motion = landmarker, estimator, tracker, motion
        self.refiner = refiner          # refine.core.Refiner (relation-aware, after the estimator) or None
        self.times = StageTimes()

    @classmethod
    def create(cls, model_dir: str | None = None, still_image: bool = False, hands: bool = True, face: bool = True,
               refine_iterations: int = 2, with_vertices: bool = False, num_threads: int = 2,
               max_missing_s: float = 2.0, smooth: str = "off", estimator: str = "fit", weights: str | None = None,
               refiner: bool = False, refiner_weights: str | None = None, backend: str = "litert"):
        from .body.model import load_body_model
        from .detect.landmarker import WholeBodyLandmarker
        from .estimate.estimator import SmplxEstimator
        from .track.ids import IdTracker
        from .track.motion import MotionStage
        body = load_body_model(model_dir)
        landmarker = WholeBodyLandmarker(hands=hands, face=face, num_threads=num_threads, still_image=still_image,
                                         backend=backend)
        if estimator == "mepo":              # learned MEPO networks (mepo_core/nets); refine_iterations=0: pure network
            from .nets.estimator import MepoEstimator
            estimator = MepoEstimator(body, weights=weights, refine_iterations=refine_iterations,
                                      with_vertices=with_vertices)
        elif estimator == "skeleton":        # learned 3D skeleton + twist/shape + IK (mepo_core/refine/estimator.py)
            from .refine.estimator import SkeletonEstimator
            estimator = SkeletonEstimator(body, weights=weights, with_vertices=with_vertices)
        else:
            estimator = SmplxEstimator(body, refine_iterations=refine_iterations, with_vertices=with_vertices)
        tracker = IdTracker(max_missing_s=max_missing_s, detect_cuts=not still_image)
        ref = None
        if refiner:                          # relation-aware refiner (mepo_core/refine) after either estimator
            from .refine.core import Refiner
            ref = Refiner(estimator, refiner_weights)
        return cls(landmarker, estimator, tracker, MotionStage(estimator, smooth=smooth), ref)

    @property
    def body_model(self):
        return self.estimator.body_model

    def reset(self) -> None:
        self.landmarker.reset()
        self.tracker.reset()
        if self.motion:
            self.motion.reset()

    def process(self, frame: FrameRecord) -> FrameRecord:
        if self.motion and self.motion.offline:
            raise ValueError("offline smoothing holds frames back: use feed()/flush(), or a causal preset")
        self.feed(frame)
        return frame

    def feed(self, frame: FrameRecord) -> list[FrameRecord]:
        """Process one frame; returns the frames that are final now (offline smoothing holds some back)."""
        return self.finish(frame, self.landmarks(frame))

    def landmarks(self, frame: FrameRecord) -> bool:
        """Stage 1: shot-cut test and landmarks. Depends only on earlier frames' landmarks, so it may run one frame
        ahead of ``finish`` in another thread (``staged.run_staged``). Returns whether this frame starts a shot."""
        t0 = time.perf_counter()
        cut = self.tracker.is_cut(frame)
        if cut:
            self.landmarker.reset()                 # ROIs from the previous shot mean nothing now
        self.landmarker.process(frame)
        self.times.add("detect+landmarks", time.perf_counter() - t0)
        return cut

    def finish(self, frame: FrameRecord, cut: bool) -> list[FrameRecord]:
        """Stage 2, in frame order: identities, body model estimate, refiner, smoothing."""
        t1 = time.perf_counter()
        if cut:
            self.tracker.close_for_cut(frame)
        self.tracker.update(frame)
        hints = self.motion.hints() if self.motion else None
        self.estimator.estimate(frame, betas_hint=hints)
        if self.refiner is not None:
            self.refiner.refine(frame)
        t2 = time.perf_counter()
        ready = [frame]
        if self.motion:
            self.motion.forget(self.tracker.closed)
            self.tracker.closed.clear()
            ready = self.motion.push(frame)
        t3 = time.perf_counter()
        self.times.add("track+estimate", t2 - t1)
        self.times.add("motion", t3 - t2)
        self.times.frames += 1
        return ready

    def flush(self) -> list[FrameRecord]:
        return self.motion.flush() if self.motion else []
