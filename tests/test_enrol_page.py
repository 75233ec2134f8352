"""The Enrol and Identify pages catch mistakes and speak in verdicts (AppTest, stand-in models:
the blob detector and the tiny embedder, on which two photos of one synthetic person score
~0.99 and two people ~0.5, against a threshold of 0.8)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from apptest_nav import goto
from conftest import BlobDetector, png_bytes, synthetic_photo
from facerec.gallery import Gallery

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PNG = "image/png"


@pytest.fixture
def app(tmp_path, monkeypatch, tiny_embedder):
    import facerec.facepath as pipeline  # where the models are built

    monkeypatch.setenv("FACEREC_GALLERY", str(tmp_path / "g"))
    monkeypatch.setenv("FACEREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(pipeline, "make_detector", lambda settings: BlobDetector())
    monkeypatch.setattr(pipeline, "load_embedder", lambda settings: tiny_embedder)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    return at, tmp_path / "g"


def photo(people, seed=0) -> bytes:
    return png_bytes(synthetic_photo(people, seed=seed))


def enrol(at, name: str, files: list[tuple[str, bytes]]):
    goto(at, "Enrol")
    at.text_input[0].input(name).run()
    at.get("file_uploader")[0].set_value([(n, d, PNG) for n, d in files]).run()
    return at


def save_button(at):
    return [b for b in at.button if b.label.startswith("Save ")][0]


def texts(elements) -> str:
    return " | ".join(e.value for e in elements)


def test_save_clears_the_uploader_and_batch_duplicates_are_saved_once(app):
    at, root = app
    same = photo([1], seed=1)
    enrol(at, "Ann Lee", [("a.png", same), ("b.png", photo([1], seed=2)), ("a copy.png", same)])
    assert "the same photo as a.png" in texts(at.warning)
    assert save_button(at).label == "Save 2 photo(s)"
    save_button(at).click().run()
    assert not at.exception
    assert at.success[0].value == "Saved 2 photo(s) of Ann Lee."
    assert {p.name: p.photos for p in Gallery(root).people()} == {"Ann Lee": 2}
    # ready for the next person: empty name, empty uploader, no Save button
    assert at.text_input[0].value == "" and not [b for b in at.button if b.label.startswith("Save ")]
    assert not at.get("file_uploader")[0].value


def test_camera_only_when_asked(app):
    at, _ = app
    goto(at, "Enrol")
    assert len(at.camera_input) == 0
    at.toggle[0].set_value(True).run()
    assert len(at.camera_input) == 1
    goto(at, "Identify")  # nobody enrolled: it says so, and offers no camera
    assert "Nobody is enrolled yet" in at.info[0].value and len(at.camera_input) == 0


def test_a_photo_of_someone_else_needs_confirmation(app):
    at, root = app
    enrol(at, "Ann Lee", [("ann.png", photo([1], seed=1))])
    save_button(at).click().run()
    enrol(at, "Madonna", [("ben.png", photo([1], seed=5))])  # Ann's face, typed as Madonna
    assert re.search(r"looks like Ann Lee \((0\.9\d|1\.00)\), not Madonna", texts(at.warning))
    assert save_button(at).label == "Save 0 photo(s)" and save_button(at).disabled
    at.checkbox[0].check().run()
    assert save_button(at).label == "Save 1 photo(s)" and not save_button(at).disabled
    save_button(at).click().run()
    assert {p.name: p.photos for p in Gallery(root).people()} == {"Ann Lee": 1, "Madonna": 1}


def test_the_wrong_face_of_a_group_photo_is_caught(app):
    at, root = app
    enrol(at, "Bob", [("bob.png", photo([2], seed=1))])
    save_button(at).click().run()
    enrol(at, "Bob", [("group.png", photo([1, 2], seed=3))])
    assert "2 faces" in at.radio[0].label
    at.radio[0].set_value("face 2").run()  # the blob detector sorts by area: equal, so by position
    first = texts(at.warning)
    at.radio[0].set_value("face 1").run()
    second = texts(at.warning)
    assert ("does not look like Bob's other photos" in first) != ("does not look like Bob's other photos" in second)


def test_the_same_photo_for_another_person_is_caught(app):
    at, _ = app
    ann = photo([1], seed=1)
    enrol(at, "Ann Lee", [("ann.png", ann)])
    save_button(at).click().run()
    enrol(at, "Carol", [("ann again.png", ann)])
    assert "already enrolled for Ann Lee" in texts(at.warning)
    assert save_button(at).disabled


def test_a_name_differing_only_in_case_or_accents_offers_the_existing_person(app):
    at, root = app
    enrol(at, "Zoë Martin", [("z1.png", photo([3], seed=1))])
    save_button(at).click().run()
    enrol(at, "zoe  martin", [("z2.png", photo([3], seed=2))])
    assert "Zoë Martin is already enrolled" in at.radio[0].label
    assert at.radio[0].value.startswith("Yes, add these photos to Zoë Martin")
    save_button(at).click().run()
    assert at.success[0].value == "Saved 1 photo(s) of Zoë Martin."
    assert {p.name: p.photos for p in Gallery(root).people()} == {"Zoë Martin": 2}


def test_identify_gives_verdicts_not_raw_scores(app):
    at, _ = app
    enrol(at, "Ann Lee", [("ann.png", photo([1], seed=1))])
    save_button(at).click().run()
    goto(at, "Identify")
    at.get("file_uploader")[0].set_value(("two.png", photo([1, 3], seed=4), PNG)).run()
    assert not at.exception and not at.error
    lines = [m.value for m in at.markdown if m.value.startswith("**")]
    assert sorted(lines) == ["**1. Ann Lee — match**", "**2. unknown**"] or \
        sorted(lines) == ["**1. unknown**", "**2. Ann Lee — match**"]
    details = texts(at.caption)
    assert "closest similarity" in details and "below the threshold 0.800" in details
    assert "box [" not in details and "0.36" not in texts(at.markdown)  # no raw boxes, a stranger's score only in small type


def test_a_blurred_photo_waits_for_confirmation(app):
    """A poor photo for recognition (here blurred as by a shaky hand) is saved only once confirmed;
    a sharp one of the same person is not held back."""
    import cv2

    at, root = app
    blurred = synthetic_photo([1], seed=1).copy()
    face = blurred[20:68, 30:78]  # where synthetic_photo puts the face
    blurred[20:68, 30:78] = cv2.GaussianBlur(face, (0, 0), 6)
    enrol(at, "Ann Lee", [("sharp.png", photo([1], seed=2)), ("shaky.png", png_bytes(blurred))])
    warnings = texts(at.warning)
    assert "shaky.png: A poor photo for recognition (blurred)" in warnings and "sharp.png" not in warnings
    assert save_button(at).label == "Save 1 photo(s)"
    [c for c in at.checkbox if c.label.startswith("Yes, this is Ann Lee")][0].check().run()
    assert save_button(at).label == "Save 2 photo(s)"
    save_button(at).click().run()
    assert {p.name: p.photos for p in Gallery(root).people()} == {"Ann Lee": 2}
