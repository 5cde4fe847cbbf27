"""What every exporter writes: per person a PersonMotion and (unless skeleton-only) a skinned rest mesh."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import MepoError
from ..io.npz import load_take
from ..estimate.kinematics import hand_means
from .motion import NUM_JOINTS, TAKE_KEYS, ExportOptions, PersonMotion, check_take, person_shifts

MAX_INFLUENCES = 8   # glTF JOINTS_0/1; the SMPL-X-layout models use up to 7 per vertex


@dataclass
class PersonMesh:
    """Rest mesh of one person in the export frame and units (median shape, zero expression)."""
    vertices: np.ndarray        # (V, 3) float32
    faces: np.ndarray           # (F, 3) uint32
    joints: np.ndarray          # (V, 8) uint8 joint indices, by decreasing weight
    weights: np.ndarray         # (V, 8) float32, rows sum to 1
    expression: np.ndarray      # (E, V, 3) float32 vertex offsets per unit expression coefficient


@dataclass
class Person:
    motion: PersonMotion
    mesh: PersonMesh | None


def load_export_take(path: str) -> dict:
    """The take arrays exporters need (big landmark arrays stay on disk); TakeFormatError when unusable."""
    take = load_take(path, keys=TAKE_KEYS)
    check_take(take, path)
    return take


def _body_model(take: dict, options: ExportOptions):
    from ..body.model import OPEN_MODEL_NAME, load_body_model
    name = str(take["body_model"])
    if options.model_dir:
        return load_body_model(options.model_dir)
    if name == OPEN_MODEL_NAME:
        return load_body_model()
    if options.skeleton_only:
        return None
    raise MepoError(f"this take was made with body model '{name}': give --model-dir with its SMPLX_NEUTRAL file "
                    "(or --skeleton-only)")


def _skin_weights(lbs_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-lbs_weights, axis=1)[:, :MAX_INFLUENCES]
    weights = np.take_along_axis(lbs_weights, order, axis=1).clip(0, None)
    weights /= weights.sum(axis=1, keepdims=True)
    order[weights == 0] = 0                     # unused slots point at joint 0 with weight 0
    return order.astype(np.uint8), weights.astype(np.float32)


def build_people(take: dict, options: ExportOptions) -> list[Person]:
    body = _body_model(take, options)
    hand_mean = None
    if body is not None:
        means = hand_means(body)
        hand_mean = np.concatenate([means["left"], means["right"]]).reshape(30, 3)
    shifts = person_shifts(take, options)
    people = []
    scale = 100.0 if options.units == "cm" else 1.0
    A = options.basis
    for p in range(take["valid"].shape[1]):
        valid = take["valid"][:, p].astype(bool)
        if not valid.any():
            continue
        mesh, rest_joints = None, None
        if body is not None:
            betas = np.median(take["betas"][valid, p], axis=0).astype(np.float32)
            model = body.smplx
            with torch.no_grad():
                betas_t = torch.as_tensor(betas)[None, :model.shapedirs.shape[-1]]
                verts = model.v_template + torch.einsum("vcb,nb->nvc", model.shapedirs, betas_t)[0]
                rest_joints = (model.J_regressor @ verts).numpy().astype(np.float64)[:NUM_JOINTS]
            if not options.skeleton_only:
                joints, weights = _skin_weights(model.lbs_weights.numpy())
                expr = model.expr_dirs.numpy().transpose(2, 0, 1)           # (E, V, 3)
                mesh = PersonMesh((scale * verts.numpy() @ A.T).astype(np.float32),
                                  body.faces.astype(np.uint32), joints, weights,
                                  (scale * expr @ A.T).astype(np.float32))
        people.append(Person(PersonMotion(take, p, options, rest_joints, shifts[p], hand_mean), mesh))
    return people
