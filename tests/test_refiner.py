"""Issue 8: twist-swing IK round trip (twist included), the relation-aware refiner's permutation and masking
behaviour, a tiny training run that lowers the loss, and the frame-level integration."""
import numpy as np
import pytest
import torch

from mepo_core.estimate.ik import solve_ik
from mepo_core.estimate.kinematics import SkeletonFK
from mepo_core.estimate.rotations import axis_angle_to_matrix, normalize, swing
from mepo_core.refine.core import assemble, nearest_context
from mepo_core.refine.model import F_IN, K, RelationRefiner

torch.set_num_threads(1)
LIMB = {16: 18, 17: 19, 18: 20, 19: 21, 1: 4, 2: 5, 4: 7, 5: 8}     # joint -> child: shoulders, elbows, hips, knees


def ik_family_poses(B: int, seed: int, straight: bool, bent: torch.Tensor | None = None) -> torch.Tensor:
    """Random local rotations incl. limb twist: arbitrary shoulders/hips, random wrists/ankles/fingers/global
    orientation; toes, jaw and eyes at rest (no target sees them apart from their parent).
    ``bent`` (B, 76, 3) rest joints of the shape: independent random spine1/2/3, neck and head, and collars
    swung about their own bones (swing only: a collar's twist about its bone only moves the shoulder frame, which
    IK cannot tell from the shoulder's twist); None: the straight spine the MediaPipe path assumes (equal thirds,
    neck = head, rest collars).
    ``straight``: elbows/knees get a pure twist about the bone (set by the caller), the limb stays straight."""
    g = torch.Generator().manual_seed(seed)
    aa = torch.zeros(B, 55, 3)
    rnd = lambda s: torch.randn(B, 3, generator=g) * s
    aa[:, 0] = rnd(1.0)
    aa[:, 12] = aa[:, 15] = rnd(0.2)
    for j in (16, 17, 1, 2):
        aa[:, j] = rnd(0.7)
    for j, child in ((18, 20), (19, 21), (4, 7), (5, 8)):
        if straight:                                   # rotation about the bone only: the limb stays straight
            aa[:, j] = 0
        else:
            aa[:, j] = rnd(0.8)
    for j in (20, 21, 7, 8):
        aa[:, j] = rnd(0.3)
    aa[:, 25:55] = torch.randn(B, 30, 3, generator=g) * 0.25
    if bent is not None:
        for j in (3, 6, 9, 12, 15):
            aa[:, j] = rnd(0.35)
    R = axis_angle_to_matrix(aa)
    if bent is not None:
        for col, sh in ((13, 16), (14, 17)):
            t = bent[:, sh] - bent[:, col]
            R[:, col] = swing(t, (axis_angle_to_matrix(rnd(0.35)) @ t[..., None])[..., 0])
    return R


