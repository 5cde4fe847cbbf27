"""Whole-body landmarker on the shared real images and videos (needs mediapipe's shipped .tflite files)."""
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("mediapipe")

from mepo_core.detect.landmarker import WholeBodyLandmarker  # noqa: E402
from mepo_core.detect.pose_detector import ssd_anchor_centres  # noqa: E402
from mepo_core.records import Camera, FrameRecord  # noqa: E402

DATA = Path("/work/shared/data")
if not DATA.is_dir():
    pytest.skip("shared test data not available", allow_module_level=True)


def load_image(relative: str) -> FrameRecord:
    image = cv2.cvtColor(cv2.imread(str(DATA / "images" / relative)), cv2.COLOR_BGR2RGB)
    return FrameRecord(0, 0.0, image, Camera.from_fov(image.shape[1], image.shape[0]))


@pytest.fixture(scope="module")
def still():
    return WholeBodyLandmarker(still_image=True)


@pytest.fixture(scope="module")
def video_run():
    """People of the first 60 frames (the clip has 40) of the two-person demo, in video (tracking) mode, and
    the landmarker's timings of each frame."""
    landmarker = WholeBodyLandmarker()
    capture = cv2.VideoCapture(str(DATA / "video" / "multi_person_demo.mp4"))
    frames, timings = [], []
    for index in range(60):
        ok, bgr = capture.read()
        if not ok:
            break
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        frames.append(landmarker.process(FrameRecord(index, index / 12.0, image,
                                                     Camera.from_fov(image.shape[1], image.shape[0]))))
        timings.append(dict(landmarker.timings))
    assert len(frames) >= 30
    return frames, timings


@pytest.fixture(scope="module")
def video_frames(video_run):
    return video_run[0]


@pytest.fixture(scope="module")
def coco_241(still):
    return still.process(load_image("coco_val2014/COCO_val2014_000000000241.jpg"))


def test_anchor_layout_matches_the_model():
    anchors = ssd_anchor_centres()
    assert anchors.shape == (2254, 2)
    assert np.allclose(anchors[0], [0.5 / 28, 0.5 / 28]) and np.allclose(anchors[-1], [6.5 / 7, 6.5 / 7])


def test_both_people_found_in_most_video_frames(video_frames):
    counts = np.array([len(f.people) for f in video_frames])
    assert np.mean(counts >= 2) >= 0.9
    assert np.mean(counts <= 2) >= 0.9, "ROIs that converge on one person must be merged"


@pytest.mark.parametrize("name, visible_people", [("COCO_val2014_000000000241.jpg", 3),
                                                  ("COCO_val2014_000000000536.jpg", 3)])
def test_coco_people_found(still, name, visible_people):
    people = still.process(load_image(f"coco_val2014/{name}")).people
    assert visible_people - 1 <= len(people) <= visible_people + 2


def test_tennis_lesson_finds_small_people(still):
    assert len(still.process(load_image("tennis_lesson.jpg")).people) >= 8


def test_no_person_on_blank_images(still):
    for value in (0, 128, 255):
        image = np.full((480, 640, 3), value, np.uint8)
        assert still.process(FrameRecord(0, 0.0, image, Camera.from_fov(640, 480))).people == []


def test_visible_landmarks_inside_box(video_frames, coco_241):
    for frame in video_frames[::5] + [coco_241]:
        for person in frame.people:
            body = person.landmarks.body_2d
            x0, y0, x1, y1 = person.box
            pad = 0.02 * max(frame.image.shape[:2])
            visible = body[body[:, 2] > 0.5]
            assert ((visible[:, 0] >= x0 - pad) & (visible[:, 0] <= x1 + pad)
                    & (visible[:, 1] >= y0 - pad) & (visible[:, 1] <= y1 + pad)).all()
            assert person.landmarks.body_world.shape == (33, 3) and person.landmarks.heatmap.shape == (64, 64, 39)


def test_hands_start_at_their_own_body_wrist(video_frames, coco_241):
    checked = 0
    for frame in video_frames + [coco_241]:
        tolerance = 0.04 * np.hypot(*frame.image.shape[:2])
        for person in frame.people:
            lm = person.landmarks
            for hand, own, other in ((lm.left_hand_2d, 15, 16), (lm.right_hand_2d, 16, 15)):
                if hand is None:
                    continue
                distance = np.linalg.norm(hand[0, :2] - lm.body_2d[own, :2])
                assert distance < tolerance
                assert distance <= np.linalg.norm(hand[0, :2] - lm.body_2d[other, :2])
                checked += 1
    assert checked >= 20


def test_left_side_is_the_persons_left(coco_241):
    """The standing man faces the camera, so his left shoulder, wrist and hand are on the image right."""
    man = max(coco_241.people, key=lambda p: (p.box[3] - p.box[1]))
    body = man.landmarks.body_2d
    assert body[11, 0] > body[12, 0] and body[15, 0] > body[16, 0]
    if man.landmarks.left_hand_2d is not None and man.landmarks.right_hand_2d is not None:
        assert man.landmarks.left_hand_2d[:, 0].mean() > man.landmarks.right_hand_2d[:, 0].mean()


