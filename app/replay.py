"""Play a recorded take back through the viewport: its people as FrameRecords over a blank frame of the take's camera."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from mepo_core.io.npz import load_take
from mepo_core.records import Camera, FrameRecord, Landmarks, Person, SmplxParams


class TakeReplaySource:
    """A take NPZ as a seekable frame source (same interface as ``mepo_core.sources``)."""

    def __init__(self, path: str):
        self.take = load_take(path)
        K = self.take["camera_K"]
        w, h = (int(x) for x in self.take["image_size"])
        self.camera = Camera(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), w, h)
        self.width, self.height = w, h
        self.fps = float(self.take["fps"])
        self.num_frames = len(self.take["frame_index"])
        self._seek_to = None

    def seek(self, index: int) -> None:
        self._seek_to = min(max(0, int(index)), self.num_frames - 1)

    def frame(self, t: int) -> FrameRecord:
        d = self.take
        image = np.full((self.height, self.width, 3), 24, np.uint8)
        people = []
        for p in np.flatnonzero(d["valid"][t]):
            params = SmplxParams(**{k: d[k][t, p] for k in SmplxParams.KEYS})
            landmarks = None
            if "landmarks_body2d" in d:
                landmarks = Landmarks(d["landmarks_body2d"][t, p], np.zeros((33, 3), np.float32),
                                      face_2d=d["landmarks_face2d"][t, p].astype(np.float32))
            people.append(Person(d["boxes"][t, p] if "boxes" in d else np.zeros(4, np.float32),
                                 track_id=int(d["person_ids"][p]), landmarks=landmarks, params=params,
                                 joints3d=d["joints3d"][t, p], keypoints2d=d["keypoints2d"][t, p]))
        return FrameRecord(int(d["frame_index"][t]), float(d["timestamps"][t]), image, self.camera, people)

    def __iter__(self) -> Iterator[FrameRecord]:
        t = 0
        while t < self.num_frames:
            if self._seek_to is not None:
                t, self._seek_to = self._seek_to, None
            yield self.frame(t)
            t += 1

    def close(self) -> None:
        pass
