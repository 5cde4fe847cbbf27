"""``MepoEstimator``: the learned MEPO networks as a drop-in for ``SmplxEstimator`` (``mepo --estimator mepo``).

The network inputs are built from the landmark models' outputs exactly as ``synth.SceneGenerator`` builds them
from posed bodies: the 21 SMPL-X-mapped body landmarks (2D + confidence) in a square ROI around them, the other
people's landmarks inside that ROI, a people silhouette, the hip-centred metric world landmarks and the
wrist-relative 3D hand landmarks. The silhouette is drawn as capsules around every person's 2D landmarks (the
landmark model's segmentation is off by default), which only approximates the z-buffer silhouettes of training.
Face: ``MepoNet``'s own face branch reads model vertices that exist only in synthetic scenes; on real footage the
face branch of ``nets/face.py`` (``assets/nets/mepo_face.pt``) maps the face mesh (``face_3d``) to expression and
jaw, through the same normalisation as its synthetic training. Expression is taken relative to the person's own
neutral as in the fitting estimator (``NeutralExpression``); eyes come from the iris cue. Without those weights
(or a model without a face correspondence) jaw comes from the lip-gap cue and expression stays 0.
Translation: closed-form least squares of the predicted joints on the 2D landmarks (as the fitter does).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from ..estimate.estimator import JAW_MAX, JAW_OPEN_GAIN, SmplxEstimator
from ..estimate.fit import solve_translation
from ..estimate.joint_map import MP_BODY, NUM_OUTPUT_JOINTS
from ..estimate.rotations import matrix_to_axis_angle
from ..estimate.targets import face_cues
from ..records import FrameRecord, SmplxParams
from .losses import full_rotmats
from .synth import KP, MAX_OTHERS, NUM_KP, ROI_SIZE

# 2D capsules for the silhouette: pairs of input keypoint indices (order of MP_BODY) and radius in metres
_MP_SEGS = [(11, 12, 0.09), (11, 23, 0.12), (12, 24, 0.12), (23, 24, 0.12), (11, 13, 0.05), (13, 15, 0.045),
            (12, 14, 0.05), (14, 16, 0.045), (23, 25, 0.08), (25, 27, 0.06), (24, 26, 0.08), (26, 28, 0.06),
            (27, 31, 0.04), (28, 32, 0.04), (0, 0, 0.11)]
_IDX = {int(m): n for n, m in enumerate(MP_BODY)}
SEGS = [(_IDX[a], _IDX[b], r) for a, b, r in _MP_SEGS]


def default_weights() -> Path:
    from ..paths import ASSETS_DIR
    return ASSETS_DIR / "nets" / "mepo.pt"


def silhouette(kps: list[np.ndarray], metres_px: list[float], roi: np.ndarray) -> np.ndarray:
    """Capsules around every person's 2D keypoints (px), drawn into the ROI at 64 x 64 -> uint8 0/255."""
    img = np.zeros((ROI_SIZE, ROI_SIZE), np.uint8)
    s = ROI_SIZE / roi[2]
    o = roi[:2] - roi[2] / 2
    for kp, mpx in zip(kps, metres_px):
        uv = (kp[:, :2] - o) * s
        for a, b, r in SEGS:
            if min(kp[a, 2], kp[b, 2]) < 0.2:
                continue
            th = max(int(round(2 * r * mpx * s)), 1)
            pa, pb = tuple(np.round(uv[a]).astype(int)), tuple(np.round(uv[b]).astype(int))
            if max(abs(v) for v in pa + pb) > 10_000:
                continue
            cv2.line(img, pa, pb, 255, th)
    return img


def roi_of(kp: np.ndarray) -> np.ndarray | None:
    good = kp[:, 2] > 0.3
    if good.sum() < 4:
        return None
    lo, hi = kp[good, :2].min(0), kp[good, :2].max(0)
    return np.array([*(0.5 * (lo + hi)), 1.25 * float((hi - lo).max())], np.float32)


