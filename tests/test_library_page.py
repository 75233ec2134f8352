"""The Library page (AppTest, fake detector and tiny embedder; no model downloaded): a folder added
within the photo roots, scanned in the background, a group named once, a wrong face taken out,
photos found by name; and its drawing helpers without Streamlit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from apptest_nav import goto
from conftest import BlobDetector, png_bytes, synthetic_photo
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture
def app(tmp_path, monkeypatch, tiny_embedder):
    from facerec.app import common

    monkeypatch.setenv("FACEREC_GALLERY", str(tmp_path / "g"))
    monkeypatch.setenv("FACEREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FACEREC_PHOTO_ROOTS", str(tmp_path / "roots"))
    real = common.FaceRecognizer
    monkeypatch.setattr(common, "FaceRecognizer",
                        lambda settings: real(settings, detector=BlobDetector(), embedder=tiny_embedder))
    d = tmp_path / "roots" / "party"
    d.mkdir(parents=True)
    for i in range(3):
        (d / f"cleo{i}.png").write_bytes(png_bytes(synthetic_photo([9], seed=10 + i)))
    (d / "dan.png").write_bytes(png_bytes(synthetic_photo([7], seed=20)))
    (tmp_path / "elsewhere").mkdir()
    return AppTest.from_file(APP, default_timeout=60), d, tmp_path


def _scan_finished(at, gallery: Path) -> None:
    from facerec.app.library import SCANS

    scan = SCANS[str(gallery)]
    assert scan.wait(60), "the library scan did not finish"
    assert scan.error is None, scan.error


def _button(at, label: str):
    return next(b for b in at.button if b.label == label)


def _open_scanned_library(at, folder: Path, tmp: Path) -> None:
    """The Library page with ``folder`` added and its scan finished."""
    at.run()
    goto(at, "Library")
    at.text_input(key="library_folder").set_value(str(folder)).run()
    _button(at, "Add folder").click().run()
    _scan_finished(at, tmp / "g")
    at.run()


def test_library_page_add_scan_name_reject_and_find_photos(app):
    at, folder, tmp = app
    at.run()
    goto(at, "Library")
    assert not at.exception and at.header[0].value == "Library"
    at.text_input(key="library_folder").set_value(str(tmp / "elsewhere")).run()
    _button(at, "Add folder").click().run()
    assert "FACEREC_PHOTO_ROOTS" in at.error[0].value  # says how to allow a folder
    at.text_input(key="library_folder").set_value(str(folder)).run()
    _button(at, "Add folder").click().run()
    _scan_finished(at, tmp / "g")
    at.run()
    assert not at.exception, at.exception
    assert any("Group 1" in m.value and "3 face(s)" in m.value for m in at.markdown)
    name_box = next(t for t in at.text_input if t.key.startswith("gname_"))
    name_box.set_value("Cleo").run()
    _button(at, "Name them").click().run()
    assert not at.exception, at.exception
    assert any("Named 3 face(s) Cleo" in s.value for s in at.success)
    at.radio(key="library_view").set_value("People").run()
    at.selectbox(key="library_person").set_value("Cleo").run()
    not_cleo = [b for b in at.button if b.label == "Not Cleo"]
    assert len(not_cleo) == 3
    not_cleo[-1].click().run()
    assert any("not cleo" in s.value for s in at.success)
    at.radio(key="library_view").set_value("Photos by people").run()
    at.multiselect(key="library_with").set_value(["Cleo"]).run()
    assert any("2 photo(s) with Cleo" in c.value for c in at.caption)
    _button(at, "Rescan").click().run()
    _scan_finished(at, tmp / "g")
    at.run()
    at.multiselect(key="library_with").set_value(["Cleo"]).run()
    assert any("2 photo(s) with Cleo" in c.value for c in at.caption)  # the rejection is kept
    assert not at.exception


def test_scan_status_and_face_grid_without_streamlit(tmp_path):
    from facerec.app.library import face_grid_html, scan_status
    from facerec.library import BackgroundScan, ScanReport

    scan = BackgroundScan(lambda: None)
    assert scan_status(scan) is None
    scan.report = ScanReport(photos=10, processed=7, cached=2, unchanged=1, failed=(("x.jpg", "truncated"),))
    assert scan_status(scan) == ("Library scanned: 10 photo(s), 7 tagged, 2 from the cache, 1 unchanged, 0 gone; "
                                 "1 could not be read.")
    pic = tmp_path / "f.jpg"
    pic.write_bytes(b"\xff\xd8jpeg")
    block = face_grid_html([pic, None, pic], more=5)
    assert block.count("<img") == 2 and "+5 more" in block


def test_labelled_photo_numbers_faces_left_to_right(recognizer, tmp_path):
    from facerec.app.library import labelled_photo
    from facerec.library import Library

    recognizer.enroll("Ann", png_bytes(synthetic_photo([1], seed=0)), source="ann.png")
    d = tmp_path / "p"
    d.mkdir()
    (d / "two.png").write_bytes(png_bytes(synthetic_photo([9, 1], seed=3)))
    library = Library(recognizer)
    library.add_folder(d, [tmp_path])
    library.scan()
    faces = library.photo_faces(d / "two.png")
    assert [f.name for f in faces] == ["unknown", "Ann"] and faces[0].box[0] < faces[1].box[0]
    image = labelled_photo(library, d / "two.png")
    assert image.shape[:2] == (88, 186) and not np.array_equal(image, synthetic_photo([9, 1], seed=3))
    library.close()


def test_library_page_merges_groups_takes_a_face_out_hides_a_group_and_writes_sidecars(app):
    at, folder, tmp = app
    _open_scanned_library(at, folder, tmp)

    def sizes() -> list[str]:
        return [m.value.split("· ")[1] for m in at.markdown if m.value.startswith("**Group ")]

    assert sizes() == ["3 face(s)", "1 face(s)"]
    for box in at.checkbox:
        if box.key.startswith("gpick_"):
            box.check()
    at.run()
    _button(at, "Merge the 2 ticked groups").click().run()
    assert not at.exception and sizes() == ["4 face(s)"]
    _button(at, "Someone else among them?").click().run()
    out = [b for b in at.button if b.label == "Not in this group"]
    assert len(out) == 4
    out[-1].click().run()
    assert sizes() == ["3 face(s)", "1 face(s)"]
    [b for b in at.button if b.label == "Hide"][1].click().run()
    assert sizes() == ["3 face(s)"]
    at.toggle(key="library_hidden").set_value(True).run()
    assert sizes() == ["1 face(s)"]
    at.toggle(key="library_hidden").set_value(False).run()
    next(t for t in at.text_input if t.key.startswith("gname_")).set_value("Cleo").run()
    _button(at, "Name them").click().run()
    _button(at, "Write sidecars").click().run()
    assert not at.exception, at.exception
    assert any("3 sidecar(s) written" in s.value for s in at.success), [s.value for s in at.success]
    assert sorted(p.name for p in folder.glob("*.xmp")) == ["cleo0.png.xmp", "cleo1.png.xmp", "cleo2.png.xmp"]


def test_two_unknown_people_photographed_together_both_get_their_group(app):
    """Both groups begin in one photo: their widgets must not share keys (the page crashed)."""
    at, folder, tmp = app
    (folder / "pair.png").write_bytes(png_bytes(synthetic_photo([5, 6], seed=30)))
    _open_scanned_library(at, folder, tmp)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len([t for t in at.text_input if t.key.startswith("gname_")]) == 4


def test_the_page_shows_the_biggest_groups_first_and_more_on_demand(app, monkeypatch):
    from facerec.app import library as page

    monkeypatch.setattr(page, "GROUPS_SHOWN", 1)
    at, folder, tmp = app
    _open_scanned_library(at, folder, tmp)
    cards = [m.value for m in at.markdown if m.value.startswith("**Group ")]
    assert cards == ["**Group 1** · 3 face(s)"]
    _button(at, "Show more groups (1 more)").click().run()
    assert [m.value for m in at.markdown if m.value.startswith("**Group ")][1] == "**Group 2** · 1 face(s)"


def test_a_suggestion_under_the_threshold_is_marked_less_likely():
    from facerec.app.library import suggestion_caption
    from facerec.library import LibraryFace, Suggestion

    def face(kind: str) -> LibraryFace:
        return LibraryFace(Path("a.jpg"), "sha", 0, (0, 0, 10, 10), "unknown", kind, 0.4, "Ann")

    assert suggestion_caption(Suggestion(face("possible match"), "Ann", 0.51)) == "0.51"
    assert suggestion_caption(Suggestion(face("unknown"), "Ann", 0.44)) == "0.44 · less likely"
