"""Per-person skeletal motion in an export frame (axes, units, ground), computed in chunks of frames.

Conventions (all writers share them):
  * The skeleton's rest pose has identity joint rotations; a joint's rest translation is its offset from its parent.
    Rest offsets come from the person's median shape (``betas``) through the body model when one is available.
  * A joint's local rotation is smplx's ``R_j`` expressed in the export basis ``A`` (``A R_j A^T``); its local
    translation is the *per-frame* offset ``A o_j(t)``, read from ``joints3d`` (``o_j = Rg_parent^T (p_j - p_parent)``),
    so the exported joints reproduce ``joints3d`` exactly even though the take's shape varies a little per frame.
    Joints whose offset never moves more than ``OFFSET_TOLERANCE`` from the rest offset get no translation keys.
  * World = ``scale * W p_camera + shift``, ``W = A C``: ``C`` turns the OpenCV camera frame (y down, z forward)
    into a Y-up frame (x right, y up, z toward the viewer), ``A`` turns Y-up into Z-up when asked for.
    Unless ``camera_space``, each person is moved vertically so that the lowest foot keypoint of their first
    visible frame is at height 0, and all people are moved together horizontally so that their mean pelvis of that
    frame is at the origin.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from ..body.skeleton import SMPLX_JOINT_NAMES, SMPLX_PARENTS
from ..errors import TakeFormatError
from ..records import SmplxParams

NUM_JOINTS = 55
CHUNK = 2048                      # frames per processing chunk (bounds memory on long takes)
OFFSET_TOLERANCE = 1e-5           # metres: below this a joint's offset counts as constant
FOOT_KEYPOINTS = ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
#: smplx full-pose order of the 55 joints' axis-angle parameters.
POSE_KEYS = ("global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose", "left_hand_pose", "right_hand_pose")
TAKE_KEYS = ("format_version", "body_model", "fps", "person_ids", "valid", "joints3d", "joint_names") + SmplxParams.KEYS

C_YUP = np.diag([1.0, -1.0, -1.0])                                   # OpenCV camera -> Y-up (OpenGL camera)
A_ZUP = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])            # Y-up -> Z-up (y -> z, z -> -y)

_MIXAMO_BODY = {
    "pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1", "spine3": "Spine2", "neck": "Neck", "head": "Head",
    "jaw": "Jaw", "left_eye_smplhf": "LeftEye", "right_eye_smplhf": "RightEye",
}
_MIXAMO_SIDE = {"hip": "UpLeg", "knee": "Leg", "ankle": "Foot", "foot": "ToeBase", "collar": "Shoulder",
                "shoulder": "Arm", "elbow": "ForeArm", "wrist": "Hand"}


def mixamo_name(smplx_name: str) -> str:
    """smplx joint name -> Mixamo bone name (``mixamorig:LeftUpLeg``, ``mixamorig:LeftHandIndex1``, ...)."""
    if smplx_name in _MIXAMO_BODY:
        return "mixamorig:" + _MIXAMO_BODY[smplx_name]
    side, part = smplx_name.split("_", 1)
    side = side.capitalize()
    if part in _MIXAMO_SIDE:
        return f"mixamorig:{side}{_MIXAMO_SIDE[part]}"
    return f"mixamorig:{side}Hand{part[:-1].capitalize()}{part[-1]}"      # index1 -> LeftHandIndex1


@dataclass
class ExportOptions:
    up: str = "y"                  # "y" (Unity, Unreal, glTF) or "z" (Blender)
    units: str = "m"               # "m" or "cm" (FBX and BVH; glTF is metres by definition)
    skeleton_names: str = "smplx"  # "smplx" or "mixamo"
    camera_space: bool = False     # keep camera coordinates (only the axes turned to the up axis)
    skeleton_only: bool = False    # no mesh
    fixed_shape: bool = False      # rest offsets only: rotation-only joints (joints3d then differs by the shape jitter)
    model_dir: str | None = None   # the user's SMPL-X when the take was made with one

    def __post_init__(self):
        if self.up not in ("y", "z") or self.units not in ("m", "cm") or self.skeleton_names not in ("smplx", "mixamo"):
            raise ValueError(f"bad export options: up={self.up} units={self.units} names={self.skeleton_names}")

    @property
    def basis(self) -> np.ndarray:
        """A: Y-up model/export basis -> export basis."""
        return np.eye(3) if self.up == "y" else A_ZUP

    @property
    def world(self) -> np.ndarray:
        """W: OpenCV camera frame -> export frame."""
        return self.basis @ C_YUP

    def joint_names(self) -> list[str]:
        names = list(SMPLX_JOINT_NAMES)
        return [mixamo_name(n) for n in names] if self.skeleton_names == "mixamo" else names


def check_take(take: dict, path: str) -> None:
    """Raise TakeFormatError for takes an exporter cannot use (zero valid frames, wrong shapes)."""
    valid = take["valid"]
    if valid.ndim != 2 or valid.shape[0] == 0 or not valid.any():
        raise TakeFormatError(f"{path} has no valid frames to export")
    T, P = valid.shape
    j3d = take["joints3d"]
    if j3d.shape[:2] != (T, P) or j3d.ndim != 4 or j3d.shape[2] < NUM_JOINTS:
        raise TakeFormatError(f"{path}: joints3d has shape {j3d.shape}, expected ({T}, {P}, >=55, 3)")
    for k in POSE_KEYS:
        if take[k].shape[:2] != (T, P):
            raise TakeFormatError(f"{path}: {k} has shape {take[k].shape}, expected ({T}, {P}, ...)")


def _local_rotvecs(take: dict, p: int, frames: np.ndarray, hand_mean: np.ndarray) -> np.ndarray:
    """(n,) frame indices -> (n, 55, 3) axis-angle of the 55 joints (smplx order), as smplx applies them: the
    body model's mean hand pose (30, 3) is added to the stored finger rotations."""
    parts = [take[k][frames, p].reshape(len(frames), -1, 3) for k in POSE_KEYS]
    rotvecs = np.concatenate(parts, axis=1).astype(np.float64)
    rotvecs[:, 25:55] += hand_mean
    return rotvecs


