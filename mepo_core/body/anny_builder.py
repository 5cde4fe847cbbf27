"""Build the open SMPL-X-layout body model (``SMPLX_NEUTRAL.npz``) from the Apache-2.0 Anny model.

Rebuild the shipped file with::

    python -m mepo_core.body.anny_builder --out assets/body/mepo_open_smplx

Recipe (shared/notes/body_model.md): Anny's makehuman rig is posed into SMPL-X's T-pose (Y-up, pelvis
at the origin, arms along +/-X, palms down, fingers straightened), its 163 bones' skinning is merged
onto SMPL-X's 55 joints, a sum-to-one J_regressor is fitted across sampled shapes, and the shape /
expression spaces are PCAs of Anny's phenotypes / ARKit facial actions. Only this module needs
``anny``; loading the result needs ``smplx`` alone.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mepo_core.body.skeleton import SMPLX_JOINT_NAMES, SMPLX_PARENTS, VERTEX_KEYPOINT_KEYS
from mepo_core.paths import cache_dir

NUM_BETAS = 10
NUM_EXPRESSION = 10
NUM_SHAPE_SAMPLES = 160
#: Facial actions left out of the expression space because joints drive them (jaw, eyes) or the
#: model has no tongue joint in SMPL-X (tongue).
EXCLUDED_ACTION_PREFIXES = ("jaw", "eyeLook", "tongue")
#: Anny (x, y, z) -> SMPL-X (x, z, -y): Anny is Z-up facing -Y, SMPL-X is Y-up facing +Z.
ANNY_TO_SMPLX = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]], dtype=torch.float64)
FINGERS = {"thumb": 1, "index": 2, "middle": 3, "ring": 4, "pinky": 5}


def _joint_bones(side: str) -> dict[str, list[str]]:
    """SMPL-X joint name -> the Anny bones merged into it for one side ('L' or 'R'); first = pivot."""
    s = "left" if side == "L" else "right"
    table = {
        f"{s}_hip": [f"upperleg01.{side}", f"upperleg02.{side}"],
        f"{s}_knee": [f"lowerleg01.{side}", f"lowerleg02.{side}"],
        f"{s}_ankle": [f"foot.{side}"],
        f"{s}_foot": [f"toe{t}-{k}.{side}" for t in (3, 1, 2, 4, 5) for k in (1, 2, 3) if not (t == 1 and k == 3)],
        f"{s}_collar": [f"clavicle.{side}", f"shoulder01.{side}"],
        f"{s}_shoulder": [f"upperarm01.{side}", f"upperarm02.{side}"],
        f"{s}_elbow": [f"lowerarm01.{side}", f"lowerarm02.{side}"],
        f"{s}_wrist": [f"wrist.{side}"] + [f"metacarpal{k}.{side}" for k in range(1, 5)],
        f"{s}_eye_smplhf": [f"eye.{side}"],
    }
    for finger, k in FINGERS.items():
        for seg in (1, 2, 3):
            table[f"{s}_{finger}{seg}"] = [f"finger{k}-{seg}.{side}"]
    return table


def joint_bone_table(bone_labels: list[str], bone_parents: list[int]) -> dict[str, list[str]]:
    """All 55 SMPL-X joints -> Anny bones; every Anny bone lands in exactly one joint."""
    table = {"pelvis": ["spine05", "root", "pelvis.L", "pelvis.R"],
             "spine1": ["spine04", "spine03"], "spine2": ["spine02"],
             "spine3": ["spine01", "breast.L", "breast.R"], "neck": ["neck01", "neck02", "neck03"],
             **_joint_bones("L"), **_joint_bones("R")}
    table = {k: [b for b in v if b in bone_labels] for k, v in table.items()}

    def descendants(root: str) -> list[str]:
        idx, out = {bone_labels.index(root)}, []
        for i, p in enumerate(bone_parents):  # parents precede children in Anny's order
            if p in idx:
                idx.add(i)
                out.append(bone_labels[i])
        return out

    taken = {b for v in table.values() for b in v}
    table["jaw"] = ["jaw"] + [b for b in descendants("jaw") if b not in taken]
    taken |= set(table["jaw"])
    table["head"] = ["head"] + [b for b in descendants("head") if b not in taken]
    missing = set(bone_labels) - taken - set(table["head"])
    if missing or set(table) != set(SMPLX_JOINT_NAMES):
        raise RuntimeError(f"bone table incomplete: unmapped bones {sorted(missing)}")
    return table


def _rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., 3) unit vectors -> (..., 3, 3) smallest rotation taking a to b."""
    import roma
    axis = torch.cross(a, b, dim=-1)
    sin = axis.norm(dim=-1, keepdim=True)
    cos = (a * b).sum(-1, keepdim=True)
    angle = torch.atan2(sin, cos)
    return roma.rotvec_to_rotmat(axis / sin.clamp_min(1e-12) * angle)


