"""The body model layer: the shipped open model and a stand-in SMPL-X file, both through smplx."""
import importlib.util

import numpy as np
import pytest
import torch
from smplx.joint_names import JOINT_NAMES

from mepo_core.body.model import OPEN_MODEL_DIR, BodyModelError, load_body_model
from mepo_core.body.skeleton import SMPLX_PARENTS

J = {name: i for i, name in enumerate(JOINT_NAMES)}


def body_pose_with(joint: str, rotvec) -> torch.Tensor:
    pose = torch.zeros(1, 63)
    k = J[joint] - 1  # body_pose starts at joint 1
    pose[0, 3 * k:3 * k + 3] = torch.tensor(rotvec, dtype=torch.float32)
    return pose


def rest(model):
    v, j = model.forward({})
    return v[0].detach(), j[0].detach()


def test_open_model_loads_through_smplx(open_model):
    import smplx
    assert isinstance(open_model.smplx, smplx.SMPLX)
    assert open_model.name == "mepo-open-anny"
    v, j = open_model.forward({})
    assert v.shape == (1, open_model.num_verts, 3)
    assert j.shape == (1, len(open_model.joint_names), 3)
    assert open_model.joint_names[:55] == JOINT_NAMES[:55]
    assert open_model.joint_names[55:76] == JOINT_NAMES[55:76]
    assert open_model.faces.shape[1] == 3 and open_model.faces.max() < open_model.num_verts
    np.testing.assert_array_equal(open_model.parents[1:], SMPLX_PARENTS[1:])


def test_tpose_geometry(open_model):
    v, j = rest(open_model)
    height = float(v[:, 1].max() - v[:, 1].min())
    assert 1.4 < height < 2.0
    assert j[J["left_wrist"], 0] > 0.5 and j[J["right_wrist"], 0] < -0.5
    assert abs(float(j[J["left_wrist"], 1] - j[J["left_shoulder"], 1])) < 0.05  # arms horizontal
    assert j[J["head"], 1] > j[J["pelvis"], 1] + 0.4
    assert float(j[J["pelvis"]].norm()) < 1e-3
    lowest = v[v[:, 1].argsort()[:100]]  # feet lowest: the 100 lowest vertices lie below the ankles
    assert (lowest[:, 1] < min(j[J["left_ankle"], 1], j[J["right_ankle"], 1])).all()
    assert j[J["nose"], 2] > j[J["head"], 2]  # faces +z


def test_left_elbow_moves_only_left_arm(open_model):
    v0, j0 = rest(open_model)
    v1, _ = open_model.forward({"body_pose": body_pose_with("left_elbow", [0.0, -1.2, 0.0])})
    moved = (v1[0].detach() - v0).norm(dim=-1) > 1e-4
    assert moved.sum() > 100
    assert (v0[moved, 0] > j0[J["left_shoulder"], 0]).all()  # only beyond the left shoulder


def test_finger_joints_and_fingertips(open_model):
    _, j = rest(open_model)
    for side in ("left", "right"):
        for finger in ("thumb", "index", "middle", "ring", "pinky"):
            chain = [j[J[f"{side}_{finger}{k}"]] for k in (1, 2, 3)]
            tip = j[J[f"{side}_{finger}"]]
            assert float((tip - chain[2]).norm()) < 0.04, (side, finger)
            # tip continues the chain outward from the wrist
            assert (tip - j[J[f"{side}_wrist"]]).norm() > (chain[2] - j[J[f"{side}_wrist"]]).norm()


def test_flat_hand_at_zero_pose(open_model):
    _, j = rest(open_model)
    hand = [J[f"left_{f}{k}"] for f in ("index", "middle", "ring", "pinky") for k in (1, 2, 3)]
    assert float(j[hand, 1].std()) < 0.01  # fingers lie in the palm plane


def test_betas_change_height(open_model):
    heights = []
    for b0 in (-2.0, 0.0, 2.0):
        betas = torch.zeros(1, 10)
        betas[0, 0] = b0
        v, _ = open_model.forward({"betas": betas})
        heights.append(float(v[0, :, 1].max() - v[0, :, 1].min()))
    assert heights[0] < heights[1] - 0.05 < heights[2] - 0.1


