"""Synthetic multi-person training scenes for the MEPO networks, with exact ground truth.

BVH mocap clips (``../shared/data/mocap``, CC BY-NC: train/eval only, never shipped) are retargeted onto the
SMPL-X-layout body by the project's own twist-swing IK (``estimate.ik.solve_ik``) from the clip's 3D joint
positions; random shapes, finger poses, jaw and expression go on top. 1-5 people stand on one floor at varied
depths in front of a random camera. Occlusion/visibility come from the capsule z-buffer of
``track.synthetic.render_scene`` and the depth-order levels from ``track.depth_order.depth_levels`` (Algorithm 1).

Only signals that the shipped landmark models also produce on real footage are generated as inputs: 2D body
landmarks + confidence (MediaPipe's 33-point layout, reduced to the 21 that map onto SMPL-X joints), metric
hip-centred 3D "world" landmarks, the person ROI, the other people's landmarks inside that ROI, a people
silhouette of the ROI (the landmark model's segmentation mask sees everyone in the crop) and wrist-relative 3D
hand landmarks. The landmark models' real errors are modelled: pixel noise growing under occlusion, dropped
joints, left/right limb swaps, truncation at the image border, scale/depth errors of the 3D landmarks.

Deterministic by seed; train/val split by whole clip (``clip_split``).
"""
from __future__ import annotations

import glob
import hashlib
import math
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from ..estimate.ik import solve_ik
from ..estimate.joint_map import LEFT_HAND_SMPLX, MP_BODY, NUM_OUTPUT_JOINTS, RIGHT_HAND_SMPLX, SMPLX_FROM_BODY
from ..estimate.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..paths import cache_dir
from ..records import Camera
from ..track.depth_order import depth_levels
from ..track.synthetic import bvh_to_33, load_bvh, render_scene

VERSION = 1
ROI_SIZE = 64                      # heatmap / silhouette resolution of the person ROI
KP = SMPLX_FROM_BODY               # the 21 SMPL-X joints that MediaPipe's body landmarks observe (input order)
NUM_KP = len(KP)
MAX_OTHERS = 4
MOCAP_ARCHIVE = Path(__file__).resolve().parents[3] / "shared" / "data" / "mocap" / "bandai_namco_bvh.tar.xz"
# mirror pairs of the 21 input keypoints (left <-> right), used for left/right swap errors
_MP_MIRROR = {23: 24, 25: 26, 27: 28, 11: 12, 13: 14, 15: 16, 2: 5, 7: 8, 29: 30, 31: 32}
_MP_MIRROR.update({v: k for k, v in list(_MP_MIRROR.items())})
MIRROR = np.array([list(MP_BODY).index(_MP_MIRROR.get(int(m), int(m))) for m in MP_BODY])
ARM_KP = [list(MP_BODY).index(m) for m in (13, 15)]     # left elbow, wrist (swap with the right ones)
LEG_KP = [list(MP_BODY).index(m) for m in (25, 27)]


# ----------------------------------------------------------------------------------------------------- clips
def mocap_dir() -> Path:
    return cache_dir() / "mocap"


def list_clips() -> list[str]:
    """Sorted clip paths (unpacks the archive into the cache dir on first use)."""
    files = sorted(glob.glob(str(mocap_dir() / "**" / "*.bvh"), recursive=True))
    if not files and MOCAP_ARCHIVE.is_file():
        import tarfile
        mocap_dir().mkdir(parents=True, exist_ok=True)
        with tarfile.open(MOCAP_ARCHIVE) as tar:
            tar.extractall(mocap_dir())
        files = sorted(glob.glob(str(mocap_dir() / "**" / "*.bvh"), recursive=True))
    return files


