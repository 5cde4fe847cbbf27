"""Load an SMPL-X-layout body model (the shipped open model or a user's SMPL-X files) through ``smplx``.

Both go through one code path: ``smplx.SMPLX`` on an ``SMPLX_<GENDER>.npz``/``.pkl``. The open model
(built from Anny, see ``anny_builder``) stores its own keypoint vertex ids in the npz, because
``SMPLX.__init__`` hard-codes SMPL-X's vertex ids.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import smplx
import torch
from smplx.joint_names import JOINT_NAMES
from smplx.vertex_joint_selector import VertexJointSelector

from mepo_core.body.skeleton import VERTEX_KEYPOINT_KEYS
from mepo_core.errors import MepoError
from mepo_core.paths import ASSETS_DIR
from mepo_core.records import SmplxParams

OPEN_MODEL_DIR = ASSETS_DIR / "body" / "mepo_open_smplx"
OPEN_MODEL_NAME = "mepo-open-anny"
#: npz keys under which the open model stores its keypoint vertex ids (smplx ``vertex_ids`` dict).
VERTEX_ID_NAMES_KEY = "mepo_vertex_id_names"
VERTEX_IDS_KEY = "mepo_vertex_ids"


class BodyModelError(MepoError):
    """The body model files are missing or unusable (the message is one line for the user)."""


def find_model_file(model_dir: str | Path, gender: str = "neutral") -> Path:
    """``SMPLX_<GENDER>.npz`` or ``.pkl`` in ``model_dir`` or ``model_dir/smplx``; BodyModelError if none."""
    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise BodyModelError(f"body model directory not found: {model_dir}")
    stem = f"SMPLX_{gender.upper()}"
    candidates = [d / f"{stem}.{ext}" for d in (model_dir, model_dir / "smplx") for ext in ("npz", "pkl")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise BodyModelError(f"no {stem}.npz or {stem}.pkl in {model_dir} or {model_dir / 'smplx'}")


def _read_vertex_ids(model_file: Path) -> dict[str, int] | None:
    """The open model's keypoint vertex ids, or None for a file without them (real SMPL-X)."""
    if model_file.suffix != ".npz":
        return None
    with np.load(model_file, allow_pickle=False) as data:
        if VERTEX_IDS_KEY not in data.files:
            return None
        names, ids = data[VERTEX_ID_NAMES_KEY], data[VERTEX_IDS_KEY]
    return {str(n): int(i) for n, i in zip(names, ids)}


class BodyModel:
    """An ``smplx.SMPLX`` module plus what the pipeline needs around it.

    ``forward`` accepts any batch size (all parameters are passed explicitly, so the module's own
    batch-sized defaults are never used).
    """

    def __init__(self, module: smplx.SMPLX, name: str):
        self.smplx = module
        self.name = name
        self.faces = np.asarray(module.faces, dtype=np.int64)
        self.parents = module.parents.detach().cpu().numpy().astype(np.int64)
        self.num_verts = int(module.v_template.shape[0])
        num_extra = int(module.vertex_joint_selector.extra_joints_idxs.numel())
        num_landmarks = int(module.lmk_faces_idx.numel())
        #: Names of all joints ``forward`` returns: 55 skeleton joints, 21 vertex keypoints, then face landmarks.
        self.joint_names = list(JOINT_NAMES[: 55 + num_extra + num_landmarks])
        # Joints-only kinematics for the fitter: J(betas) = J_template + J_shapedirs . betas.
        with torch.no_grad():
            self._j_template = module.J_regressor @ module.v_template                      # (55, 3)
            self._j_shapedirs = torch.einsum("jv,vcb->jcb", module.J_regressor, module.shapedirs)  # (55, 3, 10)

    @property
    def num_betas(self) -> int:
        return int(self.smplx.shapedirs.shape[-1])

    def _as_batch(self, params: dict) -> dict[str, torch.Tensor]:
        unknown = set(params) - set(SmplxParams.KEYS)
        if unknown:
            raise KeyError(f"unknown SMPL-X parameter(s): {sorted(unknown)}")
        tensors = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in params.items() if v is not None}
        tensors = {k: (v[None] if v.dim() == 1 else v) for k, v in tensors.items()}
        batch = max((v.shape[0] for v in tensors.values()), default=1)
        sizes = dict(SmplxParams.SIZES, betas=self.num_betas, expression=self.smplx.num_expression_coeffs)
        out = {}
        for key in SmplxParams.KEYS:
            value = tensors.get(key)
            if value is None:
                value = torch.zeros(batch, sizes[key])
            elif value.shape[0] != batch:
                value = value.expand(batch, -1)  # a single shared value (e.g. betas) for all
            out[key] = value
        return out

    def forward(self, params: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """SMPL-X forward pass.

        params: SmplxParams keys -> (B, n) tensors/arrays ((n,) means B=1; missing keys are zeros).
        Returns vertices (B, V, 3) and joints (B, J, 3), J = len(self.joint_names), translation applied.
        """
        batch = self._as_batch(params)
        # smplx repeats its landmark barycentrics by the module's construction batch size.
        self.smplx.batch_size = batch["global_orient"].shape[0]
        out = self.smplx(**batch, return_verts=True)
        return out.vertices, out.joints

    __call__ = forward

    def rest_joints(self, betas: torch.Tensor) -> torch.Tensor:
        """(B, num_betas) -> (B, 55, 3) rest (T-pose) joint positions; differentiable in betas."""
        betas = torch.as_tensor(betas, dtype=torch.float32)
        return self._j_template + torch.einsum("jcb,nb->njc", self._j_shapedirs, betas)


def load_body_model(model_dir: str | Path | None = None, gender: str = "neutral") -> BodyModel:
    """The shipped open model (``model_dir=None``) or the SMPL-X model in ``model_dir``.

    Raises BodyModelError with a one-line reason when the files are missing or malformed.
    """
    model_file = find_model_file(OPEN_MODEL_DIR if model_dir is None else model_dir, gender)
    try:
        vertex_ids = _read_vertex_ids(model_file)
        # smplx prints a warning for files with only 10+10 shape/expression directions.
        with contextlib.redirect_stdout(io.StringIO()):
            module = smplx.SMPLX(str(model_file), ext=model_file.suffix[1:], gender=gender,
                                 use_pca=False, flat_hand_mean=False, num_betas=10,
                                 num_expression_coeffs=10, use_face_contour=False)
    except BodyModelError:
        raise
    except Exception as exc:  # smplx raises anything from KeyError to pickle errors on bad files
        raise BodyModelError(f"cannot load SMPL-X model {model_file}: {type(exc).__name__}: {exc}") from exc
    num_verts = module.v_template.shape[0]
    if vertex_ids is not None:
        missing = [k for k in VERTEX_KEYPOINT_KEYS if k not in vertex_ids]
        if missing:
            raise BodyModelError(f"{model_file} lacks keypoint vertex ids for {missing}")
        module.vertex_joint_selector = VertexJointSelector(vertex_ids=vertex_ids)
    selected = module.vertex_joint_selector.extra_joints_idxs
    if selected.numel() and int(selected.max()) >= num_verts:
        raise BodyModelError(f"{model_file} has {num_verts} vertices, too few for its keypoint vertex ids")
    name = OPEN_MODEL_NAME if vertex_ids is not None else "smplx"
    return BodyModel(module, name)
