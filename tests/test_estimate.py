"""Estimation: twist-swing IK, fast kinematics vs smplx, and a closed loop from synthetic landmarks."""
import numpy as np
import pytest
import torch

from mepo_core.estimate.estimator import SmplxEstimator
from mepo_core.estimate.fit import project, solve_translation
from mepo_core.estimate.ik import solve_ik
from mepo_core.estimate.joint_map import MP_BODY, SMPLX_FROM_BODY
from mepo_core.estimate.kinematics import SkeletonFK
from mepo_core.estimate.rotations import axis_angle_to_matrix
from mepo_core.records import Camera, FrameRecord, Landmarks, Person, SmplxParams

SIMPLE_SPINE = [3, 6, 9, 12, 13, 14, 15]  # spine, neck, collars, head: not observable from MediaPipe's body points


def random_pose(batch: int, seed: int = 0, scale: float = 0.35) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rv = torch.zeros(batch, 55, 3)
    rv[:, 0] = torch.tensor([np.pi, 0, 0]) + 0.2 * torch.randn(batch, 3, generator=g)  # upright, facing the camera
    rv[:, 1:22] = scale * torch.randn(batch, 21, 3, generator=g)
    rv[:, 25:55] = 0.2 * torch.randn(batch, 30, 3, generator=g)
    rv[:, SIMPLE_SPINE] = 0
    return rv


@pytest.fixture(scope="module")
def fk(open_model):
    return SkeletonFK(open_model)


def test_fast_kinematics_match_smplx(open_model, fk):
    rv = random_pose(3)
    betas = 0.5 * torch.randn(3, 10, generator=torch.Generator().manual_seed(1))
    expression = 0.5 * torch.randn(3, 10, generator=torch.Generator().manual_seed(2))
    transl = torch.tensor([[0.1, 0.2, 3.0]]).expand(3, 3)
    params = {"global_orient": rv[:, 0], "body_pose": rv[:, 1:22].reshape(3, -1), "jaw_pose": rv[:, 22],
              "leye_pose": rv[:, 23], "reye_pose": rv[:, 24], "betas": betas, "expression": expression,
              "left_hand_pose": rv[:, 25:40].reshape(3, -1), "right_hand_pose": rv[:, 40:55].reshape(3, -1),
              "transl": transl}
    _, joints = open_model.forward(params)
    exact = fk.exact_joints(axis_angle_to_matrix(rv), betas, expression, transl)
    assert (exact - joints[:, :76]).norm(dim=-1).amax() < 5e-4          # metres (float32 round-off)
    rigid, _ = fk.forward(axis_angle_to_matrix(rv), betas, transl)   # fast path ignores expression's effect on J
    assert (rigid[:, :22] - joints[:, :22]).norm(dim=-1).amax() < 5e-4


def test_twist_swing_ik_recovers_joint_positions(fk):
    rv = random_pose(6, seed=3)
    betas = torch.zeros(6, 10)
    target, _ = fk.forward(axis_angle_to_matrix(rv), betas)
    R = solve_ik(fk.rest_joints(betas), target, torch.ones(6, 76))
    solved, _ = fk.forward(R, betas)
    err = (solved - solved[:, :1] - (target - target[:, :1])).norm(dim=-1)
    assert err[:, :55].mean() < 0.015          # 15 mm mean over the skeleton
    limbs = [4, 5, 7, 8, 18, 19, 20, 21]       # knees, ankles, elbows, wrists
    assert err[:, limbs].amax() < 0.02
    # and the solution differs from doing nothing
    rest, _ = fk.forward(torch.eye(3).expand(6, 55, 3, 3), betas)
    assert (rest - rest[:, :1] - (target - target[:, :1])).norm(dim=-1).mean() > 0.1


def test_translation_closed_form_is_exact_without_noise():
    cam = Camera.from_fov(640, 480, 60)
    g = torch.Generator().manual_seed(0)
    joints = 0.5 * torch.randn(2, 20, 3, generator=g)
    true_t = torch.tensor([[0.3, -0.2, 4.0], [-1.0, 0.5, 7.5]])
    kp = project(joints + true_t[:, None], cam)
    kp = torch.cat([kp, torch.ones(2, 20, 1)], -1)
    assert torch.allclose(solve_translation(joints, kp, cam), true_t, atol=1e-3)