def test_rest_joints_match_forward(open_model):
    betas = torch.randn(3, 10, generator=torch.Generator().manual_seed(0))
    _, j = open_model.forward({"betas": betas})
    rest_j = open_model.rest_joints(betas)
    assert rest_j.shape == (3, 55, 3)
    torch.testing.assert_close(rest_j, j[:, :55], atol=1e-4, rtol=0)
    betas.requires_grad_(True)
    open_model.rest_joints(betas).sum().backward()
    assert betas.grad is not None and betas.grad.abs().sum() > 0


def test_expression_moves_only_face(open_model):
    v0, j0 = rest(open_model)
    expression = torch.zeros(1, 10)
    expression[0, :3] = 2.0
    v1, _ = open_model.forward({"expression": expression})
    moved = (v1[0].detach() - v0).norm(dim=-1) > 1e-3
    assert moved.sum() > 20
    assert (v0[moved, 1] > j0[J["neck"], 1]).all()


def test_jaw_pose_opens_mouth(open_model):
    v0, j0 = rest(open_model)
    v1, _ = open_model.forward({"jaw_pose": torch.tensor([[0.3, 0.0, 0.0]])})
    chin = v0[:, 1] < j0[J["jaw"], 1] - 0.05
    chin &= (v0[:, 2] > j0[J["jaw"], 2] + 0.03) & (v0[:, 1] > j0[J["neck"], 1])
    assert chin.sum() > 5
    assert float((v1[0].detach()[chin] - v0[chin]).norm(dim=-1).mean()) > 0.01
    assert float((v1[0, :, 1].detach() - v0[:, 1])[chin].mean()) < 0  # chin goes down


def test_batched_forward_with_transl(open_model):
    params = {"betas": torch.zeros(5, 10), "body_pose": torch.zeros(5, 63),
              "transl": torch.arange(15, dtype=torch.float32).reshape(5, 3)}
    v, j = open_model.forward(params)
    assert v.shape[0] == 5 and j.shape[0] == 5
    torch.testing.assert_close(j[:, 0], params["transl"], atol=1e-3, rtol=0)  # pelvis at the origin
    v1, _ = open_model.forward({"global_orient": np.zeros(3, np.float32)})  # numpy, unbatched
    assert v1.shape[0] == 1


def test_standin_loads_through_same_path(standin_model_dir):
    model = load_body_model(standin_model_dir)
    assert model.name == "smplx"
    v, j = model.forward({"betas": torch.zeros(2, 10)})
    assert v.shape == (2, 10475, 3)
    assert j.shape == (2, 127, 3) and len(model.joint_names) == 127
    assert model.rest_joints(torch.zeros(2, 10)).shape == (2, 55, 3)


def test_standin_found_in_smplx_subdir(standin_model_dir, tmp_path):
    (tmp_path / "smplx").mkdir()
    (tmp_path / "smplx" / "SMPLX_NEUTRAL.npz").symlink_to(standin_model_dir / "SMPLX_NEUTRAL.npz")
    assert load_body_model(tmp_path).name == "smplx"


def test_bad_model_dirs_raise_body_model_error(tmp_path):
    with pytest.raises(BodyModelError, match="not found"):
        load_body_model(tmp_path / "nope")
    with pytest.raises(BodyModelError, match="SMPLX_NEUTRAL"):
        load_body_model(tmp_path)
    np.savez(tmp_path / "SMPLX_NEUTRAL.npz", v_template=np.zeros((3, 3)))
    with pytest.raises(BodyModelError, match="cannot load"):
        load_body_model(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("anny") is None, reason="anny not installed")
def test_builder_reproduces_shipped_file(tmp_path):
    from mepo_core.body.anny_builder import build_open_smplx
    built = np.load(build_open_smplx(tmp_path))
    shipped = np.load(OPEN_MODEL_DIR / "SMPLX_NEUTRAL.npz")
    assert set(built.files) == set(shipped.files)
    for key in shipped.files:
        a, b = built[key], shipped[key]
        assert a.shape == b.shape, key
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, atol=1e-4, err_msg=key)
        else:
            np.testing.assert_array_equal(a, b, err_msg=key)
