"""A reduced body mesh for live display: a subset of the model's vertices plus faces over them, posed by linear blend
skinning of that subset only (like ``SkeletonFK.exact_joints`` does for the 21 keypoint vertices).

The subset comes from quadric edge-collapse decimation of the rest mesh (``fast-simplification``): every original
vertex is collapsed into one output vertex; each output vertex is represented by the original vertex of its cluster
nearest to it, so a posed display vertex is *exactly* the full mesh's vertex with that id (no approximation, only
fewer of them). Without the package, vertex clustering on a grid (split by the dominant skinning joint, so legs or
fingers that touch at rest are not fused) gives a cruder subset.
"""
from __future__ import annotations

import weakref

import numpy as np
import torch

DEFAULT_FACES = 5000            # about 2,500 vertices: the silhouette at 640 px matches the full mesh's within a pixel


class DisplayMesh:
    """``vertices(params)`` -> (B, V', 3) posed display vertices; ``faces`` (F', 3) index them; ``vertex_ids`` (V',)
    are the full-mesh vertices they are."""

    def __init__(self, body_model, target_faces: int = DEFAULT_FACES):
        from mepo_core.estimate.kinematics import SkeletonFK, SubsetSkinning
        self.body_model = body_model
        m = body_model.smplx
        rest = m.v_template.detach().numpy().astype(np.float64)
        faces = np.asarray(body_model.faces, np.int64)
        weights = m.lbs_weights.detach().numpy()
        self.vertex_ids, self.faces, self.method = decimate(rest, faces, weights, target_faces)
        self._skinning = SubsetSkinning(body_model, self.vertex_ids)
        self._fk = SkeletonFK(body_model)

    @property
    def num_vertices(self) -> int:
        return len(self.vertex_ids)

    @torch.no_grad()
    def vertices(self, params: dict) -> np.ndarray:
        """params: SmplxParams keys -> (B, n) arrays -> (B, V', 3) float32 vertices, translation applied."""
        from mepo_core.estimate.kinematics import NUM_SMPLX_JOINTS
        p = {k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in params.items()}
        rotmats = self._fk.local_rotmats(p)
        betas, expression = p["betas"], p["expression"]
        J = self._fk.expression_rest_joints(betas, expression)
        G, P = self._fk._chain(rotmats, J, NUM_SMPLX_JOINTS)
        verts = self._skinning(rotmats, G, P, J, betas, expression) + p["transl"][:, None]
        return verts.numpy()


_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def display_mesh(body_model, target_faces: int = DEFAULT_FACES) -> DisplayMesh:
    """The body model's display mesh, built once (tens of milliseconds) and kept while the model lives."""
    try:
        per_model = _CACHE.setdefault(body_model, {})
    except TypeError:                       # not weak-referenceable: no caching
        return DisplayMesh(body_model, target_faces)
    if target_faces not in per_model:
        per_model[target_faces] = DisplayMesh(body_model, target_faces)
    return per_model[target_faces]


def decimate(rest: np.ndarray, faces: np.ndarray, weights: np.ndarray | None = None,
             target_faces: int = DEFAULT_FACES) -> tuple[np.ndarray, np.ndarray, str]:
    """(vertex ids (V',), faces (F', 3) indexing them, method) of a reduced version of the mesh (rest, faces)."""
    try:
        import fast_simplification
    except ImportError:
        fast_simplification = None
    if fast_simplification is not None:
        points, _, collapses = fast_simplification.simplify(rest, faces, target_count=int(target_faces),
                                                            return_collapses=True)
        points, new_faces, mapping = fast_simplification.replay_simplification(rest, faces, collapses)
        cluster = mapping
        method = "quadric"
    else:
        cluster, points = _grid_clusters(rest, faces, weights, target_faces)
        new_faces = cluster[faces]
        method = "grid"
    ids = _representatives(rest, cluster, points)
    new_faces = np.asarray(new_faces, np.int64)
    keep = ((new_faces[:, 0] != new_faces[:, 1]) & (new_faces[:, 1] != new_faces[:, 2])
            & (new_faces[:, 0] != new_faces[:, 2]))
    new_faces = np.unique(new_faces[keep], axis=0)
    used = np.unique(new_faces)                 # drop output vertices no face uses
    remap = np.full(len(points), -1, np.int64)
    remap[used] = np.arange(len(used))
    return ids[used].astype(np.int64), remap[new_faces], method


def _representatives(rest: np.ndarray, cluster: np.ndarray, points: np.ndarray) -> np.ndarray:
    """For each output vertex, the original vertex of its cluster nearest to the output position."""
    d = np.linalg.norm(rest - points[cluster], axis=1)
    order = np.lexsort((d, cluster))               # by cluster, nearest first
    first = np.ones(len(order), bool)
    first[1:] = cluster[order][1:] != cluster[order][:-1]
    ids = np.zeros(len(points), np.int64)
    ids[cluster[order][first]] = order[first]
    return ids


def _grid_clusters(rest, faces, weights, target_faces):
    """Vertex clustering: cells of a grid, split by dominant skinning joint. (cluster per vertex, cluster centres)."""
    extent = rest.max(0) - rest.min(0)
    cell = float(np.sqrt(extent[0] * extent[1] * 2.0 / max(target_faces, 1)))   # a body's surface ~ 2 x front area
    key = np.floor((rest - rest.min(0)) / cell).astype(np.int64)
    part = weights.argmax(1) if weights is not None else np.zeros(len(rest), np.int64)
    _, cluster = np.unique(np.column_stack([key, part]), axis=0, return_inverse=True)
    cluster = cluster.reshape(-1)
    n = cluster.max() + 1
    centres = np.stack([np.bincount(cluster, rest[:, i], n) for i in range(3)], 1) / np.bincount(cluster, None, n)[:, None]
    return cluster, centres
