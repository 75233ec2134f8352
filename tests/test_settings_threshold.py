"""The recognition threshold belongs to a base and head (issue 12, item 4)."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from facerec.classify import threshold_range
from facerec.embed import calibrated_threshold
from facerec.errors import ConfigError
from facerec.settings import (CALIBRATED, Settings, save_choices, saved_thresholds, threshold_key,
                              with_threshold)

APP = str(Path(__file__).resolve().parents[1] / "app.py")
FACE_RESNET = calibrated_threshold(Settings(backbone="face-resnet"))
RESNET50 = calibrated_threshold(Settings(backbone="resnet50"))


def test_switching_base_never_carries_the_threshold():
    s = Settings(backbone="face-resnet", threshold=0.94)
    assert s.replace(backbone="resnet50").threshold is None  # resnet50's calibrated one, not 0.94
    assert s.replace(backbone="face-resnet").threshold == 0.94  # same base: kept
    assert s.replace(backbone="resnet50", threshold=0.4).threshold == 0.4  # given with the switch
    assert s.replace(head=Path("/my/head")).threshold is None  # another head, another scale
    assert s.replace(detector="opencv").threshold == 0.94


def test_calibrated_is_a_settings_value():
    assert Settings(threshold=0.5).replace(threshold=CALIBRATED).threshold is None
    assert Settings.from_env({"FACEREC_THRESHOLD": "calibrated"}).threshold is None
    assert Settings.from_env({"FACEREC_THRESHOLD": "0.25"}).threshold == 0.25
    for bad in ("nan", "high", "1.5", "-0.1"):
        with pytest.raises(ConfigError):
            Settings.from_env({"FACEREC_THRESHOLD": bad})


def test_saved_thresholds_are_per_base():
    doc = with_threshold({}, "face-resnet", 0.95, backbone="face-resnet", detector="mtcnn")
    doc = with_threshold(doc, "resnet50", None, backbone="resnet50")
    assert doc["thresholds"] == {"face-resnet": 0.95, "resnet50": CALIBRATED}
    assert doc["threshold"] == CALIBRATED and doc["detector"] == "mtcnn"  # the saved base's own
    assert saved_thresholds(json.loads(json.dumps(doc))) == {"face-resnet": 0.95, "resnet50": None}
    assert saved_thresholds({"backbone": "resnet50", "threshold": 0.4}) == {"resnet50": 0.4}  # facerec 0.4's file
    assert saved_thresholds({"thresholds": {"resnet50": "x", "vgg16": 7}}) == {}
    assert threshold_key("resnet50", Path("/h/x")) == "resnet50+/h/x" and threshold_key("resnet50") == "resnet50"


def test_threshold_range_fits_the_base():
    lo, hi = threshold_range(FACE_RESNET)
    assert lo <= 0.90 and hi >= 0.985  # face-resnet's measured 1st-99th percentiles (strangers, enrolled)
    assert not lo <= RESNET50 <= hi
    lo, hi = threshold_range(RESNET50)
    assert lo <= 0.34 and hi >= 0.84  # resnet50 + its distilled head's measured 1st-99th percentiles
    assert lo < RESNET50 < hi
    assert threshold_range(0.0)[0] == 0.0 and threshold_range(1.0)[1] == 1.0


def open_settings(at: AppTest) -> AppTest:
    """Run the app and open its Settings page."""
    try:
        from apptest_nav import goto
    except ImportError:  # the app before it had one URL per page
        at.run()
        return at.sidebar.radio[0].set_value("Settings").run()
    return goto(at, "Settings")


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The app on an empty gallery, with weight loading that always works (no model is loaded)."""
    from facerec import weights

    monkeypatch.setenv("FACEREC_GALLERY", str(tmp_path / "g"))
    monkeypatch.setenv("FACEREC_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("THRESHOLD", "BACKBONE", "DETECTOR"):
        monkeypatch.delenv(f"FACEREC_{name}", raising=False)  # they would override the saved choices
    save_choices(tmp_path / "g", {"backbone": "face-resnet"})  # face-resnet against resnet50: far-apart scales
    monkeypatch.setattr(weights, "load_weights", lambda name, model, settings, allow_download=True: "test")
    at = open_settings(AppTest.from_file(APP, default_timeout=120))
    return at, tmp_path / "g" / ".facerec" / "settings.json"


def click(at, label: str):
    [b for b in at.button if b.label.startswith(label)][0].click().run()


def test_each_base_keeps_its_own_threshold_in_the_app(app):
    at, saved = app
    assert at.slider[0].value == pytest.approx(FACE_RESNET)
    assert (at.slider[0].min, at.slider[0].max) == pytest.approx(threshold_range(FACE_RESNET), abs=0.006)
    at.slider[0].set_value(0.96).run()
    click(at, "Save settings")
    assert not at.error and json.loads(saved.read_text())["thresholds"] == {"face-resnet": 0.96}

    at.selectbox[0].set_value("resnet50").run()  # shows resnet50's own threshold, not 0.96
    assert at.slider[0].value == pytest.approx(RESNET50)
    assert at.slider[0].min < RESNET50 < at.slider[0].max
    click(at, "Save settings")
    doc = json.loads(saved.read_text())
    assert doc["backbone"] == "resnet50" and doc["threshold"] == CALIBRATED
    assert doc["thresholds"] == {"face-resnet": 0.96, "resnet50": CALIBRATED}
    assert "base: resnet50" in at.sidebar.caption[0].value

    at.selectbox[0].set_value("face-resnet").run()  # back: its own number again
    assert at.slider[0].value == pytest.approx(0.96)


def test_calibrated_is_one_click_away(app):
    at, saved = app
    at.slider[0].set_value(0.9).run()
    click(at, "Save settings")
    assert json.loads(saved.read_text())["threshold"] == 0.9
    click(at, "Use the calibrated threshold")
    doc = json.loads(saved.read_text())
    assert doc["threshold"] == CALIBRATED and doc["thresholds"]["face-resnet"] == CALIBRATED
    assert at.slider[0].value == pytest.approx(FACE_RESNET)
    assert any(f"calibrated value for this base and 0 people: {FACE_RESNET:.3f}, in use)" in c.value
               for c in at.caption)  # nobody enrolled: the fixed calibration


def test_base_without_weights_is_not_saved(tmp_path, monkeypatch):
    """Real weight loading: vgg16's configured file does not fit, so the choice is refused
    with one sentence on what to do, and nothing is written (a missing file: vgg16 is not offered,
    tests/test_app_issue24.py)."""
    monkeypatch.setenv("FACEREC_GALLERY", str(tmp_path / "g"))
    monkeypatch.setenv("FACEREC_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "bad.h5").write_bytes(b"not weights")
    monkeypatch.setenv("FACEREC_WEIGHTS_VGG16", str(tmp_path / "bad.h5"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    at = open_settings(AppTest.from_file(APP, default_timeout=120))
    at.selectbox[0].set_value("vgg16").run()
    click(at, "Save settings")
    assert not (tmp_path / "g" / ".facerec" / "settings.json").exists()
    message = at.error[0].value
    assert message.startswith("Not saved: the weights of vgg16 cannot be loaded here; to use it, ")
    assert "FACEREC_WEIGHTS_VGG16" in message and "\n" not in message and message.count(". ") == 0
    assert f"base: {Settings().backbone}" in at.sidebar.caption[0].value  # the base in use is unchanged


def test_cli_threshold_takes_calibrated_over_the_environment(monkeypatch, capsys):
    """``--threshold calibrated`` restores the calibrated value even when FACEREC_THRESHOLD sets
    a number; a value outside [0, 1] is a one-line usage error."""
    from facerec import cli

    monkeypatch.setenv("FACEREC_THRESHOLD", "0.5")
    args = cli.build_parser().parse_args(["identify", "x.jpg", "--threshold", "calibrated"])
    assert cli._settings(args).threshold is None
    args = cli.build_parser().parse_args(["identify", "x.jpg"])
    assert cli._settings(args).threshold == 0.5
    with pytest.raises(SystemExit):
        cli.main(["identify", "x.jpg", "--threshold", "2"])
    assert "threshold" in capsys.readouterr().err


def test_replace_with_threshold_none_is_the_calibrated_one():
    """``replace(threshold=None)`` asks for the calibrated threshold; it was ignored, so the
    Settings page called a saved number "calibrated"."""
    s = Settings(backbone="face-resnet", threshold=0.52)
    assert s.replace(threshold=None).threshold is None
    assert s.replace(backbone="face-resnet", threshold=None).threshold is None
    assert s.replace(detector="opencv").threshold == 0.52  # other None-free changes keep it
    assert s.replace(backbone=None, head=None).threshold == 0.52  # None for other fields: still "unchanged"


def test_the_calibrated_value_stays_the_calibrated_one_after_a_save(app):
    """Saved 0.96: the page still names the base's calibrated value (not 0.96) as calibrated, its
    button offers that value, and one click restores it."""
    at, saved = app
    at.slider[0].set_value(0.96).run()
    click(at, "Save settings")
    assert json.loads(saved.read_text())["thresholds"] == {"face-resnet": 0.96}
    assert at.slider[0].value == pytest.approx(0.96)
    assert any(f"calibrated value for this base and 0 people: {FACE_RESNET:.3f}, in use: 0.960" in c.value
               for c in at.caption), [c.value for c in at.caption]
    [button] = [b for b in at.button if b.label.startswith("Use the calibrated threshold")]
    assert button.label == f"Use the calibrated threshold ({FACE_RESNET:.3f})" and not button.disabled
    button.click().run()
    assert json.loads(saved.read_text())["thresholds"] == {"face-resnet": CALIBRATED}
    assert at.slider[0].value == pytest.approx(FACE_RESNET)


def test_the_cli_uses_the_base_and_threshold_saved_by_the_app(app, monkeypatch, capsys):
    """Saved on the app's Settings page, used by the CLI on the same gallery: its settings and a
    command (fetch-weights, which loads the base in use) get resnet50 and 0.7; a flag or a
    variable still overrides them for one run."""
    from facerec import cli, weights
    from facerec.thresholds import recognition_threshold

    at, saved = app
    at.selectbox[0].set_value("resnet50").run()
    at.slider[0].set_value(0.7).run()
    click(at, "Save settings")
    assert not at.error and json.loads(saved.read_text())["backbone"] == "resnet50"
    gallery = str(saved.parent.parent)

    def settings_of(*argv: str) -> Settings:
        return cli._settings(cli.build_parser().parse_args(["identify", "x.jpg", "--gallery", gallery, *argv]))

    s = settings_of()
    assert (s.backbone, s.threshold, recognition_threshold(s, ["a", "b"])) == ("resnet50", 0.7, 0.7)
    used = []
    monkeypatch.setattr(weights, "load_weights", lambda name, model, settings, allow_download=True:
                        used.append((name, settings.backbone, settings.threshold)) or "test")
    assert cli.main(["fetch-weights", "--gallery", gallery]) == 0
    assert used == [("resnet50", "resnet50", 0.7)] and "resnet50: weights ready" in capsys.readouterr().err

    assert settings_of("--threshold", "0.4").threshold == 0.4  # a flag wins for this run
    assert settings_of("--threshold", "calibrated").threshold is None
    s = settings_of("--backbone", "face-resnet")  # another base: its own saved threshold (calibrated)
    assert (s.backbone, s.threshold) == ("face-resnet", None)
    monkeypatch.setenv("FACEREC_THRESHOLD", "0.5")
    assert settings_of().threshold == 0.5  # an environment variable wins over the saved choice
    monkeypatch.setenv("FACEREC_BACKBONE", "vgg16")
    assert settings_of().backbone == "vgg16" and settings_of("--backbone", "resnet50").backbone == "resnet50"