def _twist_angle(rotation: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    """Twist angle about ``axis`` (swing-twist decomposition) of (..., 3, 3) rotations."""
    import roma
    q = roma.rotmat_to_unitquat(rotation)  # xyzw
    return 2 * torch.atan2((q[..., :3] * axis).sum(-1), q[..., 3])


def _axis_rotation(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    import roma
    return roma.rotvec_to_rotmat(axis * angle[..., None])


class AnnyTPoser:
    """World orientations (Anny 'world-orient' deltas) that put Anny's rest pose into SMPL-X's T-pose."""

    def __init__(self, bone_labels: list[str], bone_parents: list[int], flat_hands: bool = True):
        self.labels = bone_labels
        self.parents = bone_parents
        self.flat_hands = flat_hands
        self.idx = {b: i for i, b in enumerate(bone_labels)}

    def _subtree(self, root: str) -> list[int]:
        idx = {self.idx[root]}
        for i, p in enumerate(self.parents):
            if p in idx:
                idx.add(i)
        return sorted(idx)

    def deltas(self, rest_poses: torch.Tensor) -> torch.Tensor:
        """(B, N, 4, 4) rest bone poses -> (B, N, 4, 4) world-orient deltas of the T-pose."""
        R = rest_poses[..., :3, :3]
        heads = rest_poses[..., :3, 3]
        D = rest_poses.clone()
        rot = torch.eye(3, dtype=R.dtype).expand_as(R).clone()  # world rotation applied to each bone
        for side, sign in (("L", 1.0), ("R", -1.0)):
            target = torch.tensor([sign, 0.0, 0.0], dtype=R.dtype).expand(R.shape[0], 3)

            def bone_dir(name):
                return R[:, self.idx[f"{name}.{side}"], :, 1]  # Blender bones point along local +Y

            for name in ("upperarm01", "upperarm02", "lowerarm01", "lowerarm02"):
                rot[:, self.idx[f"{name}.{side}"]] = _rotation_between(bone_dir(name), target)
            # Hand: wrist -> middle-finger base along the arm, index -> pinky base pointing back (+Y
            # in Anny): palms down, thumbs forward.
            wrist, mid = heads[:, self.idx[f"wrist.{side}"]], heads[:, self.idx[f"finger3-1.{side}"]]
            hand_dir = torch.nn.functional.normalize(mid - wrist, dim=-1)
            swing = _rotation_between(hand_dir, target)
            across = heads[:, self.idx[f"finger5-1.{side}"]] - heads[:, self.idx[f"finger2-1.{side}"]]
            across = (swing @ across[..., None])[..., 0]
            twist = torch.atan2(-across[:, 2] * sign, across[:, 1])  # angle about target to bring across to +Y
            hand = _axis_rotation(target, twist) @ swing
            # Spread the forearm roll over the two lower-arm bones to avoid a candy-wrapper pinch.
            lower2 = rot[:, self.idx[f"lowerarm02.{side}"]]
            roll = _twist_angle(hand @ lower2.transpose(-1, -2), target)
            for name, frac in (("lowerarm01", 1 / 3), ("lowerarm02", 2 / 3)):
                i = self.idx[f"{name}.{side}"]
                rot[:, i] = _axis_rotation(target, roll * frac) @ rot[:, i]
            for i in self._subtree(f"wrist.{side}"):
                rot[:, i] = hand
            if self.flat_hands:
                self._flatten_fingers(rot, R, side, hand)
        return torch.cat([torch.cat([rot @ R, D[..., :3, 3:]], -1), D[..., 3:, :]], -2)

    def _flatten_fingers(self, rot, R, side, hand):
        """Straighten each finger along its first segment (no curl) and lay it in the palm plane,
        keeping its spread (the thumb's rest base points down out of the palm)."""
        up = torch.tensor([0.0, 0.0, 1.0], dtype=R.dtype).expand(R.shape[0], 3)  # palm normal (palms down)
        for k in range(1, 6):
            base_dir = (hand @ R[:, self.idx[f"finger{k}-1.{side}"], :, 1:2])[..., 0]
            base_dir = base_dir - (base_dir * up).sum(-1, keepdim=True) * up
            base_dir = torch.nn.functional.normalize(base_dir, dim=-1)
            for seg in (1, 2, 3):
                i = self.idx[f"finger{k}-{seg}.{side}"]
                current = (hand @ R[:, i, :, 1:2])[..., 0]
                rot[:, i] = _rotation_between(current, base_dir) @ hand


def build_open_smplx(out_dir: str | Path, num_shape_samples: int = NUM_SHAPE_SAMPLES, seed: int = 0,
                     flat_hands: bool = True) -> Path:
    """Build ``out_dir/SMPLX_NEUTRAL.npz`` from Anny and return its path."""
    import anny
    import anny.paths

    t0 = time.perf_counter()
    steps = tqdm(total=7, desc="open SMPL-X from Anny", unit="step")
    anny.paths.set_anny_cache_path(cache_dir() / "anny")
    torch.manual_seed(seed)
    model = anny.Anny(rig="makehuman", topology="anny", facial_actions="all",
                      pose_parameterization="world-orient", skinning_method="lbs")
    labels, parents = list(model.bone_labels), list(model.bone_parents)
    steps.update(); steps.set_postfix_str("Anny loaded")

    # --- Shapes: T-posed meshes over sampled adult phenotypes.
    gen = torch.Generator().manual_seed(seed)
    lo = torch.tensor([0.0, 0.55, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    hi = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    assert list(model.phenotype_labels) == ["gender", "age", "muscle", "weight", "height", "proportions"]
    pheno = lo + (hi - lo) * torch.rand(num_shape_samples, 6, generator=gen, dtype=torch.float64)
    pheno = torch.cat([torch.full((1, 6), 0.5, dtype=torch.float64), pheno])  # sample 0: Anny's default
    poser = AnnyTPoser(labels, parents, flat_hands=flat_hands)
    verts, heads = [], []
    with torch.no_grad():
        for chunk in pheno.split(32):
            coeffs = model._get_phenotype_blendshape_coefficients(
                chunk, torch.zeros(len(chunk), 0, dtype=chunk.dtype),
                torch.zeros(len(chunk), len(model.facial_action_labels), dtype=chunk.dtype))
            rest = model.get_rest_model(coeffs)
            out = model.forward(poser.deltas(rest["rest_bone_poses"]), phenotype_kwargs=chunk,
                                return_bone_ends=True)
            verts.append(out["vertices"]); heads.append(out["bone_heads"])
    verts = torch.cat(verts) @ ANNY_TO_SMPLX.T          # (S, V, 3)
    heads = torch.cat(heads) @ ANNY_TO_SMPLX.T          # (S, N, 3)
    steps.update(); steps.set_postfix_str("shapes posed")

    # --- Joints: the pivot bone's head (the foot: the middle of the toe bases).
    table = joint_bone_table(labels, parents)
    idx = {b: i for i, b in enumerate(labels)}
    joints = torch.stack([heads[:, idx[table[name][0]]] for name in SMPLX_JOINT_NAMES], 1)  # (S, 55, 3)
    for s in ("L", "R"):
        j = SMPLX_JOINT_NAMES.index(("left" if s == "L" else "right") + "_foot")
        joints[:, j] = heads[:, [idx[f"toe{t}-1.{s}"] for t in range(1, 6)]].mean(1)
    pelvis = joints[:, :1].clone()
    verts, joints, heads = verts - pelvis, joints - pelvis, heads - pelvis

    # --- Skinning weights merged onto the 55 joints.
    dense = torch.zeros(len(model.template_vertices), len(labels), dtype=torch.float64)
    dense.scatter_add_(1, model.vertex_bone_indices, model.vertex_bone_weights)
    merge = torch.zeros(len(labels), 55, dtype=torch.float64)
    for j, name in enumerate(SMPLX_JOINT_NAMES):
        for b in table[name]:
            merge[idx[b], j] = 1.0
    weights = dense @ merge
    steps.update(); steps.set_postfix_str("skinning merged")

    # --- Shape space: PCA of the T-posed meshes, unit-variance betas, beta0 = taller.
    flat = verts.reshape(len(verts), -1)
    mean = flat.mean(0)
    _, sing, vt = torch.linalg.svd(flat - mean, full_matrices=False)
    std = sing[:NUM_BETAS] / np.sqrt(len(flat) - 1)
    shape_dirs = (vt[:NUM_BETAS] * std[:, None]).reshape(NUM_BETAS, -1, 3)
    top = verts.mean(0)[:, 1].argmax()
    signs = torch.sign(shape_dirs[:, top, 1] + 1e-12)  # head vertex goes up for +beta
    shape_dirs = shape_dirs * signs[:, None, None]
    v_template = mean.reshape(-1, 3)
    steps.update(); steps.set_postfix_str("shape PCA")

    # --- J_regressor: per joint, sum-to-one least squares over nearby vertices, across all shapes.
    J_regressor = _fit_joint_regressor(verts, joints, v_template, joints.mean(0))
    steps.update(); steps.set_postfix_str("J_regressor")

    # --- Expression space: PCA of the facial actions not driven by joints.
    keep = [i for i, a in enumerate(model.facial_action_labels) if not a.startswith(EXCLUDED_ACTION_PREFIXES)]
    first = model.blendshape_labels.index(f"facial_action:{model.facial_action_labels[0]}")
    actions = model.blendshapes[[first + i for i in keep]] @ ANNY_TO_SMPLX.T   # (K, V, 3)
    _, s_act, vt_act = torch.linalg.svd(actions.reshape(len(keep), -1), full_matrices=False)
    expr_dirs = (vt_act[:NUM_EXPRESSION] * (s_act[:NUM_EXPRESSION] / np.sqrt(len(keep)))[:, None])
    expr_dirs = expr_dirs.reshape(NUM_EXPRESSION, -1, 3)
    biggest = expr_dirs.reshape(NUM_EXPRESSION, -1).abs().argmax(1)
    expr_dirs = expr_dirs * torch.sign(expr_dirs.reshape(NUM_EXPRESSION, -1)[torch.arange(NUM_EXPRESSION), biggest])[:, None, None]
    steps.update(); steps.set_postfix_str("expression PCA")

    # --- Keypoint vertex ids (smplx's VertexJointSelector names).
    vertex_ids = _keypoint_vertex_ids(model, v_template, weights, labels, table, heads.mean(0), idx)

    num_verts = len(v_template)
    faces = model.faces.numpy().astype(np.int64)
    if faces.shape[1] != 3:
        faces = model.get_triangular_faces().numpy()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "SMPLX_NEUTRAL.npz"
    f32 = lambda t: np.ascontiguousarray(t.numpy(), dtype=np.float32)  # noqa: E731
    eye = np.eye(45, dtype=np.float32)
    np.savez_compressed(
        path,
        v_template=f32(v_template),
        f=faces.astype(np.int32),
        J_regressor=f32(J_regressor),
        weights=f32(weights),
        shapedirs=f32(torch.cat([shape_dirs, expr_dirs]).permute(1, 2, 0)),  # (V, 3, 20): betas, expression
        posedirs=np.zeros((num_verts, 3, 54 * 9), np.float32),
        kintree_table=np.stack([np.where(SMPLX_PARENTS < 0, 2**32 - 1, SMPLX_PARENTS), np.arange(55)]).astype(np.int64),
        hands_componentsl=eye, hands_componentsr=eye,
        hands_meanl=np.zeros(45, np.float32), hands_meanr=np.zeros(45, np.float32),
        lmk_faces_idx=np.zeros(0, np.int64), lmk_bary_coords=np.zeros((0, 3), np.float32),
        mepo_vertex_id_names=np.array(VERTEX_KEYPOINT_KEYS),
        mepo_vertex_ids=np.array([vertex_ids[k] for k in VERTEX_KEYPOINT_KEYS], np.int64),
        mepo_info=np.array(
            f"MEPO open body model built from Anny {anny.__version__} (Apache-2.0), makehuman rig, "
            f"topology 'anny', {num_shape_samples} shape samples, seed {seed}, flat_hands={flat_hands}. "
            "SMPL-X layout only: betas and expression are Anny's own PCA spaces (betas from SMPL-X tools "
            "do not transfer); posedirs are zero; no face landmarks."),
    )
    steps.update(); steps.close()
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
    return path


def _fit_joint_regressor(verts: torch.Tensor, joints: torch.Tensor, v_mean: torch.Tensor,
                         j_mean: torch.Tensor, num_near: int = 48, ridge: float = 1e-4) -> torch.Tensor:
    """(S, V, 3) shapes, (S, 55, 3) joints -> (55, V) regressor, each row sums to one and uses the
    ``num_near`` vertices nearest the joint; ridge-regularised towards their mean."""
    J = torch.zeros(joints.shape[1], verts.shape[1], dtype=verts.dtype)
    for j in range(joints.shape[1]):
        near = (v_mean - j_mean[j]).norm(dim=-1).argsort()[:num_near]
        X = verts[:, near].permute(0, 2, 1).reshape(-1, num_near)     # (3S, K)
        y = joints[:, j].reshape(-1)                                   # (3S,)
        # min |Xw - y|^2 + ridge |w - 1/K|^2  s.t. sum w = 1 (KKT system)
        A = X.T @ X + ridge * torch.eye(num_near, dtype=X.dtype)
        b = X.T @ y + ridge / num_near
        kkt = torch.zeros(num_near + 1, num_near + 1, dtype=X.dtype)
        kkt[:num_near, :num_near], kkt[:num_near, -1], kkt[-1, :num_near] = A, 1.0, 1.0
        w = torch.linalg.solve(kkt, torch.cat([b, torch.ones(1, dtype=X.dtype)]))[:num_near]
        J[j, near] = w
    return J


def _keypoint_vertex_ids(model, v_template, weights, labels, table, heads, idx) -> dict[str, int]:
    """Nose/eyes/ears/toes/heels: the template vertex nearest Anny's COCO keypoint; fingertips: the
    vertex furthest along each finger's last bone among the vertices it mostly drives."""
    import anny

    coco = anny.KeypointsRegressor.coco(model)
    W = coco.regression_weights  # (K, V) over Anny's vertices, same order as ours
    points = W @ v_template
    coco_of = {"nose": "nose", "reye": "right_eye", "leye": "left_eye", "rear": "right_ear",
               "lear": "left_ear", "LBigToe": "left_big_toe", "LSmallToe": "left_small_toe",
               "LHeel": "left_heel", "RBigToe": "right_big_toe", "RSmallToe": "right_small_toe",
               "RHeel": "right_heel"}
    ids = {}
    for key, name in coco_of.items():
        p = points[coco.labels.index(name)]
        ids[key] = int((v_template - p).norm(dim=-1).argmin())
    owner = weights.argmax(1)
    for side, s in (("l", "left"), ("r", "right")):
        for finger in FINGERS:
            j = SMPLX_JOINT_NAMES.index(f"{s}_{finger}3")
            members = torch.nonzero(owner == j)[:, 0]
            parent = heads[idx[table[SMPLX_JOINT_NAMES[j - 1]][0]]]
            tip_dir = torch.nn.functional.normalize(heads[idx[table[SMPLX_JOINT_NAMES[j]][0]]] - parent, dim=0)
            ids[side + finger] = int(members[((v_template[members] - parent) @ tip_dir).argmax()])
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(cache_dir() / "body" / "mepo_open_smplx"),
                        help="output directory for SMPLX_NEUTRAL.npz (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=NUM_SHAPE_SAMPLES, help="phenotype samples for the shape PCA")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cupped-hands", action="store_true", help="keep Anny's rest hand instead of flat fingers")
    args = parser.parse_args(argv)
    build_open_smplx(args.out, num_shape_samples=args.samples, seed=args.seed, flat_hands=not args.cupped_hands)


if __name__ == "__main__":
    main()
