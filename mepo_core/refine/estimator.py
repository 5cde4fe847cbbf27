"""``SkeletonEstimator`` (``mepo --estimator skeleton``): the IK paper's first stage on real footage.

Per person: learned 3D skeleton f^P (root-relative joints + absolute pelvis) and twist/shape f^TS from the body
landmarks, then twist-swing IK (``refine.skeleton.initial_estimate``). IK has no evidence for the hands and face
here, so the fitting estimator (IK only, no LM steps) runs first for them: fingers, jaw, eyes and expression are
its, and each wrist keeps the fit's hand orientation in camera space (re-expressed under the new forearm).
``--refine-iters`` does not apply: there is no LM refinement after the learned skeleton (the paper's refiner,
``--refiner on``, is the step that follows it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..estimate.estimator import SmplxEstimator
from ..estimate.ik import L_ELBOW, L_WRIST, R_ELBOW, R_WRIST
from ..estimate.rotations import matrix_to_axis_angle
from ..records import FrameRecord
from . import skeleton as S
from .core import frame_inputs


class SkeletonEstimator(SmplxEstimator):
    """Learned skeleton + IK for the body, the fitting estimator's IK for hands and face."""

    def __init__(self, body_model, weights: str | Path | None = None, with_vertices: bool = False,
                 face_fit: bool = True):
        super().__init__(body_model, refine_iterations=0, with_vertices=with_vertices, face_fit=face_fit)
        path = Path(weights or S.shipped_weights())
        if not path.is_file():
            from ..errors import MepoError
            raise MepoError(f"skeleton weights not found: {path} (train with `python -m mepo_core.refine.skeleton`)")
        self.skel, self.ts = S.load(path)

    @torch.no_grad()
    def estimate(self, frame: FrameRecord, betas_hint: dict[int, np.ndarray] | None = None) -> FrameRecord:
        # the fit's own body and mesh are replaced below: skip its vertices
        with_vertices, self.with_vertices = self.with_vertices, False
        try:
            super().estimate(frame, betas_hint)
        finally:
            self.with_vertices = with_vertices
        people = [p for p in frame.people if p.params is not None and p.landmarks is not None]
        if not people:
            return frame
        x = frame_inputs(people, frame.camera)
        rot_fit = self._rotmats(x["params"])
        hint = torch.full((len(people), 10), float("nan"))            # NaN rows: f^TS predicts the shape
        for i, p in enumerate(people):
            if betas_hint and p.track_id in betas_hint:
                hint[i] = torch.as_tensor(betas_hint[p.track_id])
        R, betas, transl = S.initial_estimate(self.fk, self.skel, self.ts, x["kp21"], x["world21"], x["box"], x["cam"],
                                              rot_fit, betas=hint)
        G_fit, G_new = S.global_rotations(rot_fit), S.global_rotations(R)
        for wrist, elbow in ((L_WRIST, L_ELBOW), (R_WRIST, R_ELBOW)):
            R[:, wrist] = G_new[elbow].transpose(-1, -2) @ G_fit[wrist]
        rv = matrix_to_axis_angle(R[:, :22]).numpy().astype(np.float32)
        params = []
        for i, p in enumerate(people):
            sp = p.params
            sp.global_orient, sp.body_pose = rv[i, 0], rv[i, 1:22].reshape(-1)
            sp.betas = betas[i].numpy().astype(np.float32)
            sp.transl = transl[i].numpy().astype(np.float32)
            params.append(sp)
        kp2d = torch.as_tensor(np.stack([p.keypoints2d for p in people]))       # only its confidence is used
        self._finish(people, params, kp2d, frame.camera)
        return frame
