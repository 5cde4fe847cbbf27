"""A random but well-formed ``SMPLX_NEUTRAL.npz`` for tests (never a real SMPL-X file).

It has the real file's keys and shapes, so ``smplx.SMPLX`` loads it through the same code path as the
licensed model. It is not a body: vertices are scattered around a random 55-joint SMPL-X tree.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mepo_core.body.skeleton import SMPLX_PARENTS

NUM_JOINTS = 55
#: smplx hard-codes SMPL-X vertex ids up to 9929, so a stand-in needs at least that many vertices.
SMPLX_NUM_VERTS = 10475


def write_standin_smplx(path: str | Path, num_verts: int = SMPLX_NUM_VERTS, seed: int = 0,
                        num_shape_dirs: int = 20) -> Path:
    """Write a stand-in SMPL-X model to ``path`` (a ``.npz`` file, or a directory that gets
    ``SMPLX_NEUTRAL.npz``) and return the file path.

    ``num_shape_dirs`` is 20 (10 betas + 10 expression, as smplx reads small files) or 400 (the real
    file's 300 + 100).
    """
    if num_verts <= 9929:
        raise ValueError(f"num_verts must exceed 9929 (smplx's hard-coded SMPL-X vertex ids), got {num_verts}")
    rng = np.random.default_rng(seed)
    path = Path(path)
    if path.suffix != ".npz":
        path.mkdir(parents=True, exist_ok=True)
        path = path / "SMPLX_NEUTRAL.npz"

    parents = SMPLX_PARENTS
    joints = np.zeros((NUM_JOINTS, 3), np.float32)
    for j in range(1, NUM_JOINTS):
        joints[j] = joints[parents[j]] + rng.normal(0.0, 0.1, 3)

    owner = rng.integers(0, NUM_JOINTS, num_verts)
    v_template = (joints[owner] + rng.normal(0.0, 0.03, (num_verts, 3))).astype(np.float32)

    # Skinning: mostly the owning joint, some of its parent.
    weights = np.zeros((num_verts, NUM_JOINTS), np.float32)
    share = rng.uniform(0.0, 0.5, num_verts).astype(np.float32)
    weights[np.arange(num_verts), np.maximum(parents[owner], 0)] += share
    weights[np.arange(num_verts), owner] += 1.0 - share

    # Each joint regressed as the mean of the vertices it owns (joints owning none: its nearest vertex).
    J_regressor = np.zeros((NUM_JOINTS, num_verts), np.float32)
    for j in range(NUM_JOINTS):
        members = np.flatnonzero(owner == j)
        if len(members) == 0:
            members = [int(np.argmin(np.linalg.norm(v_template - joints[j], axis=1)))]
        J_regressor[j, members] = 1.0 / len(members)

    faces = rng.integers(0, num_verts, (2 * num_verts, 3)).astype(np.uint32)
    eye = np.eye(45, dtype=np.float32)
    num_lmk = 51
    np.savez_compressed(
        path,
        v_template=v_template,
        f=faces,
        J_regressor=J_regressor,
        weights=weights,
        shapedirs=rng.normal(0.0, 0.01, (num_verts, 3, num_shape_dirs)).astype(np.float32),
        posedirs=np.zeros((num_verts, 3, (NUM_JOINTS - 1) * 9), np.float32),
        kintree_table=np.stack([np.where(parents < 0, 2**32 - 1, parents), np.arange(NUM_JOINTS)]).astype(np.int64),
        hands_componentsl=eye, hands_componentsr=eye,
        hands_meanl=rng.normal(0.0, 0.1, 45).astype(np.float32),
        hands_meanr=rng.normal(0.0, 0.1, 45).astype(np.float32),
        lmk_faces_idx=rng.integers(0, len(faces), num_lmk).astype(np.int64),
        lmk_bary_coords=rng.dirichlet(np.ones(3), num_lmk).astype(np.float32),
        dynamic_lmk_faces_idx=rng.integers(0, len(faces), (79, 17)).astype(np.int64),
        dynamic_lmk_bary_coords=rng.dirichlet(np.ones(3), (79, 17)).astype(np.float32),
    )
    return path