def network_inputs(people_kp: list[np.ndarray], worlds: list[np.ndarray], hands: list[np.ndarray]) -> dict | None:
    """Per-person input tensors (the same layout as the synthetic dataset) for all people of a frame.
    people_kp: (21, 3) px + conf each; worlds: (21, 3) metres; hands: (2, 21, 4)."""
    rows = []
    mpx = []
    for kp, w in zip(people_kp, worlds):
        torso_px = np.linalg.norm(kp[_IDX[11], :2] + kp[_IDX[12], :2] - kp[_IDX[23], :2] - kp[_IDX[24], :2]) / 2
        torso_m = np.linalg.norm(w[_IDX[11]] + w[_IDX[12]] - w[_IDX[23]] - w[_IDX[24]]) / 2
        mpx.append(float(torso_px / max(torso_m, 0.1)))
    keep = []
    for i, kp in enumerate(people_kp):
        roi = roi_of(kp)
        if roi is None:
            continue
        to_roi = lambda uv: (uv - (roi[:2] - roi[2] / 2)) / roi[2]
        others = np.zeros((MAX_OTHERS, NUM_KP, 3), np.float32)
        order = sorted((k for k in range(len(people_kp)) if k != i),
                       key=lambda k: np.linalg.norm(np.nanmean(people_kp[k][:, :2], 0) - roi[:2]))
        for n, k in enumerate(order[:MAX_OTHERS]):
            others[n, :, :2] = to_roi(people_kp[k][:, :2])
            others[n, :, 2] = people_kp[k][:, 2]
        rows.append(dict(kp=np.concatenate([to_roi(kp[:, :2]), kp[:, 2:]], 1), others=others,
                         sil=silhouette(people_kp, mpx, roi), world=worlds[i], hands=hands[i],
                         face_in=np.zeros((40, 2), np.float32), face_ok=np.float32(0)))
        keep.append(i)
    if not rows:
        return None
    t = {k: torch.as_tensor(np.stack([r[k] for r in rows]), dtype=torch.float32) for k in rows[0]}
    t["sil"] = t["sil"] / 255.0
    t["index"] = keep
    return t