def _global_rotations(local: np.ndarray) -> np.ndarray:
    """(n, 55, 3, 3) local rotations -> global (camera-frame) rotations."""
    out = np.empty_like(local)
    out[:, 0] = local[:, 0]
    for j in range(1, NUM_JOINTS):
        out[:, j] = out[:, SMPLX_PARENTS[j]] @ local[:, j]
    return out


def _nearest_valid(valid: np.ndarray) -> np.ndarray:
    """(T,) bool -> (T,) index of the nearest earlier valid frame (the first valid one before it)."""
    idx = np.where(valid, np.arange(len(valid)), -1)
    idx = np.maximum.accumulate(idx)
    first = int(np.argmax(valid))
    idx[idx < 0] = first
    return idx


@dataclass
class MotionChunk:
    """Frames [start, stop) of one person, in the export frame and units."""
    start: int
    rotations: np.ndarray      # (n, 55, 3, 3) local rotation matrices (root: world)
    translations: np.ndarray   # (n, 55, 3) local translations (root: world position of the pelvis)
    expression: np.ndarray     # (n, E)


class PersonMotion:
    """One person of a take: rest skeleton and chunked per-frame motion in the export frame."""

    def __init__(self, take: dict, p: int, options: ExportOptions, rest_joints: np.ndarray | None,
                 shift: np.ndarray, hand_mean: np.ndarray | None = None):
        """rest_joints: (55, 3) Y-up model-space rest joints of the median shape, or None (median offsets).
        hand_mean: (30, 3) the body model's mean finger rotations (smplx ``flat_hand_mean=False``); None: zeros
        (a skeleton-only export without the model)."""
        self.take, self.p, self.options = take, p, options
        self.hand_mean = np.zeros((30, 3)) if hand_mean is None else np.asarray(hand_mean, np.float64).reshape(30, 3)
        self.person_id = int(take["person_ids"][p])
        self.name = f"person_{self.person_id}"
        self.valid = take["valid"][:, p].astype(bool)
        self.source = _nearest_valid(self.valid)        # invalid frames hold the nearest earlier pose
        self.num_frames = len(self.valid)
        self.scale = 100.0 if options.units == "cm" else 1.0
        self.shift = shift
        A = options.basis
        frames = np.flatnonzero(self.valid)
        offsets = np.concatenate([self._camera_offsets(frames[i:i + CHUNK]) for i in range(0, len(frames), CHUNK)])
        if rest_joints is None:
            rest_offsets = np.median(offsets, axis=0)
        else:
            rest_offsets = rest_joints - np.vstack([np.zeros(3), rest_joints[SMPLX_PARENTS[1:]]])
        #: joints that need per-frame translation keys (the root always has them).
        self.animated_offsets = np.zeros(NUM_JOINTS, bool)
        self.animated_offsets[0] = True
        if not options.fixed_shape:
            deviation = np.linalg.norm(offsets - rest_offsets, axis=-1).max(axis=0)
            self.animated_offsets[1:] = deviation[1:] > OFFSET_TOLERANCE
        del offsets
        #: (55, 3) rest offsets in the export frame and units; the root's is its rest position.
        self.rest_offsets = self.scale * rest_offsets @ A.T
        self.rest_positions = np.zeros_like(self.rest_offsets)
        for j in range(NUM_JOINTS):
            parent = SMPLX_PARENTS[j]
            self.rest_positions[j] = self.rest_offsets[j] + (self.rest_positions[parent] if parent >= 0 else 0)

    def _camera_offsets(self, frames: np.ndarray) -> np.ndarray:
        """(n,) frames -> (n, 55, 3) local offsets o_j = Rg_parent^T (p_j - p_parent) (Y-up model frame, metres)."""
        rot = Rotation.from_rotvec(_local_rotvecs(self.take, self.p, frames, self.hand_mean).reshape(-1, 3)).as_matrix()
        glob = _global_rotations(rot.reshape(len(frames), NUM_JOINTS, 3, 3))
        joints = self.take["joints3d"][frames, self.p, :NUM_JOINTS].astype(np.float64)
        delta = joints[:, 1:] - joints[:, SMPLX_PARENTS[1:]]
        offsets = np.zeros_like(joints)
        offsets[:, 1:] = np.einsum("nkji,nkj->nki", glob[:, SMPLX_PARENTS[1:]], delta)
        return offsets

    def chunks(self, chunk: int = CHUNK):
        """Yield MotionChunk for frames [0, T) in order."""
        A, W, s = self.options.basis, self.options.world, self.scale
        for start in range(0, self.num_frames, chunk):
            frames = self.source[start:start + chunk]
            n = len(frames)
            local = Rotation.from_rotvec(_local_rotvecs(self.take, self.p, frames, self.hand_mean).reshape(-1, 3)).as_matrix()
            local = local.reshape(n, NUM_JOINTS, 3, 3)
            rotations = A @ local @ A.T
            rotations[:, 0] = W @ local[:, 0] @ A.T
            translations = np.broadcast_to(self.rest_offsets, (n, NUM_JOINTS, 3)).copy()
            if self.animated_offsets[1:].any():
                translations[:, 1:] = s * self._camera_offsets(frames)[:, 1:] @ A.T
            root = self.take["joints3d"][frames, self.p, 0].astype(np.float64)
            translations[:, 0] = s * root @ W.T + self.shift
            yield MotionChunk(start, rotations, translations, self.take["expression"][frames, self.p])


