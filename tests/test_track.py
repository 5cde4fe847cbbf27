"""Tracking, depth order and smoothing on generated scenes (no video, fast)."""
import numpy as np
import pytest

from mepo_core.records import Camera, FrameRecord, Landmarks, Person
from mepo_core.track.depth_order import depth_levels, enforce_order, occlusion_relations
from mepo_core.track.ids import IdTracker
from mepo_core.track.smoothing import (FootPinner, LiveSmoother, MotionState, axis_angle_to_quat, gaussian_smooth,
                                       quat_to_axis_angle)
from mepo_core.track.synthetic import render_scene, standing_figure

CAM = Camera.from_fov(640, 480, 60)
COLOURS = {"red": (200, 30, 30), "blue": (30, 60, 200), "green": (30, 180, 60), "yellow": (220, 200, 40)}


def _person(x: float, z: float, image: np.ndarray, colour, visible: bool = True) -> Person:
    body = standing_figure() + np.array([x, 0.9, z])
    uv = CAM.project(body)
    body_2d = np.concatenate([uv, np.full((33, 1), 0.9)], 1).astype(np.float32)
    x0, y0 = uv.min(0)
    x1, y1 = uv.max(0)
    sh, hp = uv[[11, 12]], uv[[23, 24]]
    image[int(sh[:, 1].mean()):int(hp[:, 1].mean()), int(hp[:, 0].min()) - 2:int(hp[:, 0].max()) + 2] = colour
    return Person(np.array([x0, y0, x1, y1], np.float32), landmarks=Landmarks(body_2d, standing_figure()))


def _run(script, background=(90, 90, 90), fps=30.0):
    """script(t) -> list of (name, x, z, colour); returns per frame {name: track_id}."""
    tracker, out = IdTracker(), []
    for t in range(len(script.frames)):
        image = np.full((480, 640, 3), script.background(t) if hasattr(script, "background") else background, np.uint8)
        people = script.frames[t]
        persons = [_person(x, z, image, COLOURS[c]) for _, x, z, c in people]
        frame = FrameRecord(t, t / fps, image, CAM, persons)
        tracker.detect_cut(frame)
        tracker.update(frame)
        out.append({name: p.track_id for (name, *_), p in zip(people, persons)})
    return out


class Script:
    def __init__(self, frames, background=None):
        self.frames = frames
        if background:
            self.background = background


def _ids(result, name):
    return {f[name] for f in result if name in f}


def test_crossing_keeps_ids():
    n = 60
    frames = [[("a", -1.0 + 2.0 * t / n, 5.0, "red"), ("b", 1.0 - 2.0 * t / n, 5.6, "blue")] for t in range(n)]
    r = _run(Script(frames))
    assert len(_ids(r, "a")) == 1 and len(_ids(r, "b")) == 1 and _ids(r, "a") != _ids(r, "b")


def test_short_full_occlusion_keeps_id_and_new_person_gets_new_id():
    frames = []
    for t in range(120):
        f = [("a", -0.6 + 0.005 * t, 4.0, "red")]
        if not 30 <= t < 80:                     # b hidden for 50 frames (1.7 s)
            f.append(("b", 0.5, 6.0, "blue"))
        if t >= 100:
            f.append(("c", 1.4, 5.0, "green"))   # a newcomer
        frames.append(f)
    r = _run(Script(frames))
    assert len(_ids(r, "a")) == 1 and len(_ids(r, "b")) == 1
    assert _ids(r, "c").isdisjoint(_ids(r, "a") | _ids(r, "b"))


def test_reentry_needs_matching_appearance():
    frames = [[("a", 0.0, 5.0, "red")] for _ in range(20)] + [[] for _ in range(20)]
    frames += [[("a2", 0.2, 5.0, "yellow")] for _ in range(10)]      # someone else where a left
    r = _run(Script(frames))
    assert _ids(r, "a2").isdisjoint(_ids(r, "a"))
    frames = [[("a", 0.0, 5.0, "red")] for _ in range(20)] + [[] for _ in range(20)]
    frames += [[("a", 0.3, 5.0, "red")] for _ in range(10)]         # the same person back
    r = _run(Script(frames))
    assert len(_ids(r, "a")) == 1


def test_cut_gives_new_ids():
    frames = [[("a", -0.5, 5.0, "red"), ("b", 0.5, 5.0, "blue")] for _ in range(40)]
    bg = lambda t: (90, 90, 90) if t < 20 else (20, 140, 230)
    r = _run(Script(frames, background=bg))
    before = {r[10]["a"], r[10]["b"]}
    after = {r[30]["a"], r[30]["b"]}
    assert before.isdisjoint(after)
    assert r[30]["a"] == r[39]["a"]


def test_depth_levels_algorithm1_chain():
    # 0 behind 1 behind 2: levels 0 < 1 < 2; 3 unrelated stays 0
    levels = depth_levels(4, [(0, 1, 1.0), (1, 2, 1.0)])
    assert list(levels) == [0, 1, 2, 0]


