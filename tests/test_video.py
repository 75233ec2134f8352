"""The live-video processor with the fake detector and the tiny embedder."""

import numpy as np
import pytest

from facerec.types import UNKNOWN
from facerec.video import LiveProcessor

from conftest import person_pattern, png_bytes, synthetic_photo


def frame_with(people, seed=0, xs=None, size=48, width=320):
    """A black 240 x ``width`` frame with each person's pattern at x positions ``xs``."""
    canvas = np.zeros((240, width, 3), np.uint8)
    xs = xs or [30 + i * (size + 40) for i in range(len(people))]
    for p, x in zip(people, xs):
        canvas[60:60 + size, x:x + size] = person_pattern(p, size, seed)
    return canvas


@pytest.fixture
def enrolled(recognizer):
    for person, name in [(1, "Ann"), (2, "Bob")]:
        for seed in range(2):
            recognizer.enroll(name, png_bytes(synthetic_photo([person], seed=seed)), source=f"{name}{seed}.png")
    return recognizer


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def names(snap):
    return [None if f.match is None else f.match.name for f in snap.faces]


def test_name_shown_only_after_k_consistent_matches(enrolled):
    proc = LiveProcessor(enrolled, every=1, confirm=3, background=False)
    seen = []
    for i in range(5):
        proc.process(frame_with([1], seed=i))
        snap = proc.snapshot()
        seen.append(names(snap))
        if i < 2:
            assert snap.present == ()
    assert seen == [[None], [None], ["Ann"], ["Ann"], ["Ann"]]
    (who,) = proc.snapshot().present
    assert who.name == "Ann" and 0 < who.score <= 1


def test_stranger_stays_unknown_and_never_flickers_to_a_name(enrolled):
    proc = LiveProcessor(enrolled, every=1, confirm=3, background=False)
    for i in range(6):
        proc.process(frame_with([9], seed=i))
        assert names(proc.snapshot()) in ([None], [UNKNOWN])
    assert names(proc.snapshot()) == [UNKNOWN]
    assert [p.name for p in proc.snapshot().present] == [UNKNOWN]


def test_presence_list_follows_people_in_and_out_of_view(enrolled):
    wall = Clock()
    proc = LiveProcessor(enrolled, every=1, confirm=2, max_misses=1, background=False, wall=wall)
    for i in range(3):
        proc.process(frame_with([1], seed=i))
    assert [(p.name, p.since) for p in proc.snapshot().present] == [("Ann", 1000.0)]
    wall.t = 1005.0
    for i in range(3):  # Bob walks in; Ann's 'since' does not move
        proc.process(frame_with([1, 2], seed=i))
    assert [(p.name, p.since) for p in proc.snapshot().present] == [("Ann", 1000.0), ("Bob", 1005.0)]
    for i in range(2):  # Ann leaves (Bob stays where he was)
        proc.process(frame_with([2], seed=i, xs=[118]))
    assert [p.name for p in proc.snapshot().present] == ["Bob"]
    for _ in range(2):
        proc.process(np.zeros((240, 320, 3), np.uint8))
    assert proc.snapshot().present == () and proc.snapshot().faces == ()


def test_boxes_are_tracked_between_detections(enrolled):
    proc = LiveProcessor(enrolled, every=3, confirm=1, detect_side=320, background=False)  # no downscaling
    ids, boxes = [], []
    for i in range(8):  # Ann moves 5 px right per frame; detection on frames 0, 3, 6
        out = proc.process(frame_with([1], seed=i, xs=[20 + 5 * i]))
        (face,) = proc.snapshot().faces
        ids.append(face.track_id)
        boxes.append(face.box)
        assert out.shape == (240, 320, 3)
    assert len(set(ids)) == 1  # one track all along
    assert boxes[1] == boxes[0]  # nothing known about its motion yet
    assert boxes[3][0] == pytest.approx(35)  # detected
    assert boxes[4][0] == pytest.approx(40) and boxes[5][0] == pytest.approx(45)  # carried by its velocity
    assert proc.snapshot().faces[0].match.name == "Ann"


def test_person_enrolled_while_live_is_recognised(recognizer):
    proc = LiveProcessor(recognizer, every=1, confirm=2, background=False)
    for i in range(3):
        proc.process(frame_with([1], seed=i))
    assert names(proc.snapshot()) == [UNKNOWN]  # nobody enrolled yet
    recognizer.enroll("Ann", png_bytes(synthetic_photo([1])), source="a.png")
    for i in range(3):
        proc.process(frame_with([1], seed=i))
    assert names(proc.snapshot()) == ["Ann"]


def test_background_worker_names_faces_and_leaves_frames_untouched(enrolled):
    proc = LiveProcessor(enrolled, every=2, confirm=2)
    try:
        frame = frame_with([1, 9])
        before = frame.copy()
        for i in range(40):
            out = proc.process(frame)
            proc.wait_idle()
            if sorted(names(proc.snapshot()), key=str) == ["Ann", UNKNOWN]:
                break
        assert sorted(names(proc.snapshot()), key=str) == ["Ann", UNKNOWN]
        assert np.array_equal(frame, before) and not np.array_equal(out, frame)  # boxes drawn on a copy
        assert proc.snapshot().frames == i + 1 and proc.snapshot().error is None
    finally:
        proc.close()


def test_detection_on_a_downscaled_frame_reports_full_frame_boxes(enrolled):
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[200:296, 400:496] = person_pattern(1, 96)
    proc = LiveProcessor(enrolled, every=1, confirm=1, detect_side=240, background=False)
    proc.process(frame)
    (face,) = proc.snapshot().faces
    assert face.box == pytest.approx((400, 200, 96, 96), abs=3)
