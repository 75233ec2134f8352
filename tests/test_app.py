"""Smoke tests of app.py with Streamlit's AppTest (no browser, no models loaded)."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from facerec.gallery import Gallery

from apptest_nav import goto
from conftest import png_bytes, synthetic_photo

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEREC_GALLERY", str(tmp_path / "g"))
    monkeypatch.setenv("FACEREC_CACHE_DIR", str(tmp_path / "cache"))
    at = AppTest.from_file(APP, default_timeout=60)
    return at, tmp_path / "g"


PAGES = {"People": "", "Live": "live", "Identify": "identify", "Enrol": "enrol", "Who was here": "history",
         "Library": "library", "Tag photos": "tag", "Settings": "settings"}


def test_pages_render_without_errors(app):
    at, _ = app
    at.run()
    assert not at.exception and not at.error
    assert at.header[0].value == "People"  # the home page
    assert "Nobody is enrolled" in at.info[0].value
    for page in PAGES:
        goto(at, page)
        assert not at.exception and not at.error, page
        assert at.header[0].value == page


def test_every_page_has_its_own_url(app):
    at, _ = app
    at.run()
    urls = {info["page_name"]: info["url_pathname"] for info in at._registered_pages.values()}
    assert urls == PAGES  # People is the home page, at /


def test_config_trims_the_toolbar_and_sets_a_theme():
    import tomllib

    config = tomllib.loads((Path(APP).parent / ".streamlit" / "config.toml").read_text())
    assert config["client"]["toolbarMode"] == "viewer"
    assert config["theme"]["primaryColor"].startswith("#")
    assert config["server"]["address"] == "localhost"


def test_people_page_lists_and_forgets(app):
    at, root = app
    g = Gallery(root)
    g.add_photo("Ann Lee", png_bytes(synthetic_photo([1])), (30, 20, 48, 48), np.ones(4, np.float32), "m", ".png")
    g.add_photo("Ann Lee", b"not an image", (0, 0, 10, 10), np.ones(4, np.float32), "m", ".jpg")
    at.run()
    block = next(m.value for m in at.markdown if 'class="fr-grid"' in m.value)
    assert "<b>Ann Lee</b><small>2 photo(s)</small>" in block and 'href="?person=Ann%20Lee"' in block
    assert block.count("<img") == 1  # the face crop, cached on disk
    assert len(list((root.parent / "cache" / "thumbs").glob("*_face.jpg"))) == 1
    at.query_params["person"] = "Ann Lee"  # what a click on the face does
    at.run()
    assert "Ann Lee (2 photo(s))" in at.subheader[0].value
    assert "unreadable" in at.warning[0].value
    forget = [b for b in at.button if b.label == "Forget this person"][0]
    assert forget.disabled  # needs the confirmation first
    at.checkbox[0].check().run()
    [b for b in at.button if b.label == "Forget this person"][0].click().run()
    assert not (root / "Ann Lee").exists() and [p.name for p in g.people()] == []
    assert "Forgot Ann Lee" in at.success[0].value and "Nobody is enrolled" in at.info[0].value


def test_settings_persist(app):
    at, root = app
    at.run()
    goto(at, "Settings")
    at.selectbox[0].set_value("resnet50").run()
    at.slider[0].set_value(0.7).run()
    [b for b in at.button if b.label == "Save settings"][0].click().run()
    saved = json.loads((root / ".facerec" / "settings.json").read_text())
    assert saved["backbone"] == "resnet50" and saved["threshold"] == 0.7
    assert "Saved" in at.success[0].value
    assert "base: resnet50" in at.sidebar.caption[0].value


def test_live_page_falls_back_to_snapshots_without_webrtc(app):
    at, _ = app
    goto(at, "Live")  # AppTest has no WebRTC runtime: the page must say so and offer a snapshot
    assert not at.exception and not at.error
    assert at.header[0].value == "Live"
    assert "snapshots instead" in at.warning[0].value
    assert len(at.camera_input) == 1


def _zip(entries: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("upload, message", [
    (_zip({"ok.png": b"x", "../../escape.png": b"evil"}), "would leave its folder"),
    (b"PK not really a zip", "not a zip archive"),
])
def test_tag_page_refuses_bad_zips(app, tmp_path, upload, message):
    at, _ = app
    at.run()
    goto(at, "Tag photos")
    at.radio[0].set_value("an uploaded zip").run()
    at.get("file_uploader")[0].upload("photos.zip", upload, "application/zip").run()
    [b for b in at.button if b.label == "Tag photos"][0].click().run()
    assert not at.exception
    assert message in at.error[0].value
    # the zip is unpacked into a fresh folder under the temp dir: "../../" from there is the temp dir's parent
    tmp = Path(tempfile.gettempdir())
    assert not list(tmp_path.rglob("escape.png")) and not (tmp / "escape.png").exists()
    assert not (tmp.parent / "escape.png").exists()


def test_tag_page_missing_folder_is_a_message(app, tmp_path):
    at, _ = app
    at.run()
    goto(at, "Tag photos")
    at.text_input[0].input(str(tmp_path / "nope")).run()
    [b for b in at.button if b.label == "Tag photos"][0].click().run()
    assert not at.exception and "no such folder" in at.error[0].value


def test_enrol_page_flags_a_file_that_is_not_an_image(app):
    at, root = app
    at.run()
    goto(at, "Enrol")
    at.text_input[0].input("Ann").run()
    at.get("file_uploader")[0].upload("notes.png", b"this is text", "image/png").run()
    assert not at.exception
    assert "not be saved" in at.error[0].value
    assert Gallery(root).people() == []


def test_two_tabs_enrolling_at_once_lose_nothing(recognizer):
    """Two threads (two browser tabs) enrol photos through one recogniser at the same time."""
    import threading

    errors = []

    def enrol(name, person, seeds):
        try:
            for seed in seeds:
                recognizer.enroll(name, png_bytes(synthetic_photo([person], seed=seed)), source=f"{seed}.png")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=enrol, args=("Ann", 1, range(0, 6))),
               threading.Thread(target=enrol, args=("Bob", 2, range(10, 16))),
               threading.Thread(target=enrol, args=("Ann", 1, range(20, 26)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    g = recognizer.gallery
    assert {p.name: p.photos for p in g.people()} == {"Ann": 12, "Bob": 6}
    X, names, missing = g.vectors(recognizer.embedder.key)
    assert len(X) == 18 and missing == []
    assert all(r.path.is_file() for r in g.photos())


@pytest.mark.weights
@pytest.mark.realdata
@pytest.mark.slow
def test_tag_page_tags_an_uploaded_zip(app):
    from conftest import SHARED

    if not (SHARED / "videos").is_dir():
        pytest.skip("../shared/faces is absent")
    from test_browser import CLIPS, KNOWN_CLIP, STRANGER_CLIP, clip_frames
    import cv2

    from facerec import FaceRecognizer, Settings

    at, root = app
    known = clip_frames(CLIPS / KNOWN_CLIP, count=3, step=20)
    FaceRecognizer(Settings(gallery=root)).enroll("Kim", cv2.imencode(".png", known[0])[1].tobytes(), "k.png")
    jpg = lambda f: cv2.imencode(".jpg", f)[1].tobytes()  # noqa: E731
    photos = {"trip/kim.jpg": jpg(known[2]), "stranger.jpg": jpg(clip_frames(CLIPS / STRANGER_CLIP, count=1)[0])}
    upload = _zip({**photos, "notes.txt": b"skipped: not a photo"})
    import sqlite3

    from facerec.storage import content_hash

    cache_file, shas = Settings.from_env().cache_dir / "tags.sqlite", [content_hash(d) for d in photos.values()]
    if cache_file.exists():  # this test's photos (the same bytes every run) start uncached
        with sqlite3.connect(cache_file) as con:
            con.executemany("DELETE FROM photos WHERE sha = ?", [(h,) for h in shas])
    at.run()
    goto(at, "Tag photos")
    at.radio[0].set_value("an uploaded zip").run()
    at.get("file_uploader")[0].upload("photos.zip", upload, "application/zip").run()
    [b for b in at.button if b.label == "Tag photos"][0].click().run(timeout=180)
    assert not at.exception and not at.error
    rows = at.dataframe[0].value
    assert sorted(zip(rows["photo"], rows["name"])) == [("stranger.jpg", "unknown"), ("trip/kim.jpg", "Kim")]
    assert all(str(u).startswith("data:image/png;base64,") for u in rows["face"])
    # the same tag cache as `facerec tag` now holds both photos; tagging again, faces from the cache get thumbnails
    with sqlite3.connect(cache_file) as con:
        stored = {r[0] for r in con.execute("SELECT sha FROM photos")}
    assert set(shas) <= stored
    [b for b in at.button if b.label == "Tag photos"][0].click().run(timeout=180)
    again = at.dataframe[0].value
    assert list(again["name"]) == list(rows["name"]) and list(again["photo"]) == list(rows["photo"])
    assert all(str(u).startswith("data:image/png;base64,") for u in again["face"])


@pytest.mark.parametrize("bad", ["../escape", "a/b", ".hidden", "unknown"])
def test_enrol_page_refuses_names_that_could_escape_the_gallery(app, bad):
    at, root = app
    at.run()
    goto(at, "Enrol")
    at.text_input[0].input(bad).run()
    assert not at.exception and "cannot be used" in at.error[0].value
    assert not any(root.parent.rglob("escape")) and Gallery(root).people() == []