def twist_of(R: torch.Tensor, J: torch.Tensor) -> torch.Tensor:
    """(B, 55, 2) cos/sin of each limb joint's twist about its template bone: R = R_sw(t -> R t) R_tw(t, phi)."""
    out = torch.zeros(R.shape[0], 55, 2)
    for j, c in LIMB.items():
        t = normalize(J[:, c] - J[:, j])
        tw = swing(t, (R[:, j] @ t[..., None])[..., 0]).transpose(-1, -2) @ R[:, j]
        cos = (tw.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
        sin = (torch.stack([tw[:, 2, 1] - tw[:, 1, 2], tw[:, 0, 2] - tw[:, 2, 0], tw[:, 1, 0] - tw[:, 0, 1]], -1)
               * t).sum(-1) / 2
        out[:, j] = torch.stack([cos, sin], -1)
    return out


@pytest.mark.parametrize("straight,bent", [(False, False), (True, False), (False, True), (True, True)])
def test_ik_round_trip_with_twist(open_model, straight, bent):
    fk = SkeletonFK(open_model)
    B = 16
    betas = torch.randn(B, 10, generator=torch.Generator().manual_seed(1)).clamp(-2, 2)
    J = fk.rest_joints(betas)
    R = ik_family_poses(B, 3 + straight + 2 * bent, straight, J if bent else None)
    if straight:                                       # add a pure twist about the elbow/knee bones
        J0 = fk.rest_joints(torch.zeros(B, 10))
        g = torch.Generator().manual_seed(9)
        for j, c in ((18, 20), (19, 21), (4, 7), (5, 8)):
            axis = normalize(J0[:, c] - J0[:, j])
            R[:, j] = axis_angle_to_matrix(axis * (torch.rand(B, 1, generator=g) * 2 - 1) * 1.2)
    with torch.no_grad():
        joints, _ = fk.forward(R, betas)
        conf = torch.ones(B, 76)
        tw = twist_of(R, J)
        R_ik = solve_ik(J, joints, conf, twist=tw)
        back, _ = fk.forward(R_ik, betas)
    err = (back - back[:, :1] - (joints - joints[:, :1])).norm(dim=-1)
    assert float(err.amax()) < 1e-3, f"max joint error {1000 * float(err.amax()):.3f} mm"
    # with the twist given, the limb rotations themselves come back (twist included), straight limbs too
    limb = list(LIMB) + ([13, 14] if bent else [])
    rot_err = (R_ik[:, limb] - R[:, limb]).abs().amax()
    assert float(rot_err) < 1e-3
    if straight:
        # without it, a straight limb's twist is not observable from joints: rotations differ, joints still match
        with torch.no_grad():
            R_plain = solve_ik(J, joints, conf)
            back2, _ = fk.forward(R_plain, betas)
        assert float((R_plain[:, [18, 19, 4, 5]] - R[:, [18, 19, 4, 5]]).abs().amax()) > 0.1
        assert float((back2 - back2[:, :1] - (joints - joints[:, :1])).norm(dim=-1).amax()) < 1e-3


def test_ik_bent_spine_twisted_collars_and_mediapipe_fallback(open_model):
    """Collars with twist: the joints still come back exactly (the twist moves into the shoulders). Without spine
    targets (MediaPipe has none: conf 0 on spine/neck/collars) the IK keeps its straight-spine model, so a bent
    spine then costs centimetres; the fallback is what the fitting estimator and the synthetic retargeting use."""
    fk = SkeletonFK(open_model)
    B = 16
    betas = torch.zeros(B, 10)
    J = fk.rest_joints(betas)
    R = ik_family_poses(B, 11, False, J)
    R[:, [13, 14]] = axis_angle_to_matrix(torch.randn(B, 2, 3, generator=torch.Generator().manual_seed(2)) * 0.3)
    with torch.no_grad():
        joints, _ = fk.forward(R, betas)
        conf = torch.ones(B, 76)
        back, _ = fk.forward(solve_ik(J, joints, conf, twist=twist_of(R, J)), betas)
        assert float((back - back[:, :1] - (joints - joints[:, :1])).norm(dim=-1).amax()) < 1e-3
        conf[:, [3, 6, 9, 12, 13, 14]] = 0
        back, _ = fk.forward(solve_ik(J, joints, conf), betas)
    err = (back - back[:, :1] - (joints - joints[:, :1])).norm(dim=-1)
    assert float(err[:, [16, 17]].amax()) > 0.01          # shoulders: the straight-spine model cannot reach them


def _random_model(n_people=3):
    torch.manual_seed(0)
    m = RelationRefiner(n_people=n_people).eval()
    for h in (m.rot_head, m.person_head):          # the heads start at zero (identity refinement): randomise
        torch.nn.init.normal_(h.weight, std=0.3)
    return m


def test_context_permutation_invariance():
    m = _random_model()
    g = torch.Generator().manual_seed(2)
    own = torch.randn(5, K, F_IN - 4, generator=g)
    joints = torch.randn(5, K, 3, generator=g)
    root = joints[:, 0]
    with torch.no_grad():
        a = m(*assemble(own, joints, root, torch.tensor([[0, 1, 2], [3, 4, -1]])))
        b = m(*assemble(own, joints, root, torch.tensor([[0, 2, 1], [3, -1, 4]])))
    for x, y in zip(a, b):
        assert torch.allclose(x, y, atol=1e-5)
    assert a[0].abs().amax() > 1e-3              # not trivially zero
    # the target is not interchangeable with a context person
    with torch.no_grad():
        c = m(*assemble(own, joints, root, torch.tensor([[1, 0, 2]])))
    assert not torch.allclose(a[0][:1], c[0], atol=1e-3)


def test_nearest_context():
    root = torch.tensor([[0.0, 0, 3], [0.5, 0, 3], [3.0, 0, 5], [0.2, 0, 6]])
    ctx = nearest_context(root, 3)
    assert ctx[:, 0].tolist() == [0, 1, 2, 3] and ctx[0, 1] == 1 and ctx[2, 1] == 3
    assert nearest_context(root[:1], 3).tolist() == [[0, -1, -1]]


def test_masking_and_padding():
    m = _random_model()
    g = torch.Generator().manual_seed(4)
    tokens = torch.randn(2, 3, K, F_IN, generator=g)
    pad = torch.tensor([[False, False, True], [False, True, True]])
    with torch.no_grad():
        base = m(tokens, pad)
        junk = tokens.clone()
        junk[0, 2] = 100 * torch.randn(K, F_IN, generator=g)      # padded people's content is ignored
        junk[1, 1:] = -50.0
        for x, y in zip(base, m(junk, pad)):
            assert torch.allclose(x, y, atol=1e-5)
        # a target alone with two padded slots == the same target in a 1-person sequence
        alone = m(tokens[1:, :1], torch.zeros(1, 1, dtype=torch.bool))
        assert torch.allclose(alone[0], base[0][1:], atol=1e-5)
        # masked tokens: their input content no longer matters, but they still count (output changes)
        mask = torch.zeros(2, 3, K, dtype=torch.bool)
        mask[:, 0, 3:8] = True
        masked = m(tokens, pad, mask)
        tweak = tokens.clone()
        tweak[:, 0, 3:8] += 7.0
        for x, y in zip(masked, m(tweak, pad, mask)):
            assert torch.allclose(x, y, atol=1e-5)
        assert not torch.allclose(masked[0], base[0], atol=1e-4)


@pytest.fixture(scope="module")
def tiny(open_model):
    from mepo_core.nets.synth import SceneGenerator
    from mepo_core.refine.data import initial_estimates
    from mepo_core.refine.train import prepare
    from mepo_core.track.synthetic import standing_figure
    clips = [np.stack([standing_figure(ph) for ph in np.linspace(0, 6, 8)]).astype(np.float32) for _ in range(2)]
    d = SceneGenerator(open_model, clips).generate(6, seed=3)
    d.update(initial_estimates(d, open_model, progress=False))
    fk = SkeletonFK(open_model)
    return d, prepare(d, fk), fk


def test_tiny_training_lowers_loss(tiny):
    from mepo_core.refine.train import losses, refine_rows, train
    d, t, fk = tiny

    def loss(model):
        rows = torch.arange(len(t["own"]))
        with torch.no_grad():
            return float(sum(losses(fk, *refine_rows(model, t), t, rows).values()))
    before = loss(RelationRefiner())
    res = train("full", 120, t, fk, batch=32, lr=3e-3, progress=False, log_every=10)
    after = loss(res["model"])
    assert after < 0.95 * before, (before, after)
    assert "adv" in res["log"][-1] and "disc" in res["log"][-1]


def test_refiner_on_frame(tiny, tmp_path):
    """Refiner.refine on a FrameRecord from the estimator: 6 people, params/joints updated, finite."""
    from mepo_core.estimate.estimator import SmplxEstimator
    from mepo_core.refine.core import Refiner
    from mepo_core.refine.data import frame_from_rows
    from mepo_core.refine.train import train, export
    d, t, fk = tiny
    train("full", 5, t, fk, batch=8, progress=False, run_dir=tmp_path / "run")
    export(tmp_path / "run" / "checkpoint.pt", tmp_path / "w.pt")
    est = SmplxEstimator(fk.body_model, refine_iterations=1, face_fit=False)
    rows = np.arange(min(6, len(d["scene"])))
    frame = est.estimate(frame_from_rows(d, rows))
    before = np.stack([p.joints3d for p in frame.people])
    Refiner(est, tmp_path / "w.pt").refine(frame)
    after = np.stack([p.joints3d for p in frame.people])
    assert after.shape == before.shape and np.isfinite(after).all()
    assert np.abs(after - before).max() < 0.5


# ---------------------------------------------------- first stage: 3D skeleton f^P, twist/shape f^TS, IK -> init
def test_skeleton_and_twist_shape_shapes(open_model):
    from mepo_core.refine import skeleton as S
    P = 4
    g = torch.Generator().manual_seed(0)
    kp = torch.rand(P, S.N_KP, 3, generator=g) * torch.tensor([640.0, 480.0, 1.0])
    world = torch.randn(P, S.N_KP, 3, generator=g) * 0.3
    box = torch.tensor([[100.0, 50, 300, 450]]).expand(P, 4)
    cam = torch.tensor([[800.0, 800, 320, 240, 640, 480]]).expand(P, 6)
    x = S.features(kp, world, box, cam)
    assert x.shape == (P, S.F_IN)
    rel, lz, off = S.SkeletonNet()(x)
    assert rel.shape == (P, 33, 3) and lz.shape == (P,) and off.shape == (P, 2)
    tw, betas = S.TwistShapeNet()(x)
    assert tw.shape == (P, 8, 2) and betas.shape == (P, 10)
    # root parametrisation round trip
    root = torch.tensor([[0.3, -0.1, 4.0]]).expand(P, 3)
    assert torch.allclose(S.root_from(*S.root_targets(root, box, cam), box, cam), root, atol=1e-4)
    fk = SkeletonFK(open_model)
    R, b, transl = S.initial_estimate(fk, S.SkeletonNet().eval(), S.TwistShapeNet().eval(), kp, world, box, cam)
    assert R.shape == (P, 55, 3, 3) and b.shape == (P, 10) and transl.shape == (P, 3)
    assert torch.isfinite(R).all() and torch.isfinite(transl).all()


def test_skeleton_twist_labels_and_tiny_training(tiny):
    from mepo_core.refine import skeleton as S
    d, _, fk = tiny
    t = S.prepare(d, fk)
    # IK from GT joints with the GT twist labels stays on the GT joints (the spine/collar approximation of this
    # IK leaves a few cm at most on these mocap-like poses) and the labels are unit (cos, sin)
    gj = torch.as_tensor(d["gt_joints"])
    R_ik = solve_ik(fk.rest_joints(t["gt_betas"]), gj, torch.ones(gj.shape[:2]), S.twist55(t["twist"]))
    back, _ = fk.forward(R_ik, t["gt_betas"])
    assert float(((back - back[:, :1]) - (gj - gj[:, :1]))[:, :22].norm(dim=-1).mean()) < 0.015
    assert torch.allclose(t["twist"].norm(dim=-1), torch.ones(1), atol=1e-4)
    torch.manual_seed(0)
    loss = lambda sk, ts: float(sum(S.skel_loss(sk.eval(), t).values()) + sum(S.ts_loss(ts.eval(), t).values()))
    torch.manual_seed(0)
    before = loss(S.SkeletonNet(), S.TwistShapeNet())
    skel, ts, log = S.train(t, 150, batch=32, lr=3e-3, progress=False, augment=False)
    after = loss(skel, ts)
    assert after < 0.7 * before, (before, after)


def test_skeleton_estimator_on_frame(tiny):
    """`--estimator skeleton`: body from the learned skeleton + IK, fingers and wrists' camera-space orientation
    from the fit, a known per-ID shape (betas hint) used as given."""
    from mepo_core.estimate.estimator import SmplxEstimator
    from mepo_core.refine.data import frame_from_rows
    from mepo_core.refine.estimator import SkeletonEstimator
    from mepo_core.refine.skeleton import global_rotations
    d, _, fk = tiny
    rows = np.arange(min(4, len(d["scene"])))
    hint = {0: np.full(10, 0.5, np.float32)}

    def frame_with_ids():
        frame = frame_from_rows(d, rows)
        for i, p in enumerate(frame.people):
            p.track_id = i
        return frame
    est = SkeletonEstimator(fk.body_model)
    frame = est.estimate(frame_with_ids(), betas_hint=hint)
    fit = SmplxEstimator(fk.body_model, refine_iterations=0, face_fit=False).estimate(frame_with_ids(), hint)
    P = len(frame.people)
    stacked = lambda f: {k: torch.as_tensor(np.stack([getattr(p.params, k) for p in f.people]))
                         for k in f.people[0].params.KEYS}
    a, b = stacked(frame), stacked(fit)
    assert np.allclose(a["left_hand_pose"], b["left_hand_pose"]) and not np.allclose(a["body_pose"], b["body_pose"])
    assert np.allclose(a["betas"][0], 0.5) and not np.allclose(a["betas"][1:], 0.5)
    Ga, Gb = global_rotations(est._rotmats(a)), global_rotations(est._rotmats(b))
    assert torch.allclose(Ga[20], Gb[20], atol=1e-4) and torch.allclose(Ga[21], Gb[21], atol=1e-4)
    j = np.stack([p.joints3d for p in frame.people])
    assert j.shape == (P, 76, 3) and np.isfinite(j).all() and (j[:, 0, 2] > 0.5).all()
    gt = np.asarray(d["gt_joints"])[rows]
    rel = lambda x: x[:, :22] - x[:, :1]
    assert np.linalg.norm(rel(j) - rel(gt), axis=-1).mean() < 0.15        # untrained-on scenes, but a body


@pytest.mark.parametrize("estimator", ["skeleton", "mepo"])
def test_capture_with_refiner_after_learned_estimators(tmp_path, estimator):
    """`mepo --video ... --estimator skeleton|mepo --refiner on` end to end on the real two-person clip."""
    import subprocess
    import sys
    from pathlib import Path
    from mepo_core.io.npz import load_take
    root = Path(__file__).resolve().parents[1]
    video = root.parent / "shared" / "data" / "video" / "multi_person_demo.mp4"
    if not video.is_file():
        video = root / "assets" / "demo" / "multi_person_demo.mp4"
    T = 8
    r = subprocess.run([sys.executable, "-m", "mepo_core.cli", "--video", str(video), "--out", str(tmp_path / "t.npz"),
                        "--overlay", str(tmp_path / "t.mp4"), "--max-frames", str(T), "--estimator", estimator,
                        "--refiner", "on", "--quiet"], capture_output=True, text=True, timeout=600, cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    take = load_take(str(tmp_path / "t.npz"))
    assert take["valid"].shape[0] == T and (np.sort(take["valid"].sum(0))[-2:] == T).all()
    v = take["valid"]
    assert np.isfinite(take["joints3d"][v]).all()
    z = take["transl"][..., 2][v]
    assert (z > 0.5).all() and (z < 30).all()
    kp, lm = take["keypoints2d"][v], take["landmarks_body2d"][v]
    err = np.linalg.norm(kp[:, [1, 2, 4, 5, 16, 17, 18, 19], :2] - lm[:, [23, 24, 25, 26, 11, 12, 13, 14], :2], axis=-1)
    assert np.median(err) < 0.05 * take["image_size"].max()
    assert (tmp_path / "t.mp4").stat().st_size > 10_000


def test_refiner_weights_per_estimator():
    """Each estimator gets the refiner trained on its own initial estimates; all shipped weights load."""
    from mepo_core.refine.core import WEIGHTS_FOR, load_refiner, shipped_weights
    assert shipped_weights("MepoEstimator").name == "refiner_mepo.pt"
    assert shipped_weights("SomethingElse").name == "refiner.pt"
    for cls in WEIGHTS_FOR:
        assert load_refiner(shipped_weights(cls)).n_people == 3
