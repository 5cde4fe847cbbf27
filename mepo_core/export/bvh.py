"""BVH writer (one file per person) and a small reader used for round trips.

Rotation channels are ``Zrotation Xrotation Yrotation`` (local rotation = Rz Rx Ry, degrees). The root and every
joint whose offset changes over the take (the take's shape varies slightly per frame) also get
``Xposition Yposition Zposition``, which *replace* that joint's OFFSET for the frame (the usual BVH meaning; with
``--fixed-shape`` only the root has them). Leaf joints end in an ``End Site`` at the fingertip/toe keypoint or half
the joint's own offset.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from ..body.skeleton import SMPLX_PARENTS
from .motion import NUM_JOINTS
from .scene import Person

ROT_CHANNELS = "Zrotation Xrotation Yrotation"
POS_CHANNELS = "Xposition Yposition Zposition"


def _children(j: int) -> list[int]:
    return [int(c) for c in np.flatnonzero(SMPLX_PARENTS == j)]


def _dfs_order() -> list[int]:
    order, stack = [], [0]
    while stack:
        j = stack.pop()
        order.append(j)
        stack.extend(reversed(_children(j)))
    return order


def write_bvh(path: str, person: Person, joint_names: list[str], fps: float, progress=None) -> None:
    motion = person.motion
    order = _dfs_order()
    lines = ["HIERARCHY"]

    def emit(j: int, depth: int) -> None:
        pad = "  " * depth
        kind = "ROOT" if j == 0 else "JOINT"
        lines.append(f"{pad}{kind} {joint_names[j]}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET " + " ".join(f"{v:.6f}" for v in motion.rest_offsets[j]))
        channels = (POS_CHANNELS + " " if motion.animated_offsets[j] else "") + ROT_CHANNELS
        lines.append(f"{pad}  CHANNELS {len(channels.split())} {channels}")
        kids = _children(j)
        for c in kids:
            emit(c, depth + 1)
        if not kids:
            end = 0.5 * motion.rest_offsets[j]
            lines.append(f"{pad}  End Site")
            lines.append(pad + "  {")
            lines.append(f"{pad}    OFFSET " + " ".join(f"{v:.6f}" for v in end))
            lines.append(pad + "  }")
        lines.append(pad + "}")

    emit(0, 0)
    lines += ["MOTION", f"Frames: {motion.num_frames}", f"Frame Time: {1.0 / fps:.8f}"]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
        for chunk in motion.chunks():
            n = len(chunk.rotations)
            euler = Rotation.from_matrix(chunk.rotations[:, order].reshape(-1, 3, 3)).as_euler("ZXY", degrees=True)
            euler = euler.reshape(n, NUM_JOINTS, 3)
            columns = []
            for k, j in enumerate(order):
                if motion.animated_offsets[j]:
                    columns.append(chunk.translations[:, j])
                columns.append(euler[:, k])
            np.savetxt(fh, np.concatenate(columns, axis=1), fmt="%.6f")
            if progress:
                progress(n)


def read_bvh(path: str) -> dict:
    """Parse a BVH file -> names, parents, offsets (J, 3), channels (per joint list), motion (F, C), frame_time."""
    with open(path) as fh:
        tokens_lines = fh.read().split("MOTION")
    header, body = tokens_lines[0].split(), tokens_lines[1].strip().splitlines()
    names, parents, offsets, channels, stack = [], [], [], [], []
    i, last = 0, -1
    while i < len(header):
        tok = header[i]
        if tok in ("ROOT", "JOINT"):
            names.append(header[i + 1]); parents.append(stack[-1] if stack else -1); channels.append([])
            offsets.append(None); last = len(names) - 1; i += 2
        elif tok == "End":
            last = None; i += 2
        elif tok == "{":
            stack.append(last); i += 1
        elif tok == "}":
            stack.pop(); i += 1
        elif tok == "OFFSET":
            if last is not None:
                offsets[last] = [float(v) for v in header[i + 1:i + 4]]
            i += 4
        elif tok == "CHANNELS":
            n = int(header[i + 1]); channels[last] = header[i + 2:i + 2 + n]; i += 2 + n
        else:
            i += 1
    frames = int(body[0].split(":")[1])
    frame_time = float(body[1].split(":")[1])
    data = np.loadtxt(body[2:2 + frames], ndmin=2)
    return {"names": names, "parents": parents, "offsets": np.array(offsets), "channels": channels,
            "motion": data, "frame_time": frame_time}


def bvh_world_positions(bvh: dict) -> np.ndarray:
    """Forward kinematics of a parsed BVH -> (F, J, 3) joint positions."""
    motion = bvh["motion"]
    F, J = len(motion), len(bvh["names"])
    rot = np.empty((F, J, 3, 3))
    pos = np.empty((F, J, 3))
    col = 0
    for j in range(J):
        local_t = np.broadcast_to(bvh["offsets"][j], (F, 3)).copy()
        axes, angles = "", []
        for ch in bvh["channels"][j]:
            if ch.endswith("position"):
                local_t[:, "XYZ".index(ch[0])] = motion[:, col]
            else:
                axes += ch[0]
                angles.append(motion[:, col])
            col += 1
        local_r = Rotation.from_euler(axes.upper(), np.stack(angles, 1), degrees=True).as_matrix()
        parent = bvh["parents"][j]
        if parent < 0:
            rot[:, j], pos[:, j] = local_r, local_t
        else:
            rot[:, j] = rot[:, parent] @ local_r
            pos[:, j] = pos[:, parent] + np.einsum("fij,fj->fi", rot[:, parent], local_t)
    return pos