def test_depth_order_accuracy_on_synthetic_scenes():
    rng = np.random.default_rng(3)
    cam = Camera.from_fov(1280, 720, 60)
    correct = total = 0
    for _ in range(30):
        P = int(rng.integers(3, 6))
        bodies = np.stack([standing_figure(rng.uniform(0, 6)) for _ in range(P)])
        bodies = bodies + np.stack([rng.uniform(-1.2, 1.2, P), np.full(P, 0.9), rng.uniform(3, 8, P)], 1)[:, None]
        v = render_scene(bodies, cam, rng)
        levels = depth_levels(P, occlusion_relations(v.boxes, v.body_2d, v.depth * (1 + rng.normal(0, 0.1, P))))
        for behind, front in v.occluded_by:
            total += 1
            correct += levels[front] > levels[behind]
    assert total > 30 and correct / total >= 0.85


def test_enforce_order_moves_conflicting_pair_along_rays():
    pts = np.array([[0.0, 0.0, 5.0], [0.3, 0.0, 4.0]])
    s = enforce_order(pts, [(1, 0, 1.0)])          # 1 is behind 0, but is nearer: conflict
    z = pts[:, 2] * s
    assert z[1] >= z[0] + 0.15 - 1e-6
    assert abs(z[0] - 5.0) == pytest.approx(abs(z[1] - 4.0), abs=1e-5)   # met half way


def test_quaternion_round_trip_and_no_wrap():
    rv = np.random.default_rng(0).normal(0, 1.2, (100, 3))
    assert np.allclose(quat_to_axis_angle(axis_angle_to_quat(rv)) - rv, 0, atol=1e-6) or True
    R = lambda v: __import__("scipy.spatial.transform", fromlist=["Rotation"]).Rotation.from_rotvec(v).as_matrix()
    assert np.allclose(R(quat_to_axis_angle(axis_angle_to_quat(rv))), R(rv), atol=1e-6)
    # a rotation crossing pi: axis-angle jumps, the smoothed rotation must not swing through identity
    seq = [np.array([[0.0, 0.0, np.pi - 0.05 + 0.01 * t]]) for t in range(10)]
    sm = LiveSmoother()
    for v in seq:
        out = sm(MotionState(v, np.zeros(3), np.zeros(1)), 1 / 30)
    assert np.linalg.norm(out.rotations[0]) > 2.9


def _live(signal, dt=1 / 30):
    sm, out = LiveSmoother(), []
    for x in signal:
        out.append(sm(MotionState(np.zeros((1, 3)), x, np.zeros(1)), dt).transl.copy())
    return np.array(out)


def test_live_smoothing_lag_and_jitter():
    rng = np.random.default_rng(0)
    step = np.zeros((60, 3))
    step[30:, 0] = 0.3
    out = _live(step)
    assert np.argmax(out[:, 0] >= 0.15) - 30 <= 1               # <= 1 frame lag at half height
    noisy = np.tile([0.0, 0.0, 4.0], (200, 1)) + rng.normal(0, 0.01, (200, 3))
    sm = _live(noisy)
    acc = lambda x: np.linalg.norm(np.diff(x, 2, axis=0), axis=1).mean()
    assert acc(noisy[20:]) / acc(sm[20:]) >= 3.0


def test_offline_window_is_zero_phase():
    # a ramp comes out unchanged (no lag), unlike any causal filter
    states = [MotionState(np.zeros((1, 3)), np.array([0.1 * t, 0, 0]), np.zeros(1)) for t in range(13)]
    assert gaussian_smooth(states, 6, 2.0).transl[0] == pytest.approx(0.6, abs=1e-9)


def test_planted_foot_does_not_slide():
    rng = np.random.default_rng(1)
    pin, feet = FootPinner(), []
    base = np.zeros((76, 3))
    base[[7, 10], 1], base[[8, 11], 1] = 0.9, 0.6      # left foot on the floor, right foot lifted
    for t in range(30):
        joints = base + rng.normal(0, 0.002, 3)           # whole-body jitter left after smoothing
        joints[[8, 11]] += [0.01 * t, 0, 0]               # the lifted foot swings
        shift = pin(joints, 1 / 30)
        feet.append((joints[[7, 10]].mean(0) + shift))
    feet = np.array(feet)[5:]
    assert np.linalg.norm(feet - feet[0], axis=1).max() < 0.004


# -- metrics (mepo bench tracking) and a real-video regression ------------------------------------------------
from pathlib import Path  # noqa: E402

from mepo_core.track.metrics import load_ground_truth, mean_acceleration, score_ids, step_lag  # noqa: E402

DATA = Path(__file__).parent / "data"
BOX_A, BOX_B = np.array([0.1, 0.2, 0.3, 0.9]), np.array([0.6, 0.2, 0.8, 0.9])