def synthetic_person(open_model, fk, cam: Camera, rv: torch.Tensor, transl: torch.Tensor) -> Person:
    """Landmarks a perfect MediaPipe would report for a posed open-model body."""
    joints, _ = fk.forward(axis_angle_to_matrix(rv[None]), torch.zeros(1, 10), transl[None])
    joints = joints[0].numpy()
    body_2d = np.zeros((33, 3), np.float32)
    body_world = np.zeros((33, 3), np.float32)
    uv = cam.project(joints)
    hips = 0.5 * (joints[1] + joints[2])
    body_2d[MP_BODY, :2] = uv[SMPLX_FROM_BODY]
    body_2d[MP_BODY, 2] = 1.0
    body_world[MP_BODY] = joints[SMPLX_FROM_BODY] - hips
    # MediaPipe's index/pinky points near the knuckles.
    for mp_i, smplx_i in ((19, 25), (17, 31), (20, 40), (18, 46)):
        body_2d[mp_i, :2], body_2d[mp_i, 2] = uv[smplx_i], 1.0
        body_world[mp_i] = joints[smplx_i] - hips
    box = np.concatenate([uv[:76].min(0), uv[:76].max(0)]).astype(np.float32)
    return Person(box=box, landmarks=Landmarks(body_2d=body_2d, body_world=body_world))


def test_estimator_closed_loop_recovers_pose_and_depth(open_model, fk):
    cam = Camera.from_fov(640, 480, 60)
    poses = random_pose(2, seed=7, scale=0.25)
    transls = [torch.tensor([-0.6, 0.1, 4.0]), torch.tensor([0.8, 0.2, 6.0])]
    frame = FrameRecord(0, 0.0, np.zeros((480, 640, 3), np.uint8), cam,
                        [synthetic_person(open_model, fk, cam, poses[i], transls[i]) for i in range(2)])
    for i, p in enumerate(frame.people):
        p.track_id = i
    SmplxEstimator(open_model).estimate(frame)
    for i, person in enumerate(frame.people):
        assert isinstance(person.params, SmplxParams)
        assert person.params.body_pose.shape == (63,) and person.params.left_hand_pose.shape == (45,)
        assert abs(person.params.transl[2] - transls[i][2].item()) < 0.05 * transls[i][2].item()
        truth, _ = fk.forward(axis_angle_to_matrix(poses[i][None]), torch.zeros(1, 10), transls[i][None])
        err = np.linalg.norm(person.joints3d[:22] - truth[0, :22].numpy(), axis=-1)
        assert err.mean() < 0.06, err
        # reprojection of the fitted joints lands on the 2D landmarks
        kp_err = np.linalg.norm(person.keypoints2d[SMPLX_FROM_BODY, :2]
                                - person.landmarks.body_2d[MP_BODY, :2], axis=-1)
        assert np.median(kp_err) < 6.0
    # the nearer person is nearer
    assert frame.people[0].params.transl[2] < frame.people[1].params.transl[2]


def test_display_mesh_matches_full_smplx_at_its_vertices(open_model):
    from mepo_core.render.decimate import display_mesh
    mesh = display_mesh(open_model)
    assert 500 < mesh.num_vertices < open_model.num_verts / 2
    assert mesh.faces.max() < mesh.num_vertices
    rv = random_pose(2, seed=11)
    g = torch.Generator().manual_seed(4)
    params = {"global_orient": rv[:, 0], "body_pose": rv[:, 1:22].reshape(2, -1), "jaw_pose": rv[:, 22],
              "leye_pose": rv[:, 23], "reye_pose": rv[:, 24], "left_hand_pose": rv[:, 25:40].reshape(2, -1),
              "right_hand_pose": rv[:, 40:55].reshape(2, -1), "betas": 0.5 * torch.randn(2, 10, generator=g),
              "expression": 0.5 * torch.randn(2, 10, generator=g), "transl": torch.tensor([[0.2, 0.1, 3.0]] * 2)}
    full, _ = open_model.forward(params)
    reduced = mesh.vertices({k: v.numpy() for k, v in params.items()})
    assert np.abs(full[:, mesh.vertex_ids].numpy() - reduced).max() < 5e-4
