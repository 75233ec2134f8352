"""The one face path (facerec.facepath): photos, video frames and tagging workers alike."""

from __future__ import annotations

import threading
import time

import numpy as np

from conftest import png_bytes, synthetic_photo


def test_lazy_builds_once_whatever_the_threads():
    from facerec.facepath import Lazy

    calls = []

    def build():
        calls.append(1)
        time.sleep(0.05)  # long enough for every thread to arrive while building
        return object()

    lazy = Lazy(build)
    got = []
    threads = [threading.Thread(target=lambda: got.append(lazy.get())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(g) for g in got}) == 1 and lazy.built
    given = Lazy(lambda: 1 / 0, value="ready")  # a given value: never built
    assert given.get() == "ready"


def test_photos_frames_and_workers_find_the_same_faces(recognizer):
    """The recogniser (photos), the video path (frames) and a tagging worker give the same
    boxes and vectors for one image: they are one path."""
    from facerec.engines import PhotoWorker

    image = synthetic_photo([1, 2], seed=4)
    by_photo = recognizer.faces(image)
    by_frame = recognizer.path.frame_faces(image, detect_side=10_000)
    worker = PhotoWorker.for_recognizer(recognizer)
    prepared = worker.process([("x.png", png_bytes(image))])[0]
    assert len(by_photo) == 2
    for other in (by_frame, prepared.faces):
        assert [f.box for f in other] == [f.box for f in by_photo]
        np.testing.assert_allclose(np.stack([f.vector for f in other]), np.stack([f.vector for f in by_photo]),
                                   atol=1e-5)


def test_identify_many_equals_identify_one_by_one(recognizer):
    for person, name in [(1, "Ann"), (2, "Bob")]:
        recognizer.enroll(name, png_bytes(synthetic_photo([person], seed=0)), source=f"{name}.png")
    images = [synthetic_photo([1, 2], seed=5), synthetic_photo([], seed=5), synthetic_photo([2], seed=6)]
    together = recognizer.identify_many(images)
    alone = [recognizer.identify(im) for im in images]
    assert [[m.name for _, m in r] for r in together] == [[m.name for _, m in r] for r in alone]
    assert [[m.name for _, m in r] for r in together] == [["Ann", "Bob"], [], ["Bob"]]


def test_the_matcher_and_its_threshold_come_from_one_place(recognizer, settings):
    from facerec.facepath import match_threshold

    recognizer.enroll("Ann", png_bytes(synthetic_photo([1], seed=0)), source="a.png")
    matcher = recognizer.refresh()
    used, calibrated = match_threshold(settings, ["Ann"], recognizer.embedder.threshold)
    assert matcher.threshold == used == recognizer.threshold
    fixed, _ = match_threshold(settings.replace(threshold=0.33), ["Ann"], recognizer.embedder.threshold)
    assert fixed == 0.33

