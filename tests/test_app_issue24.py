"""More app problems of issue 24, each fixed with a test that failed before: an oversized photo's
reason shown on the page, Settings in plain words, no base offered whose weights cannot be had,
Live over plain http from another machine, the sign-in kept across reloads and the page asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
from apptest_nav import everything_shown, goto
from streamlit.testing.v1 import AppTest

from facerec.storage import GalleryFiles

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture
def gallery(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FACEREC_GALLERY", str(tmp_path / "g"))
    monkeypatch.setenv("FACEREC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "g"


def test_an_oversized_photo_on_enrol_says_why_on_the_page(gallery):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    goto(at, "Enrol")
    uploader = at.get("file_uploader")[0]
    # the browser's own refusal is a red icon with the reason in a tooltip: it must not be the one refusing
    assert uploader.proto.max_upload_size_mb > 27
    uploader.set_value([("holiday.jpg", b"\0" * (27 * 2**20), "image/jpeg")]).run()
    assert not at.exception
    errors = " | ".join(e.value for e in at.error)
    assert "holiday.jpg is 27 MB, larger than 20 MB" in errors and "it will not be saved" in errors


def test_settings_speak_plain_words(gallery, monkeypatch):
    from facerec import BACKBONES, weights

    monkeypatch.setattr(weights, "load_weights", lambda name, model, settings, allow_download=True: "test")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    goto(at, "Settings")
    for name in at.selectbox[0].options:
        at.selectbox[0].set_value(name).run()
        shown = everything_shown(at)
        for jargon in ("frozen", "192-d", "512-d", "128-d", "ArcFace template", "identity vectors", "embed",
                       "conv4", "LDA", "PCA"):
            assert jargon not in shown, (name, jargon)
        assert name in BACKBONES


def test_a_base_whose_weights_cannot_be_had_is_not_offered(gallery, tmp_path, monkeypatch):
    from facerec import Settings

    for name in ("BACKBONE", "WEIGHTS_VGG16"):
        monkeypatch.delenv(f"FACEREC_{name}", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # an empty Keras cache: vgg16 only by download
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    goto(at, "Settings")
    options = at.selectbox[0].options
    assert "vgg16" not in options
    assert {"mobilefacenet", "face-resnet", "resnet50", "arcface-mbf"} <= set(options)  # fetched by facerec itself
    assert Settings().backbone in options
    why = [c.value for c in at.caption if c.value.startswith("vgg16 is not offered")]
    assert why and "FACEREC_WEIGHTS_VGG16" in why[0]

    (tmp_path / "keras" / "models").mkdir(parents=True)  # once its file is in the Keras cache, it is offered
    (tmp_path / "keras" / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"h5")
    at.run()
    assert "vgg16" in at.selectbox[0].options


@pytest.mark.parametrize("url, blocked", [
    ("http://192.168.1.20:8501/live", True), ("http://faces.example.org/live", True),
    ("https://faces.example.org/live", False), ("http://localhost:8501/live", False),
    ("http://127.0.0.1:8501/", False), ("http://[::1]:8501/", False), ("http://app.localhost/", False),
    (None, False),
])
def test_which_addresses_the_browser_refuses_the_camera_on(url, blocked):
    from facerec.app.common import camera_blocked

    assert camera_blocked(url) is blocked


def test_live_over_plain_http_from_another_machine_says_it_needs_https(gallery, monkeypatch):
    import facerec.app.live as live

    monkeypatch.setattr(live, "browser_url", lambda: "http://192.168.1.20:8501/live")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    goto(at, "Live")
    assert not at.exception
    message = at.error[0].value
    assert "Live needs HTTPS" in message and "http://192.168.1.20:8501" in message and "https://" in message
    assert "Remote deployment" in message
    assert not at.get("camera_input")  # no camera (the browser would refuse it with its own error)

    monkeypatch.setattr(live, "browser_url", lambda: "http://localhost:8501/live")
    goto(at, "Live")
    assert not any("HTTPS" in e.value for e in at.error)


# -- the sign-in: kept across reloads, and the page asked for ---------------------------------

PASSWORD = "correct horse battery"


@pytest.fixture
def signed_gallery(gallery, monkeypatch):
    from streamlit import config as st_config

    from facerec import auth

    import numpy as np
    from conftest import png_bytes, synthetic_photo

    from facerec.gallery import Gallery

    Gallery(gallery).add_photo("Ann Lee", png_bytes(synthetic_photo([1])), (0, 0, 10, 10), np.ones(4, np.float32),
                               "m", ".png")
    auth.set_password(gallery, PASSWORD)
    old = st_config.get_option("server.address")
    st_config.set_option("server.address", "0.0.0.0")
    yield gallery
    st_config.set_option("server.address", old)


def sign_in(at: AppTest) -> AppTest:
    at.text_input[0].input(PASSWORD)
    return at.button[0].click().run()  # a form: typed and submitted at once


def test_after_signing_in_the_page_asked_for_is_shown(signed_gallery):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.header and at.text_input[0].label == "Admin password"
    goto(at, "Settings")  # the address asked for: /settings
    assert not at.header and at.text_input[0].label == "Admin password"  # still only the sign-in
    sign_in(at)
    assert not at.exception and at.header[0].value == "Settings"


def test_a_reload_or_a_new_tab_stays_signed_in_until_sign_out(signed_gallery):
    from facerec import auth

    at = sign_in(AppTest.from_file(APP, default_timeout=60).run())
    assert at.header[0].value == "People"
    token = at.query_params["session"]
    token = token if isinstance(token, str) else token[0]
    assert len(token) >= 40 and token not in signed_gallery.joinpath(".facerec", "signin_sessions.json").read_text()
    assert "&amp;session=" + token in everything_shown(at)  # the People grid's links keep it

    reloaded = AppTest.from_file(APP, default_timeout=60)  # a new browser session at the same address
    reloaded.query_params["session"] = token
    reloaded.run()
    assert not reloaded.exception and reloaded.header[0].value == "People"

    forged = AppTest.from_file(APP, default_timeout=60)
    forged.query_params["session"] = token[:-2] + "xx"
    forged.run()
    assert not forged.header and "session" not in forged.query_params

    [b for b in at.sidebar.button if b.label == "Sign out"][0].click().run()
    assert not at.header and "session" not in at.query_params
    after = AppTest.from_file(APP, default_timeout=60)
    after.query_params["session"] = token
    after.run()
    assert not after.header  # signed out everywhere

    token = auth.new_session(signed_gallery, auth.stored_hash(signed_gallery))
    auth.set_password(signed_gallery, PASSWORD + "!")  # a new password ends every session
    changed = AppTest.from_file(APP, default_timeout=60)
    changed.query_params["session"] = token
    changed.run()
    assert not changed.header


def test_a_session_id_expires(tmp_path):
    from facerec import auth

    token = auth.new_session(tmp_path, "$argon2id$x", now=1000.0)
    assert auth.session_valid(tmp_path, token, "$argon2id$x", now=1000.0 + auth.SESSION_TTL_S - 1)
    assert not auth.session_valid(tmp_path, token, "$argon2id$x", now=1000.0 + auth.SESSION_TTL_S + 1)
    assert oct(GalleryFiles(tmp_path).signin_sessions.stat().st_mode & 0o777) == "0o600"


def test_a_persons_page_flags_a_photo_unlike_their_others(tmp_path, monkeypatch, tiny_embedder):
    from conftest import BlobDetector, png_bytes, synthetic_photo

    from facerec import Settings
    from facerec.app import common
    from facerec.people import People
    from facerec.pipeline import FaceRecognizer

    monkeypatch.setenv("FACEREC_GALLERY", str(tmp_path / "g"))
    monkeypatch.setenv("FACEREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(common, "FaceRecognizer",
                        lambda settings: FaceRecognizer(settings, detector=BlobDetector(), embedder=tiny_embedder))
    people = People(FaceRecognizer(Settings(gallery=tmp_path / "g", cache_dir=tmp_path / "cache"),
                                   detector=BlobDetector(), embedder=tiny_embedder))
    for seed in range(3):
        people.enroll("Ann", png_bytes(synthetic_photo([1], seed=seed)), source=f"ann{seed}.png", confirm=True)
    people.enroll("Ann", png_bytes(synthetic_photo([9], seed=9)), source="party.png", confirm=True)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["person"] = "Ann"
    at.run()
    assert not at.exception, at.exception
    assert any("1 photo(s) marked ⚠ do not look like Ann's other photos" in w.value for w in at.warning)
    captions = [img.caption for el in at.get("image") for img in el.proto.imgs]
    flagged = [c for c in captions if "⚠" in c]
    assert len(captions) == 4 and len(flagged) == 1 and flagged[0].startswith("⚠ party.png: unlike the others (")