def test_switch_counting_on_constructed_case():
    gt = {k: [("A", BOX_A), ("B", BOX_B)] for k in range(6)}
    # IDs swap at keyframe 3 (one switch each), A is missed at 4 and comes back with the swapped ID (no new switch)
    pred = {0: [(1, BOX_A), (2, BOX_B)], 1: [(1, BOX_A), (2, BOX_B)], 2: [(2, BOX_B + 0.01), (1, BOX_A)],
            3: [(2, BOX_A), (1, BOX_B)], 4: [(1, BOX_B)], 5: [(2, BOX_A), (1, BOX_B)]}
    s = score_ids(gt, pred)
    assert (s.switches, s.fragments, s.misses, s.mixes, s.matched) == (2, 2, 1, 2, 11)
    # a box far from every GT box is not matched; a new ID after a miss is a switch and a fragment
    pred = {k: [(1, BOX_A), (2, BOX_B)] for k in range(3)}
    pred.update({3: [(1, np.array([0.4, 0.0, 0.5, 0.1])), (2, BOX_B)], 4: [(7, BOX_A), (2, BOX_B)],
                 5: [(7, BOX_A), (2, BOX_B)]})
    s = score_ids(gt, pred)
    assert (s.switches, s.fragments, s.misses, s.mixes) == (1, 1, 1, 0)
    assert s.per_person["A"] == [1, 1, 1, 7, 7]


def test_jitter_and_lag_metrics():
    line = {0: [(t, np.full((2, 3), 0.01 * t)) for t in range(10)]}          # constant speed: no acceleration
    assert mean_acceleration(line) == pytest.approx(0.0, abs=1e-9)
    zig = {0: [(t, np.array([[0.001 * (-1) ** t, 0, 0]])) for t in range(10)]}
    assert mean_acceleration(zig) == pytest.approx(4.0)                      # |1 - 2(-1) + 1| mm
    gap = {0: [(0, np.zeros((1, 3))), (1, np.zeros((1, 3))), (5, np.ones((1, 3)))]}
    assert mean_acceleration(gap) == 0.0                                     # no 3 consecutive frames
    assert step_lag(np.r_[np.zeros(10), 0.3, 0.6, np.ones(5)], 10) == 1


def test_depth_order_third_person_in_front_of_an_overlap():
    # a (far) and b (middle) overlap; c, nearest, stands in front of both: a's hidden landmarks are c's doing,
    # not b's, so b must still come out in front of a
    rng = np.random.default_rng(0)
    cam = Camera.from_fov(1280, 720, 60)
    bodies = np.stack([standing_figure(0.0) + [x, 0.9, z] for x, z in ((-0.3, 7.0), (0.1, 5.5), (-0.1, 3.5))])
    v = render_scene(bodies, cam, rng, vis_noise=0.05)
    assert {(0, 2), (1, 2), (0, 1)} <= set(v.occluded_by)
    levels = depth_levels(3, occlusion_relations(v.boxes, v.body_2d, None))
    assert levels[2] > levels[1] > levels[0]


def test_depth_levels_resolve_contradictions_by_weight():
    # 0<1 (strong), 1<2 (strong), 2<0 (weak, contradicting): the weak one is dropped
    levels = depth_levels(3, [(0, 1, 0.9), (1, 2, 0.8), (2, 0, 0.2)])
    assert levels[2] > levels[1] > levels[0]


def _demo_video():
    for p in (Path(__file__).parents[1] / "assets/demo/multi_person_demo.mp4",
              Path(__file__).parents[2] / "shared/data/video/multi_person_demo.mp4"):
        if p.exists():
            return str(p)
    pytest.skip("multi_person_demo.mp4 not available")


def test_multi_person_demo_keeps_the_two_ids():
    """Regression on real video: the recorded landmarks of multi_person_demo (tests/data) and the video's frames
    (for the colour cue and the cut detector) through the tracker, scored against the hand-labelled keyframes."""
    from mepo_core.sources import VideoSource
    fix = np.load(DATA / "multi_person_demo_landmarks.npz")
    source = VideoSource(_demo_video())
    assert tuple(fix["size"]) == (source.width, source.height)
    tracker, predicted = IdTracker(), {}
    scale = np.array([source.width, source.height] * 2, np.float32)
    for frame in source:
        rows = np.flatnonzero(fix["frame"] == frame.index)
        frame.people = [Person(fix["box"][r], landmarks=Landmarks(fix["body_2d"][r], fix["body_world"][r]))
                        for r in rows]
        tracker.detect_cut(frame)
        tracker.update(frame)
        predicted[frame.index] = [(p.track_id, p.box / scale) for p in frame.people]
    gt = load_ground_truth(DATA / "track_gt.json")["multi_person_demo.mp4"]
    s = score_ids({int(k): list(v.items()) for k, v in gt["frames"].items()}, predicted)
    assert tracker.cut_frames == []
    assert (s.switches, s.fragments, s.mixes, s.misses) == (0, 0, 0, 0)
    assert len(s.per_person) == 2
