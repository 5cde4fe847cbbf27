"""FBX through Blender's ``bpy``, run in its own environment (``.venv-bpy``, see packaging/setup_bpy.sh): this
process computes bone rest matrices and pose keys, hands them over in a temp NPZ, and ``blender_fbx.py`` builds
one armature (object named ``person_<ID>``) + skinned mesh with expression shape keys per person and writes FBX.
The armature data is in the export's axes and units (``--up``, ``--units``); Blender's scene shows it upright (a
Y-up armature object is turned to Z-up, which the writer's Y-up axis conversion cancels, so root nodes get identity
transforms) and at real size (a cm scene has unit scale 0.01).

Units (FBX stores a ``UnitScaleFactor``: centimetres per file unit, honoured by Blender, Unity and, with
"Convert Scene Unit", Unreal): ``--units m`` writes numbers in metres with UnitScaleFactor 100, ``--units cm``
numbers in centimetres with UnitScaleFactor 1 (Unreal's native unit: right size even without unit conversion).
Either way a body is its real size wherever the importer honours the unit.

Bone rest orientations point along the bone (+Y towards the child, as Blender draws bones) but tilted by
``BONE_TILT``: Blender's FBX importer *connects* a child bone whose head lies on its parent's tail (tail = head +
Y * mean child distance) and a connected bone ignores its location keys, which would drop the per-frame offsets
(the take's per-frame shape) of single-child bones whose +Y hits the child within float precision (seen on a skinned
FBX, whose rest pose is the bind pose: 1-9 cm joint errors at hands and feet).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..body.skeleton import SMPLX_PARENTS
from ..errors import MepoError
from ..paths import ASSETS_DIR
from .motion import NUM_JOINTS, ExportOptions

BLENDER_SCRIPT = Path(__file__).with_name("blender_fbx.py")
SETUP_HINT = "run packaging/setup_bpy.sh (or set MEPO_BPY_PYTHON to a python with bpy 5.0)"
_BONE_TARGET = {0: 3, 9: 12}          # pelvis points at spine1, spine3 at the neck; others at their children
BONE_TILT = 0.01                      # rad between a bone's +Y and its child (see the module doc)


def bpy_python() -> str:
    """The python of Blender's environment; MepoError with the setup hint when it is missing."""
    env = os.environ.get("MEPO_BPY_PYTHON")
    candidate = Path(env) if env else ASSETS_DIR.parent / ".venv-bpy" / "bin" / "python"
    if not candidate.is_file():
        raise MepoError(f"FBX export needs Blender's bpy in its own environment ({candidate} not found): {SETUP_HINT}")
    return str(candidate)


