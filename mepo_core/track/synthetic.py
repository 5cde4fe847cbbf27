"""Synthetic multi-person scenes with known truth, for tests and ``mepo bench tracking``.

Bodies are MediaPipe-layout 33-point skeletons (metres, camera space) either from a procedural walking figure or
from BVH mocap clips; they are projected through a pinhole camera and every landmark's visibility comes from a
capsule z-buffer (a hidden landmark gets low visibility, as MediaPipe reports), with noise.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from ..records import Camera

# 33-point skeleton segments used for the silhouette (MediaPipe indices) and their radii in metres
SEGMENTS = [(11, 12, 0.09), (11, 23, 0.12), (12, 24, 0.12), (23, 24, 0.12), (11, 13, 0.05), (13, 15, 0.045),
            (12, 14, 0.05), (14, 16, 0.045), (23, 25, 0.08), (25, 27, 0.06), (24, 26, 0.08), (26, 28, 0.06),
            (27, 31, 0.04), (28, 32, 0.04), (0, 0, 0.11)]

_BVH_TO_33 = {0: "Head", 11: "UpperArm_L", 12: "UpperArm_R", 13: "LowerArm_L", 14: "LowerArm_R", 15: "Hand_L",
              16: "Hand_R", 23: "UpperLeg_L", 24: "UpperLeg_R", 25: "LowerLeg_L", 26: "LowerLeg_R", 27: "Foot_L",
              28: "Foot_R", 31: "Toes_L", 32: "Toes_R"}


def standing_figure(phase: float = 0.0) -> np.ndarray:
    """(33, 3) metres, hip centre at the origin, y down, facing the camera (-z); a gentle walking swing."""
    s = 0.25 * np.sin(phase)
    p = np.zeros((33, 3))
    p[0] = [0, -0.62, -0.08]
    p[1:11] = p[0] + np.array([0, -0.03, 0])
    p[11], p[12] = [0.19, -0.5, 0], [-0.19, -0.5, 0]
    p[13], p[14] = [0.24, -0.22, 0.1 * s], [-0.24, -0.22, -0.1 * s]
    p[15], p[16] = [0.26, 0.03, 0.25 * s], [-0.26, 0.03, -0.25 * s]
    p[17:23:2], p[18:23:2] = p[15] + [0, 0.06, 0], p[16] + [0, 0.06, 0]
    p[23], p[24] = [0.1, 0, 0], [-0.1, 0, 0]
    p[25], p[26] = [0.11, 0.42, -0.3 * s], [-0.11, 0.42, 0.3 * s]
    p[27], p[28] = [0.11, 0.85, -0.45 * s], [-0.11, 0.85, 0.45 * s]
    p[29], p[30] = p[27] + [0, 0.04, 0.05], p[28] + [0, 0.04, 0.05]
    p[31], p[32] = p[27] + [0, 0.05, -0.15], p[28] + [0, 0.05, -0.15]
    return p


def load_bvh(path: str) -> np.ndarray:
    """World joint positions of a BVH clip: (frames, joints, 3) in the file's units; ``load_bvh.names`` order."""
    text = open(path).read()
    head, motion = text.split("MOTION")
    names, parents, offsets, channels, stack = [], [], [], [], []
    for tok in re.finditer(r"(ROOT|JOINT|End Site)[ \t]*(\w*)|OFFSET\s+(\S+)\s+(\S+)\s+(\S+)|CHANNELS\s+(\d+)\s+([^\n]*)|([{}])",
                           head):
        if tok.group(1):
            names.append(tok.group(2) if tok.group(1) != "End Site" else names[stack[-1]] + "_end")
            parents.append(stack[-1] if stack else -1)
            channels.append([])
            pending = len(names) - 1
        elif tok.group(3):
            offsets.append([float(tok.group(k)) for k in (3, 4, 5)])
        elif tok.group(6):
            channels[-1] = tok.group(7).split()
        elif tok.group(8) == "{":
            stack.append(pending)
        elif tok.group(8) == "}":
            stack.pop()
    lines = motion.strip().splitlines()
    data = np.array([[float(v) for v in l.split()] for l in lines[2:] if l.strip()])
    F, J = len(data), len(names)
    G = np.tile(np.eye(4), (F, J, 1, 1))
    col = 0
    for j in range(J):
        local = np.tile(np.eye(4), (F, 1, 1))
        local[:, :3, 3] = offsets[j]
        R = np.tile(np.eye(3), (F, 1, 1))
        for ch in channels[j]:
            v = data[:, col]
            col += 1
            if ch.endswith("position"):
                local[:, "XYZ".index(ch[0]), 3] = v
            else:
                a = np.radians(v)
                c, s = np.cos(a), np.sin(a)
                M = np.tile(np.eye(3), (F, 1, 1))
                i, k = {"X": (1, 2), "Y": (2, 0), "Z": (0, 1)}[ch[0]]
                M[:, i, i], M[:, i, k], M[:, k, i], M[:, k, k] = c, -s, s, c
                R = R @ M
        local[:, :3, :3] = R
        G[:, j] = local if parents[j] < 0 else G[:, parents[j]] @ local
    load_bvh.names = names
    return G[:, :, :3, 3]