class MepoEstimator(SmplxEstimator):
    """Learned body/hand branches (+ optional LM refinement from the network's pose)."""

    def __init__(self, body_model, weights: str | Path | None = None, refine_iterations: int = 0,
                 with_vertices: bool = False):
        super().__init__(body_model, refine_iterations=max(refine_iterations, 1), with_vertices=with_vertices)
        from ..errors import MepoError
        from ..train.mepo import load_net
        path = Path(weights) if weights else default_weights()
        if not path.is_file():
            raise MepoError(f"MEPO network weights not found: {path}")
        self.net = load_net(path)
        self.refine_iterations = refine_iterations
        self.face_net = self.face_inputs = None
        from .face import FaceInputs, face_weights, load_face
        if self.face_fitter is not None and face_weights().is_file():
            self.face_inputs = FaceInputs(body_model, self.face_fitter)
            self.face_net = load_face(face_weights())

    @torch.no_grad()
    def _faces(self, people, cam) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """person index -> (raw expression (10,), jaw axis-angle (3,)) from the face branch, for people with a face mesh."""
        if self.face_net is None:
            return {}
        rows = [i for i, p in enumerate(people) if p.landmarks.face_3d is not None]
        if not rows:
            return {}
        x = self.face_inputs.face_input(np.stack([people[i].landmarks.face_3d for i in rows]), cam)
        expr, jaw = self.face_net(x)
        return {i: (expr[r].numpy(), jaw[r].numpy()) for r, i in enumerate(rows)}

    @torch.no_grad()
    def _net_inputs(self, people):
        kps, worlds, hands = [], [], []
        for p in people:
            lm = p.landmarks
            kps.append(lm.body_2d[MP_BODY].astype(np.float32))
            worlds.append(lm.body_world[MP_BODY].astype(np.float32))
            h = np.zeros((2, 21, 4), np.float32)
            for k, pts in enumerate((lm.left_hand_3d, lm.right_hand_3d)):
                if pts is None:
                    continue
                rel = pts - pts[0]
                n = np.linalg.norm(rel[9])
                if n > 1e-6:
                    h[k, :, :3] = rel / n
                    h[k, :, 3] = 1.0
            hands.append(h)
        return network_inputs(kps, worlds, hands)

    def estimate(self, frame: FrameRecord, betas_hint: dict[int, np.ndarray] | None = None) -> FrameRecord:
        people = [p for p in frame.people if p.landmarks is not None]
        if not people:
            return frame
        inputs = self._net_inputs(people)
        if inputs is None:
            return frame
        people = [people[i] for i in inputs.pop("index")]
        with torch.no_grad():
            out = self.net(inputs)
        R = full_rotmats(out)
        betas = out["betas"].clone()
        if betas_hint:
            for i, p in enumerate(people):
                if p.track_id in betas_hint:
                    betas[i] = torch.as_tensor(betas_hint[p.track_id])
        cam = frame.camera
        kp2d = torch.zeros(len(people), NUM_OUTPUT_JOINTS, 3)
        kp2d[:, KP] = torch.as_tensor(np.stack([p.landmarks.body_2d[MP_BODY] for p in people]))
        with torch.no_grad():
            joints0, _ = self.fk.forward(R, betas)
            transl = solve_translation(joints0, kp2d, cam)
        if self.refine_iterations > 0:
            from ..estimate.targets import build_targets
            targets = [build_targets(p.landmarks, self.rest_hand_length) for p in people]
            T = torch.as_tensor(np.stack([t.points3d for t in targets]))
            conf3 = torch.as_tensor(np.stack([t.conf3d for t in targets]))
            kp_t = torch.as_tensor(np.stack([t.points2d for t in targets]))
            scale2d = torch.as_tensor([max(p.box[3] - p.box[1], p.box[2] - p.box[0], 1.0) for p in people],
                                      dtype=torch.float32)
            rotvec, betas, transl = self.refiner(R, betas, transl, T, conf3, kp_t, cam, scale2d)
            rotvec = rotvec.detach()
            betas, transl = betas.detach(), transl.detach()
        else:
            rotvec = matrix_to_axis_angle(R)
        levels = out["level"].numpy()
        faces = self._faces(people, cam)
        params = []
        for i, p in enumerate(people):
            sp = SmplxParams.zeros()
            rv = rotvec[i].numpy().astype(np.float32)
            sp.global_orient, sp.body_pose, sp.jaw_pose = rv[0], rv[1:22].reshape(-1), rv[22]
            sp.left_hand_pose = rv[25:40].reshape(-1) - self.hand_mean["left"]
            sp.right_hand_pose = rv[40:55].reshape(-1) - self.hand_mean["right"]
            sp.betas = betas[i].numpy().astype(np.float32)
            sp.transl = transl[i].numpy().astype(np.float32)
            if p.landmarks.face_2d is not None:
                jaw_open, gaze = face_cues(p.landmarks.face_2d)
                sp.jaw_pose = np.array([min(max(jaw_open - 0.02, 0.0) * JAW_OPEN_GAIN, JAW_MAX), 0, 0], np.float32)
                if i in faces:
                    expr, jaw = faces[i]
                    sp.expression = self.expression_neutral.relative(p.track_id, expr)
                    sp.jaw_pose = np.array([np.clip(jaw[0], 0.0, JAW_MAX), 0, 0], np.float32)
                sp.leye_pose = np.array([gaze[0, 1], gaze[0, 0], 0], np.float32)
                sp.reye_pose = np.array([gaze[1, 1], gaze[1, 0], 0], np.float32)
            params.append(sp)
        self._finish(people, params, kp2d, cam)
        if self.net.variant == "henet_depth":          # only that variant's level head is trained (Eq. 5)
            for i, person in enumerate(people):
                person.depth_level = int(round(float(levels[i])))
        return frame