def export_points(take: dict, options: ExportOptions, points: np.ndarray, p: int, shift: np.ndarray) -> np.ndarray:
    """Camera-frame points (..., 3) of person p -> export frame (what the exported joints should equal)."""
    scale = 100.0 if options.units == "cm" else 1.0
    return scale * points @ options.world.T + shift


def person_shifts(take: dict, options: ExportOptions) -> np.ndarray:
    """(P, 3) shift per person in the export frame (units applied): feet on the ground, group centred."""
    T, P = take["valid"].shape
    shifts = np.zeros((P, 3))
    if options.camera_space:
        return shifts
    scale = 100.0 if options.units == "cm" else 1.0
    up = 1 if options.up == "y" else 2
    names = [str(n) for n in take["joint_names"]]
    feet = [names.index(n) for n in FOOT_KEYPOINTS if n in names] or [names.index(n) for n in
                                                                    ("left_ankle", "right_ankle", "left_foot", "right_foot")]
    pelvis = []
    for p in range(P):
        t0 = int(np.argmax(take["valid"][:, p]))
        if not take["valid"][t0, p]:
            continue
        world = scale * take["joints3d"][t0, p].astype(np.float64) @ options.world.T
        shifts[p, up] = -world[feet, up].min()
        pelvis.append(world[0])
    centre = np.mean(pelvis, axis=0)
    centre[up] = 0.0
    return shifts - centre