def clip_split(names: list[str], val_fraction: float = 0.2) -> dict[str, list[str]]:
    """Fixed split by whole clip: a clip's side depends only on its file name (hash), never on frames."""
    out = {"train": [], "val": []}
    for n in names:
        h = int(hashlib.sha1(os.path.basename(n).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        out["val" if h < val_fraction else "train"].append(n)
    return out


def load_clip_33(path: str, step: int = 8) -> np.ndarray:
    """(F, 33, 3) metres, y down, MediaPipe layout, every ``step``-th frame."""
    joints = load_bvh(path)
    return bvh_to_33(joints[::step], load_bvh.names).astype(np.float32)


def mp33_to_targets(p33: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, 33, 3) BVH-derived points -> (B, 76, 3) SMPL-X-indexed IK targets and (B, 76) confidences.
    BVH clips have one head point and no heels/knuckles: those get zero confidence (IK keeps rest there)."""
    B = len(p33)
    T = np.zeros((B, NUM_OUTPUT_JOINTS, 3), np.float32)
    c = np.zeros((B, NUM_OUTPUT_JOINTS), np.float32)
    T[:, KP] = p33[:, MP_BODY]
    c[:, KP] = 1.0
    c[:, 55:60] = 0.0        # nose, eyes, ears all sit on the BVH head joint
    c[:, [62, 65]] = 0.0     # heels
    return T, c


# ---------------------------------------------------------------------------------------- body geometry
class VertexSubset:
    """Posed positions of a few mesh vertices (same LBS as smplx, only for those vertices)."""

    def __init__(self, fk, ids: np.ndarray):
        body_model = fk.body_model
        m = body_model.smplx
        self.fk = fk
        ids = torch.as_tensor(ids, dtype=torch.long)
        cols = (ids[:, None] * 3 + torch.arange(3)[None]).reshape(-1)
        self.ids = ids
        self.v_template, self.shapedirs, self.exprdirs = m.v_template[ids], m.shapedirs[ids], m.expr_dirs[ids]
        self.posedirs = m.posedirs[:, cols].contiguous()
        self.weights = m.lbs_weights[ids]
        self.j_exprdirs = torch.einsum("jv,vcb->jcb", m.J_regressor, m.expr_dirs)
        self.body_model = body_model

    def __call__(self, rotmats: torch.Tensor, betas: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """rotmats (B, 55, 3, 3), betas (B, 10), expression (B, 10) -> (B, V, 3) without translation."""
        B = rotmats.shape[0]
        J = self.body_model.rest_joints(betas) + torch.einsum("jcb,nb->njc", self.j_exprdirs, expression)
        G, P = self.fk._chain(rotmats, J, 55)
        v = (self.v_template[None] + torch.einsum("vcb,nb->nvc", self.shapedirs, betas)
             + torch.einsum("vcb,nb->nvc", self.exprdirs, expression))
        v = v + ((rotmats[:, 1:] - torch.eye(3)).reshape(B, -1) @ self.posedirs).reshape(B, -1, 3)
        rot = torch.einsum("vk,nkij->nvij", self.weights, G)
        off = torch.einsum("vk,nki->nvi", self.weights, P - (G @ J[..., None])[..., 0])
        return (rot @ v[..., None])[..., 0] + off


def face_vertex_ids(body_model, count: int = 40) -> np.ndarray:
    """The ``count`` vertices that expression moves most (the face branch's synthetic face landmarks)."""
    d = body_model.smplx.expr_dirs.norm(dim=1).sum(-1)
    return torch.argsort(d, descending=True)[:count].numpy()


def body_vertex_ids(body_model, count: int = 400) -> np.ndarray:
    """A fixed spread-out vertex subset for MVE (every n-th vertex)."""
    n = body_model.num_verts
    return np.arange(0, n, max(n // count, 1))[:count]


def to_mp33(j76: np.ndarray) -> np.ndarray:
    """SMPL-X output joints (..., 76, 3) -> MediaPipe 33-point layout (face/hand points from nearby joints)."""
    out = np.zeros(j76.shape[:-2] + (33, 3), j76.dtype)
    out[..., MP_BODY, :] = j76[..., KP, :]
    out[..., [1, 2, 3], :] = j76[..., [57], :]
    out[..., [4, 5, 6], :] = j76[..., [56], :]
    out[..., [9, 10], :] = j76[..., [55], :]
    for mp, sx in ((17, 31), (19, 25), (21, 38), (18, 46), (20, 40), (22, 53)):
        out[..., mp, :] = j76[..., sx, :]
    return out


def rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float32)


def rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float32)


# ------------------------------------------------------------------------------------------- generator
class SceneGenerator:
    """``generate(n_scenes, seed)`` -> dict of per-person arrays (see ``PERSON_KEYS``)."""

    def __init__(self, body_model, clips: list[np.ndarray]):
        from ..estimate.kinematics import SkeletonFK
        self.body = body_model
        self.fk = SkeletonFK(body_model)
        self.face = VertexSubset(self.fk, face_vertex_ids(body_model))
        self.verts = VertexSubset(self.fk, body_vertex_ids(body_model))
        self.clips = clips

    @torch.no_grad()
    def _pose_people(self, rng, P: int):
        """Random people: (P, 55, 3, 3) world-frame rotations, betas, expression, clip frame ids."""
        frames = []
        for _ in range(P):
            c = int(rng.integers(len(self.clips)))
            f = int(rng.integers(len(self.clips[c])))
            pts = self.clips[c][f] - 0.5 * (self.clips[c][f, 23] + self.clips[c][f, 24])
            pts = pts @ rot_y(float(rng.uniform(-math.pi, math.pi))).T
            if rng.random() < 0.5:                                   # mirrored clip: more variety
                pts = pts * np.array([-1, 1, 1], np.float32)
                pts = pts[[0, 4, 5, 6, 1, 2, 3, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15, 18, 17, 20, 19, 22, 21, 24, 23,
                           26, 25, 28, 27, 30, 29, 32, 31]]
            frames.append(pts)
        T, conf = mp33_to_targets(np.stack(frames))
        betas = torch.as_tensor(np.clip(rng.normal(0, 1.0, (P, 10)), -2.5, 2.5), dtype=torch.float32)
        J = self.fk.rest_joints(betas)
        R = solve_ik(J, torch.as_tensor(T), torch.as_tensor(conf))
        aa = matrix_to_axis_angle(R)
        # plausible extras the clips do not have: head, wrists, ankles, fingers (curl per finger), jaw
        for j, s in ((12, 0.15), (15, 0.25), (20, 0.35), (21, 0.35), (7, 0.15), (8, 0.15)):
            aa[:, j] = aa[:, j] + torch.as_tensor(rng.normal(0, s, (P, 3)), dtype=torch.float32)
        for side, base in (("l", 25), ("r", 40)):
            curl = rng.uniform(-0.2, 1.2, (P, 5))
            sign = 1.0 if side == "l" else -1.0
            for f in range(5):
                for k in range(3):
                    j = base + 3 * f + k
                    aa[:, j, 2] = torch.as_tensor(sign * curl[:, f] * (0.5 if f == 4 else 1.0), dtype=torch.float32)
                    aa[:, j] += torch.as_tensor(rng.normal(0, 0.08, (P, 3)), dtype=torch.float32)
        aa[:, 22, 0] = torch.as_tensor(rng.uniform(0, 0.35, P), dtype=torch.float32)     # jaw open
        expr = torch.as_tensor(np.clip(rng.normal(0, 0.8, (P, 10)), -2, 2), dtype=torch.float32)
        return aa, betas, expr

    @torch.no_grad()
    def scene(self, rng: np.random.Generator) -> dict | None:
        P = int(rng.integers(1, 6))
        W, H = 640, 480
        cam = Camera.from_fov(W, H, float(rng.uniform(45, 75)))
        cam_h, pitch = float(rng.uniform(0.9, 1.8)), float(rng.uniform(0.0, 0.25))
        aa, betas, expr = self._pose_people(rng, P)
        Rw = axis_angle_to_matrix(aa)
        joints_w, G = self.fk.forward(Rw, betas)
        # place on the floor (y down: floor at +cam_h) at varied depths, clustered so that people overlap
        Rc = torch.as_tensor(rot_x(pitch))                              # camera pitched down (y down)
        depth = np.sort(rng.uniform(2.2, 8.0, P))[::-1]
        half = math.tan(math.radians(0.5 * 60))
        xs = []
        for i in range(P):
            if xs and rng.random() < 0.6:
                x = xs[int(rng.integers(len(xs)))] * depth[i] / depth[len(xs) - 1] + rng.normal(0, 0.45)
            else:
                x = rng.uniform(-0.8, 0.8) * half * depth[i]
            xs.append(x)
        offset = torch.zeros(P, 3)
        feet = joints_w[..., 1].amax(1)
        offset[:, 0] = torch.as_tensor(xs, dtype=torch.float32)
        offset[:, 1] = cam_h - feet
        offset[:, 2] = torch.as_tensor(depth.copy(), dtype=torch.float32)
        # world (camera position at origin, level) -> camera: x_c = Rc x_w
        aa_c = aa.clone()
        R0c = Rc @ Rw[:, 0]
        aa_c[:, 0] = matrix_to_axis_angle(R0c)
        Rcam = Rw.clone()
        Rcam[:, 0] = R0c
        j_nt = self.fk.exact_joints(Rcam, betas, expr, torch.zeros(P, 3))
        pel_w = joints_w[:, 0] + offset
        transl = (Rc @ pel_w[..., None])[..., 0] - j_nt[:, 0]
        joints = j_nt + transl[:, None]
        face = self.face(Rcam, betas, expr) + transl[:, None]
        verts = self.verts(Rcam, betas, expr) + transl[:, None]
        if (joints[..., 2].amin(1) < 0.5).any():
            return None
        j76 = joints.numpy()
        view = render_scene(to_mp33(j76), cam, rng, vis_noise=0.12)
        levels = depth_levels(P, [(i, j, 1.0) for i, j in view.occluded_by])
        return dict(P=P, cam=cam, aa=aa_c.numpy(), betas=betas.numpy(), expr=expr.numpy(), transl=transl.numpy(),
                    joints=j76, face=face.numpy(), verts=verts.numpy(), view=view, levels=levels)

    def persons(self, sc: dict, rng: np.random.Generator, scene_id: int) -> list[dict]:
        """Per-person network inputs (with landmark-model errors) + ground truth for one scene."""
        cam, view, P = sc["cam"], sc["view"], sc["P"]
        W, H = cam.width, cam.height
        # landmark-like 2D for everyone (also used as the "others" inside each ROI)
        kp_all = []
        for i in range(P):
            kp = view.body_2d[i][MP_BODY].astype(np.float32).copy()          # (21, 3) px + visibility (z-buffer)
            height = max(float(np.ptp(kp[:, 1])), 20.0)
            occl = kp[:, 2] < 0.5
            kp[:, :2] += rng.normal(0, 1, (NUM_KP, 2)) * height * np.where(occl, 0.05, 0.012)[:, None]
            drop = rng.random(NUM_KP) < 0.04
            kp[drop, 2] = 0.0
            if rng.random() < 0.06:                                           # left/right swap of a limb
                idx = ARM_KP if rng.random() < 0.5 else LEG_KP
                kp[idx + list(MIRROR[idx])] = kp[list(MIRROR[idx]) + idx]
            out = (kp[:, 0] < 0) | (kp[:, 0] >= W) | (kp[:, 1] < 0) | (kp[:, 1] >= H)
            kp[out, 2] *= 0.1                                                # truncation
            kp_all.append(kp)
        kp_all = np.stack(kp_all)
        owner = view.owner
        sy, sx = owner.shape[0] / H, owner.shape[1] / W
        res = []
        for i in range(P):
            kp = kp_all[i]
            good = kp[:, 2] > 0.3
            if good.sum() < 4:
                continue
            lo, hi = kp[good, :2].min(0), kp[good, :2].max(0)
            size = 1.25 * float((hi - lo).max()) * rng.uniform(0.92, 1.12)
            centre = 0.5 * (lo + hi) + rng.normal(0, 0.04 * size, 2)
            roi = np.array([centre[0], centre[1], size], np.float32)
            to_roi = lambda uv: (uv - (roi[:2] - roi[2] / 2)) / roi[2]          # -> [0, 1]
            others = np.zeros((MAX_OTHERS, NUM_KP, 3), np.float32)
            o = [k for k in range(P) if k != i]
            for n, k in enumerate(o[:MAX_OTHERS]):
                others[n, :, :2] = to_roi(kp_all[k, :, :2])
                others[n, :, 2] = kp_all[k, :, 2]
            # people silhouette of the ROI (everyone), 64 x 64
            x0, y0 = (roi[0] - roi[2] / 2) * sx, (roi[1] - roi[2] / 2) * sy
            M = np.array([[ROI_SIZE / (roi[2] * sx), 0, -x0 * ROI_SIZE / (roi[2] * sx)],
                          [0, ROI_SIZE / (roi[2] * sy), -y0 * ROI_SIZE / (roi[2] * sy)]], np.float32)
            sil = cv2.warpAffine((owner >= 0).astype(np.uint8) * 255, M, (ROI_SIZE, ROI_SIZE),
                                 flags=cv2.INTER_LINEAR, borderValue=0)
            j = sc["joints"][i]
            pelvis = 0.5 * (j[1] + j[2])
            world = (j[KP] - pelvis) * rng.uniform(0.9, 1.1)                 # MediaPipe world: hip-centred metres
            world += rng.normal(0, 0.025, world.shape) + rng.normal(0, 0.05, (NUM_KP, 1)) * np.array([0, 0, 1])
            hands = np.zeros((2, 21, 4), np.float32)                          # wrist-relative, unit hand length, conf
            for h, m in enumerate((LEFT_HAND_SMPLX, RIGHT_HAND_SMPLX)):
                wrist_vis = kp[list(MP_BODY).index(15 if h == 0 else 16), 2]
                if wrist_vis < 0.3 or rng.random() < 0.15:
                    continue                                                  # hand landmarker found nothing
                pts = j[m] - j[m[0]]
                pts = pts / max(np.linalg.norm(pts[9]), 1e-6)
                hands[h, :, :3] = pts + rng.normal(0, 0.05, pts.shape)
                hands[h, :, 3] = 1.0
            fuv = cam.project(sc["face"][i])
            fl, fh = fuv.min(0), fuv.max(0)
            face = np.zeros((len(fuv), 2), np.float32)
            face_ok = float(min(kp[list(MP_BODY).index(0), 2], 1.0) > 0.3 and (fh - fl).max() > 6)
            if face_ok:
                face = (fuv - 0.5 * (fl + fh)) / max(float((fh - fl).max()), 1e-6)
                face = face + rng.normal(0, 0.02, face.shape)
            res.append(dict(
                scene=scene_id, person=i, npeople=P, kp=np.concatenate([to_roi(kp[:, :2]), kp[:, 2:]], 1),
                kp_px=kp, roi=roi, others=others, sil=sil, world=world.astype(np.float32), hands=hands,
                face_in=face.astype(np.float32), face_ok=np.float32(face_ok),
                cam=np.array([cam.fx, cam.fy, cam.cx, cam.cy, W, H], np.float32),
                gt_aa=sc["aa"][i], gt_betas=sc["betas"][i], gt_expr=sc["expr"][i], gt_transl=sc["transl"][i],
                gt_joints=j, gt_kp=to_roi(cam.project(j[KP])), gt_face=sc["face"][i], gt_verts=sc["verts"][i],
                level=np.float32(sc["levels"][i]), gt_depth=np.float32(pelvis[2])))
        return res

    def generate(self, n_scenes: int, seed: int, progress: bool = False) -> dict:
        rng = np.random.default_rng(seed)
        rows, pairs, sid = [], [], 0
        it = range(n_scenes)
        if progress:
            from tqdm import tqdm
            it = tqdm(it, desc=f"scenes (seed {seed})", unit="scene")
        for _ in it:
            sc = None
            while sc is None:
                sc = self.scene(rng)
            persons = self.persons(sc, rng, sid)
            keep = {p["person"]: n + len(rows) for n, p in enumerate(persons)}
            for b, f in sc["view"].occluded_by:
                if b in keep and f in keep:
                    pairs.append((keep[b], keep[f]))
            rows += persons
            sid += 1
        data = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
        data["occlusion_pairs"] = np.array(pairs, np.int64).reshape(-1, 2)   # (behind row, front row)
        return data


def dataset(split: str, n_scenes: int, seed: int, max_clips: int = 400, progress: bool = True,
            body_model=None) -> dict:
    """Cached synthetic dataset: per-person arrays; clips from the given side of the clip split only."""
    path = cache_dir() / "nets" / f"synth_v{VERSION}_{split}_{n_scenes}_{seed}_{max_clips}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    names = clip_split(list_clips())[split]
    if not names:
        from ..errors import MepoError
        raise MepoError(f"no mocap clips found (unpack {MOCAP_ARCHIVE} or check {mocap_dir()})")
    rng = np.random.default_rng(seed + (0 if split == "train" else 10_000))
    names = [names[k] for k in sorted(rng.choice(len(names), min(max_clips, len(names)), replace=False))]
    clips = []
    it = names
    if progress:
        from tqdm import tqdm
        it = tqdm(names, desc=f"clips ({split})", unit="clip")
    for n in it:
        clips.append(load_clip_33(n))
    if body_model is None:
        from ..body.model import load_body_model
        body_model = load_body_model()
    data = SceneGenerator(body_model, clips).generate(n_scenes, seed, progress)
    data["clip_names"] = np.array([os.path.basename(n) for n in names])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **data)
    os.replace(tmp, path)
    return data