def bvh_to_33(joints: np.ndarray, names: list[str], units: float = 0.01) -> np.ndarray:
    """BVH world joints (F, J, 3), Y up -> (F, 33, 3) metres, y down, hip-centred per clip start."""
    idx = {n: i for i, n in enumerate(names)}
    out = np.zeros((len(joints), 33, 3))
    for k, name in _BVH_TO_33.items():
        out[:, k] = joints[:, idx[name]]
    out[:, 1:11] = out[:, :1] + np.array([0, 0.0, 0])
    out[:, 17:23:2], out[:, 18:23:2] = out[:, 15:16], out[:, 16:17]
    out[:, 29], out[:, 30] = out[:, 27], out[:, 28]
    out = out * units * np.array([1, -1, -1])            # Y up -> y down; keep right-handed
    hips = 0.5 * (out[0, 23] + out[0, 24])
    return out - hips


@dataclass
class SceneView:
    body_2d: np.ndarray         # (P, 33, 3) px + visibility
    boxes: np.ndarray           # (P, 4)
    occluded_by: list           # (behind, front) true occlusion pairs
    depth: np.ndarray           # (P,) true pelvis depth
    owner: np.ndarray | None = None   # (H*scale, W*scale) index of the visible person per pixel, -1 = background


def render_scene(bodies: np.ndarray, camera: Camera, rng: np.random.Generator, vis_noise: float = 0.15,
                 scale: float = 0.25) -> SceneView:
    """bodies (P, 33, 3) camera-space metres -> landmarks with z-buffer visibility and the true occlusions."""
    P = len(bodies)
    W, H = int(camera.width * scale), int(camera.height * scale)
    zbuf = np.full((H, W), np.inf)
    owner = np.full((H, W), -1)
    masks = []
    for i in range(P):
        depth = np.full((H, W), np.inf)
        uv = camera.project(bodies[i]) * scale
        for a, b, r in SEGMENTS:
            z = 0.5 * (bodies[i, a, 2] + bodies[i, b, 2])
            rad = max(int(round(r * camera.fx * scale / max(z, 0.1))), 1)
            seg = np.zeros((H, W), np.uint8)
            cv2.line(seg, tuple(np.round(uv[a]).astype(int)), tuple(np.round(uv[b]).astype(int)), 1, 2 * rad)
            depth = np.where(seg > 0, np.minimum(depth, z), depth)
        masks.append(np.isfinite(depth))
        nearer = depth < zbuf
        zbuf, owner = np.where(nearer, depth, zbuf), np.where(nearer, i, owner)
    body_2d = np.zeros((P, 33, 3))
    for i in range(P):
        uv = camera.project(bodies[i])
        px = np.clip(np.round(uv * scale).astype(int), 0, [W - 1, H - 1])
        seen = owner[px[:, 1], px[:, 0]] == i
        vis = np.where(seen, 0.9, 0.1) + rng.normal(0, vis_noise, 33)
        body_2d[i] = np.concatenate([uv + rng.normal(0, 1.5, (33, 2)), np.clip(vis, 0, 1)[:, None]], 1)
    occluded_by = []
    for i in range(P):
        for j in range(P):
            if i != j:
                hidden = (masks[i] & (owner == j)).sum()
                if hidden > 0.02 * max(masks[i].sum(), 1):
                    occluded_by.append((i, j))
    boxes = np.concatenate([body_2d[..., :2].min(1), body_2d[..., :2].max(1)], 1)
    return SceneView(body_2d.astype(np.float32), boxes.astype(np.float32), occluded_by,
                     np.array([0.5 * (b[23, 2] + b[24, 2]) for b in bodies]), owner)


def load_bvh_clips(archive: str, count: int = 40, stride: int = 15, seed: int = 0,
                   cache_dir: str | None = None) -> list[np.ndarray]:
    """``count`` clips as (F, 33, 3) metre skeletons from the shared BVH archive (a .tar.xz, read as a stream:
    every ``stride``-th clip, so contents and styles vary; no clip is picked by name), subsampled to 10 fps."""
    import os
    import tarfile
    import tempfile
    clips = []
    with tarfile.open(archive, "r|xz") as tar, tempfile.TemporaryDirectory() as tmp:
        n = 0
        for member in tar:
            if not member.name.endswith(".bvh"):
                continue
            n += 1
            if (n - 1 - seed) % stride:
                continue
            path = os.path.join(tmp, "clip.bvh")
            with open(path, "wb") as fh:
                fh.write(tar.extractfile(member).read())
            joints = load_bvh(path)
            clips.append(bvh_to_33(joints[::3], load_bvh.names).astype(np.float32))
            if len(clips) >= count:
                break
    return clips
