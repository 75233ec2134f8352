"""Smoke tests of app.py with Streamlit's AppTest (no browser, no models loaded)."""

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from facerec.gallery import Gallery

from conftest import png_bytes, synthetic_photo

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEREC_GALLERY", str(tmp_path / "g"))
    at = AppTest.from_file(APP, default_timeout=60)
    return at, tmp_path / "g"


def test_pages_render_without_errors(app):
    at, _ = app
    at.run()
    assert not at.exception and not at.error
    assert at.header[0].value == "Identify"
    for page in ["Enrol", "People", "Settings"]:
        at.sidebar.radio[0].set_value(page).run()
        assert not at.exception and not at.error, page
        assert at.header[0].value == page
    at.sidebar.radio[0].set_value("People").run()
    assert "Nobody is enrolled" in at.info[0].value


def test_people_page_lists_and_forgets(app):
    at, root = app
    g = Gallery(root)
    g.add_photo("Ann Lee", png_bytes(synthetic_photo([1])), (0, 0, 10, 10), np.ones(4, np.float32), "m", ".png")
    g.add_photo("Ann Lee", b"not an image", (0, 0, 10, 10), np.ones(4, np.float32), "m", ".jpg")
    at.run()
    at.sidebar.radio[0].set_value("People").run()
    assert "Ann Lee (2 photo(s))" in at.expander[0].label
    assert "unreadable" in at.warning[0].value
    forget = [b for b in at.button if b.label == "Forget this person"][0]
    assert forget.disabled  # needs the confirmation first
    at.checkbox[0].check().run()
    [b for b in at.button if b.label == "Forget this person"][0].click().run()
    assert not (root / "Ann Lee").exists() and [p.name for p in g.people()] == []


def test_settings_persist(app):
    at, root = app
    at.run()
    at.sidebar.radio[0].set_value("Settings").run()
    at.selectbox[0].set_value("resnet50").run()
    at.slider[0].set_value(0.7).run()
    [b for b in at.button if b.label == "Save settings"][0].click().run()
    saved = json.loads((root / ".facerec" / "app_settings.json").read_text())
    assert saved["backbone"] == "resnet50" and saved["threshold"] == 0.7
    assert "base: resnet50" in at.sidebar.caption[0].value
