"""No face lost to a size limit (issue 22): small photos are searched down to 12 px, large ones
within a pixel budget, and a photo gives the same faces through ``tag``, ``identify`` and the
app's Identify."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import CELEB5, SHARED, ShySearch, needs_shared, png_bytes, synthetic_photo

from facerec.settings import Settings

GROUP = SHARED / "group_photos" / "opencv-course_group1.jpg"  # 640x405, 25 faces of 24-30 px


def test_faces_are_searched_below_the_minimum_within_the_pixel_budget():
    """YuNet's smallest face searched: 12 px in a small photo, lowered from the minimum only as far
    as the working image stays within ``detect_pixels``; ``detect_pixels=0`` searches at the
    minimum (facerec 0.7); detectors whose cost is not per pixel keep the minimum."""
    from facerec.detect import YuNetDetector, _ScalingDetector

    det = YuNetDetector.__new__(YuNetDetector)
    _ScalingDetector.__init__(det, Settings())
    small = np.zeros((405, 640, 3), np.uint8)
    large = np.zeros((960, 1280, 3), np.uint8)
    assert det._search_size(small, 20.0) == 12
    assert det._search_size(large, 20.0) == 18  # 1.23 MP shown at 0.64: 12 px there is 18.8 px here
    assert det._search_size(large, 12.0) == 12
    assert det._search_size(np.zeros((3000, 4000, 3), np.uint8), 59.0) == 58
    assert "|pixels=500000|" in det.cache_key  # tag caches see the budget
    _ScalingDetector.__init__(det, Settings(detect_pixels=0))
    assert det._search_size(small, 20.0) == 20
    other = _ScalingDetector(Settings())
    assert other._search_size(small, 20.0) == 20 and "pixels" not in other.cache_key


def test_tagging_looks_again_where_no_face_was_found_as_the_app_does(tmp_path, tiny_embedder):
    """The tagger's path (``FacePath.locate`` as the engines call it) takes the detector's finer
    second look like the app's Identify, so both find the same faces; ``retry_no_face=False``
    turns it off for both."""
    from facerec.facepath import FacePath, Models
    from facerec.images import Photo
    from facerec.pipeline import FaceRecognizer

    image = synthetic_photo([1, 2])
    for retry, expected in ((True, 2), (False, 0)):
        s = Settings(gallery=tmp_path / "g", cache_dir=tmp_path / "c", retry_no_face=retry)
        path = FacePath(s, Models(s, detector=ShySearch(), embedder=tiny_embedder))
        tagged = path.locate([Photo(image, (image.shape[1], image.shape[0]))])[0]
        app = FaceRecognizer(s, detector=ShySearch(), embedder=tiny_embedder)
        shown = app.find_faces(app.read(png_bytes(image), "p.png"))
        assert len(tagged) == len(shown) == expected
        assert [f.box for f in tagged] == [f.box for f in shown]


@pytest.mark.weights
@pytest.mark.realdata
@pytest.mark.slow
@needs_shared
def test_every_face_of_the_group_photo_through_tag_and_the_same_in_the_app(tmp_path, monkeypatch, capsys):
    """opencv-course_group1.jpg (640x405, 25 faces of 24-30 px) through ``facerec tag``: all 25
    faces; the app's Identify path (``FaceRecognizer.identify_photo``) finds the same boxes."""
    from facerec import cli
    from facerec.pipeline import FaceRecognizer

    gallery = tmp_path / "gallery"
    (gallery / "madonna").mkdir(parents=True)
    for photo in sorted((CELEB5 / "train" / "madonna").iterdir())[:2]:
        (gallery / "madonna" / photo.name).write_bytes(photo.read_bytes())
    monkeypatch.setenv("FACEREC_GALLERY", str(gallery))
    report = tmp_path / "tags.json"
    assert cli.main(["tag", "--quiet", "--cache", str(tmp_path / "tags.sqlite"), "--report", str(report),
                     str(GROUP)]) == 0
    photos = json.loads(report.read_text())["photos"]
    tagged = sorted(tuple(round(v) for v in f["box"]) for f in photos[0]["faces"])
    assert len(tagged) == 25

    rec = FaceRecognizer(Settings(gallery=gallery))
    shown = sorted(tuple(round(v) for v in f.box) for f, _ in rec.identify_photo(rec.read(GROUP.read_bytes())))
    assert shown == tagged

    capsys.readouterr()
    assert cli.main(["identify", "--quiet", str(GROUP)]) == 0
    assert len([r for r in capsys.readouterr().out.splitlines() if r.startswith(str(GROUP))]) == 25
