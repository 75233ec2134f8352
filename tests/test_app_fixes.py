"""Smaller app problems of issue 24, each fixed with a test that failed before: Identify with nobody
enrolled, faces numbered left to right, why Enrol's Save is greyed out, how to allow a photo folder,
labels of neighbouring faces that covered each other."""

from __future__ import annotations

from pathlib import Path

import pytest
from apptest_nav import everything_shown, goto
from streamlit.testing.v1 import AppTest

from facerec.types import Face, Match

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_identify_with_nobody_enrolled_points_to_the_enrol_page_not_a_cli_command(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEREC_GALLERY", str(tmp_path / "g"))
    monkeypatch.setenv("FACEREC_CACHE_DIR", str(tmp_path / "cache"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    goto(at, "Identify")
    assert not at.exception and not at.error
    assert "Enrol page" in at.info[0].value
    assert "facerec enroll" not in everything_shown(at)
    assert not at.get("file_uploader")  # nothing to identify against: no uploader yet


def test_identify_numbers_faces_left_to_right():
    from facerec.app.identify import left_to_right

    faces = [(Face((300, 10, 40, 40), 0.99), Match("C", 0.9)), (Face((10, 50, 40, 40), 0.95), Match("A", 0.9)),
             (Face((150, 5, 40, 40), 0.9), Match("B", 0.9))]
    assert [m.name for _, m in left_to_right(faces)] == ["A", "B", "C"]


def test_enrol_says_why_save_is_greyed_out():
    from facerec.app.enrol import save_blocked

    assert "type the person's name" in save_blocked(2, None, False)
    assert "cannot be mistaken" in save_blocked(2, "Ann", False)
    assert "save it anyway" in save_blocked(0, "Ann", True, waiting=1)
    assert "none of these photos" in save_blocked(0, "Ann", True)
    assert save_blocked(1, "Ann", True) is None


def test_a_folder_outside_the_photo_roots_says_how_to_allow_one(tmp_path):
    from facerec import auth
    from facerec.errors import FaceRecError

    (tmp_path / "inside").mkdir()
    with pytest.raises(FaceRecError, match="FACEREC_PHOTO_ROOTS"):
        auth.allowed_folder("/etc", [tmp_path / "inside"])


def test_labels_of_neighbouring_faces_do_not_cover_each_other():
    from facerec.draw import label_boxes

    items = [((40, 60, 30, 30), "Alexandra Longname", True), ((75, 60, 30, 30), "Bartholomew Other", False),
             ((110, 62, 30, 30), "unknown", False)]
    rects = label_boxes(items, 400, 300)
    for i in range(len(rects)):
        for j in range(i + 1, len(rects)):
            (ax, ay, aw, ah), (bx, by, bw, bh) = rects[i], rects[j]
            assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay, (rects[i], rects[j])
    assert all(0 <= x and 0 <= y and x + w <= 400 and y + h <= 300 for x, y, w, h in rects)


def test_the_sign_in_screen_points_to_a_readme_section_that_exists():
    import re

    from facerec.app.signin import CONFIGURE_HELP

    readme = (Path(APP).parent / "README.md").read_text()
    section, paragraph = re.search(r'section "([^"]+)", paragraph "([^"]+)"', CONFIGURE_HELP).groups()
    assert f"\n## {section}\n" in readme and f"**{paragraph}.**" in readme