def run_blender(args: list[str], timeout: float | None = None) -> None:
    proc = subprocess.run([bpy_python(), str(BLENDER_SCRIPT), *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise MepoError(f"Blender failed ({proc.returncode}): {tail[0]}")


def _align_y(d: np.ndarray) -> np.ndarray:
    """Smallest rotation taking +Y to the unit vector d."""
    y = np.array([0.0, 1.0, 0.0])
    v, c = np.cross(y, d), float(y @ d)
    if c < -0.999999:
        return np.diag([1.0, -1.0, -1.0])
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


def _bones(rest_positions: np.ndarray, rest_offsets: np.ndarray, unit: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Bone orientations (55, 3, 3) (Y along the bone) and lengths (55,) from the rest skeleton (unit: scene units
    per metre)."""
    orient, lengths = np.empty((NUM_JOINTS, 3, 3)), np.empty(NUM_JOINTS)
    for j in range(NUM_JOINTS):
        kids = np.flatnonzero(SMPLX_PARENTS == j)
        if j in _BONE_TARGET:
            d = rest_positions[_BONE_TARGET[j]] - rest_positions[j]
        elif len(kids):
            d = rest_positions[kids].mean(axis=0) - rest_positions[j]
        else:
            d = 0.5 * rest_offsets[j]
        length = max(float(np.linalg.norm(d)), 0.005 * unit)
        c, s = np.cos(BONE_TILT), np.sin(BONE_TILT)
        tilt = np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])     # about the bone's X: +Y leaves the child's line
        orient[j], lengths[j] = _align_y(d / max(np.linalg.norm(d), 1e-9)) @ tilt, length
    return orient, lengths


def write_fbx(path: str, take: dict, people: list, options: ExportOptions, progress=None) -> None:
    """``people``: ``build_people(take, options)``, in the file's own axes and units (see the module doc)."""
    names = options.joint_names()
    data: dict[str, np.ndarray] = {"fps": np.array(float(take["fps"])), "up": np.array(options.up),
                                   "units": np.array(options.units),
                                   "num_frames": np.array(take["valid"].shape[0]),
                                   "people": np.array([p.motion.name for p in people])}
    for person in people:
        m = person.motion
        orient, lengths = _bones(m.rest_positions, m.rest_offsets, m.scale)
        parent_heads = np.vstack([np.zeros(3), m.rest_positions[SMPLX_PARENTS[1:]]])
        locs, quats = [], []
        for chunk in m.chunks():
            # pose-bone basis = inv(B_j) T(h_parent) L_j O_j, B_j = [O_j, h_j] the bone's rest matrix
            rot = np.einsum("jba,njbc,jcd->njad", orient, chunk.rotations, orient)
            loc = np.einsum("jba,njb->nja", orient, parent_heads + chunk.translations - m.rest_positions)
            q = Rotation.from_matrix(rot.reshape(-1, 3, 3)).as_quat().reshape(-1, NUM_JOINTS, 4)
            locs.append(loc.astype(np.float32))
            quats.append(q[..., [3, 0, 1, 2]].astype(np.float32))
            if progress:
                progress(len(chunk.rotations) // 2)
        pre = f"{m.name}/"
        data.update({pre + "joint_names": np.array(names), pre + "heads": m.rest_positions, pre + "orient": orient,
                     pre + "lengths": lengths, pre + "parents": SMPLX_PARENTS, pre + "loc": np.concatenate(locs),
                     pre + "quat": np.concatenate(quats)})
        if person.mesh is not None:
            mesh = person.mesh
            data.update({pre + "verts": mesh.vertices, pre + "faces": mesh.faces.astype(np.int64),
                         pre + "skin_joints": mesh.joints, pre + "skin_weights": mesh.weights,
                         pre + "expr_dirs": mesh.expression, pre + "expr": take["expression"][m.source, m.p]})
    with tempfile.TemporaryDirectory(prefix="mepo_fbx_") as tmp:
        scene = os.path.join(tmp, "scene.npz")
        np.savez(scene, **data)
        del data
        run_blender(["export", scene, path])
    if progress:
        progress(sum(p.motion.num_frames - p.motion.num_frames // 2 for p in people))


def read_fbx(path: str, render_png: str | None = None) -> dict:
    """Re-import ``path`` in Blender: per armature bone names and world joint positions per frame (Z-up, metres)."""
    with tempfile.TemporaryDirectory(prefix="mepo_fbx_") as tmp:
        out = os.path.join(tmp, "joints.npz")
        run_blender(["import", path, out] + ([render_png] if render_png else []))
        with np.load(out) as z:
            return {k: z[k] for k in z.files}


def read_bvh_in_blender(path: str, units: str = "m", up: str = "y") -> dict:
    """Import a BVH with Blender's own importer (scale 0.01 for a cm file, the file's up axis): bone names and
    world joint positions per frame (Blender's Z-up, metres)."""
    with tempfile.TemporaryDirectory(prefix="mepo_bvh_") as tmp:
        out = os.path.join(tmp, "joints.npz")
        run_blender(["import-bvh", path, out, "0.01" if units == "cm" else "1.0", up])
        with np.load(out) as z:
            return {k: z[k] for k in z.files}