def test_face_mesh_sits_on_the_nose(coco_241):
    faces = [p for p in coco_241.people if p.landmarks.face_2d is not None]
    assert len(faces) >= 2
    for person in faces:
        face = person.landmarks.face_2d
        assert face.shape == (478, 3)
        face_size = np.ptp(face[:, :2], axis=0).max()
        assert np.linalg.norm(face[1, :2] - person.landmarks.body_2d[0, :2]) < 0.35 * face_size


def test_video_mode_spreads_the_detector_over_frames(video_run):
    """Only the first frame runs every detector region; later frames run at most the whole frame, one tile
    and a region per person just lost (2 at most), so no frame pays for the whole tiled pass."""
    _, timings = video_run
    assert timings[0]["detect_regions"] > 10
    assert all(t.get("detect_regions", 0) <= 4 for t in timings[1:])
    assert all(set(t) >= {"pose", "hands", "face"} for t in timings)


def single_person_crop() -> np.ndarray:
    """The person of a single_person_demo frame with a margin of 10% of their height (RGB)."""
    capture = cv2.VideoCapture(str(DATA / "video" / "single_person_demo.mp4"))
    for _ in range(10):
        ok, bgr = capture.read()
    assert ok
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    x0, y0, x1, y1 = WholeBodyLandmarker(still_image=True, hands=False, face=False).process(
        FrameRecord(0, 0.0, image, Camera.from_fov(image.shape[1], image.shape[0]))).people[0].box
    pad = 0.1 * (y1 - y0)
    return image[int(max(y0 - pad, 0)):int(y1 + pad), int(max(x0 - pad, 0)):int(x1 + pad)]


@pytest.fixture(scope="module")
def person_crop():
    return single_person_crop()


def paste(canvas: np.ndarray, crop: np.ndarray, body_height: float, centre) -> np.ndarray:
    """The crop scaled so the body (crop height / 1.2) is ``body_height`` pixels, pasted at ``centre``."""
    scale = body_height * 1.2 / crop.shape[0]
    small = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    x = int(np.clip(centre[0] - small.shape[1] / 2, 0, canvas.shape[1] - small.shape[1]))
    y = int(np.clip(centre[1] - small.shape[0] / 2, 0, canvas.shape[0] - small.shape[0]))
    canvas = canvas.copy()
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas


def canvases():
    gray = np.full((480, 640, 3), 120, np.uint8)
    flowers = cv2.cvtColor(cv2.imread(str(DATA / "images" / "coco_val2014" / "COCO_val2014_000000000569.jpg")),
                           cv2.COLOR_BGR2RGB)[0:330, 330:640]   # flower beds and lawn, nobody in it
    return {"gray": gray, "photo": cv2.resize(flowers, (640, 480))}


@pytest.mark.parametrize("fraction", [1 / 8, 1 / 6, 1 / 4])
@pytest.mark.parametrize("background", ["gray", "photo"])
def test_small_person_on_a_canvas_is_found(still, person_crop, fraction, background):
    """A person 1/8, 1/6, 1/4 of the frame height, at three places in a 640x480 frame, is found (alone)."""
    for centre in ((128, 144), (448, 288), (320, 400)):
        image = paste(canvases()[background], person_crop, fraction * 480, centre)
        people = still.process(FrameRecord(0, 0.0, image, Camera.from_fov(640, 480))).people
        assert len(people) == 1, (centre, [p.box for p in people])
        x0, y0, x1, y1 = people[0].box
        assert abs((x0 + x1) / 2 - centre[0]) < 0.5 * fraction * 480
        assert 0.6 < (y1 - y0) / (fraction * 480) < 1.3


def test_small_person_entering_a_video_is_found_by_the_round_robin(person_crop):
    """Video mode: after 3 empty frames a 1/8-height person appears; the tiles visited one every
    ``tile_every`` frames find them within one round of the tiles (the whole-frame pass alone would not)."""
    landmarker = WholeBodyLandmarker(hands=False, face=False)
    background = canvases()["photo"]
    tiles = len(landmarker.detector.regions(480, 640)) - 1
    image = paste(background, person_crop, 480 / 8, (448, 288))
    found_at = None
    for index in range(3 + landmarker.tile_every * tiles + 1):
        frame = FrameRecord(index, index / 15.0, background if index < 3 else image, Camera.from_fov(640, 480))
        if landmarker.process(frame).people:
            assert index >= 3
            found_at = index
            break
    assert found_at is not None


@pytest.mark.parametrize("name, min_faces", [("multihmr/39742984604_46934fbd50_c.jpg", 5)])
def test_faces_found_where_clearly_visible(still, name, min_faces):
    """Faces checked by eye on crops: six people facing the camera."""
    people = [p for p in still.process(load_image(name)).people if p.landmarks.face_2d is not None]
    assert len(people) >= min_faces
    for person in people:
        face = person.landmarks.face_2d
        assert np.linalg.norm(face[1, :2] - person.landmarks.body_2d[0, :2]) < 0.35 * np.ptp(face[:, :2], axis=0).max()


def test_profile_face_found_in_video(video_frames):
    """The woman turns into profile in the two-person demo: the face detector on the head crop plus the mesh's
    agreement with it finds her face in a fair share of frames (the mesh's presence alone: 2 of 80)."""
    with_face = sum(p.landmarks.face_2d is not None for f in video_frames for p in f.people)
    assert with_face >= 8
