"""One settings source per gallery (issue 20, item 3): the choices saved for a gallery apply to
the CLI and the app alike; flags > FACEREC_* variables > saved choices > defaults."""

from __future__ import annotations

import json
import stat

import pytest

from facerec import cli
from facerec.errors import ConfigError
from facerec.settings import (CALIBRATED, Settings, effective_settings, load_choices, save_choices, settings_file,
                              with_threshold)
from facerec.storage import GalleryFiles


def cli_settings(gallery, *argv: str, command: str = "identify") -> Settings:
    """The settings a CLI command builds from its arguments (the environment of the test)."""
    extra = {"identify": ["x.jpg"], "eval": ["data"], "train-head": ["data"], "people": ["list"]}.get(command, [])
    return cli._settings(cli.build_parser().parse_args([command, *extra, "--gallery", str(gallery), *argv]))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("GALLERY", "BACKBONE", "DETECTOR", "THRESHOLD", "HEAD"):
        monkeypatch.delenv(f"FACEREC_{name}", raising=False)


def test_saved_choices_round_trip_in_a_private_file(tmp_path):
    doc = with_threshold({}, "resnet50", 0.7, backbone="resnet50", detector="mtcnn")
    path = save_choices(tmp_path, doc)
    assert path == settings_file(tmp_path) == GalleryFiles(tmp_path).settings == tmp_path / ".facerec" / "settings.json"
    assert load_choices(tmp_path) == doc and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_choices(tmp_path / "elsewhere") == {}
    with pytest.raises(ConfigError, match="unknown detector"):
        save_choices(tmp_path, {"detector": "eyes"})
    assert load_choices(tmp_path) == doc  # unchanged


@pytest.mark.parametrize("legacy, backbone, threshold", [
    ({"backbone": "resnet50", "threshold": 0.4}, "resnet50", 0.4),  # facerec 0.4's app file
    (with_threshold({"detector": "mtcnn"}, "vgg16", 0.55, backbone="vgg16"), "vgg16", 0.55),  # 0.5 to 0.7
])
def test_the_apps_old_settings_file_is_still_read(tmp_path, legacy, backbone, threshold):
    GalleryFiles(tmp_path).state.mkdir()
    GalleryFiles(tmp_path).legacy_settings.write_text(json.dumps(legacy))
    s = cli_settings(tmp_path)
    assert (s.backbone, s.threshold) == (backbone, threshold)
    save_choices(tmp_path, {"backbone": "face-resnet"})  # once saved again, the new file wins
    assert cli_settings(tmp_path).backbone == "face-resnet"


def test_precedence_flag_then_variable_then_saved_then_default(tmp_path, monkeypatch):
    assert cli_settings(tmp_path) == Settings(gallery=tmp_path)  # nothing saved: the defaults
    doc = with_threshold({}, "face-resnet", 0.96, backbone="face-resnet")
    save_choices(tmp_path, with_threshold(doc, "resnet50", 0.7, backbone="resnet50", detector="mtcnn"))

    s = cli_settings(tmp_path)
    assert (s.backbone, s.detector, s.threshold) == ("resnet50", "mtcnn", 0.7)  # saved > default
    s = cli_settings(tmp_path, "--backbone", "face-resnet")  # a flag picks the base: that base's own saved threshold
    assert (s.backbone, s.detector, s.threshold) == ("face-resnet", "mtcnn", 0.96)
    assert cli_settings(tmp_path, "--backbone", "vgg16").threshold is None  # nothing saved for vgg16: calibrated
    assert cli_settings(tmp_path, "--head", "/my/head").threshold is None  # another head, another scale

    monkeypatch.setenv("FACEREC_DETECTOR", "opencv")
    monkeypatch.setenv("FACEREC_THRESHOLD", "0.3")
    s = cli_settings(tmp_path)
    assert (s.backbone, s.detector, s.threshold) == ("resnet50", "opencv", 0.3)  # variable > saved
    s = cli_settings(tmp_path, "--detector", "yunet", "--threshold", "calibrated")
    assert (s.detector, s.threshold) == ("yunet", None)  # flag > variable
    monkeypatch.setenv("FACEREC_THRESHOLD", "")  # empty: unset
    monkeypatch.setenv("FACEREC_BACKBONE", "face-resnet")
    assert cli_settings(tmp_path).threshold == 0.96

    # the library function itself, with an explicit environment
    s = effective_settings({"FACEREC_GALLERY": str(tmp_path)})
    assert (s.gallery, s.backbone, s.detector, s.threshold) == (tmp_path, "resnet50", "mtcnn", 0.7)


def test_dataset_commands_ignore_the_gallerys_choices(tmp_path):
    save_choices(tmp_path, with_threshold({}, "resnet50", 0.7, backbone="resnet50"))
    for command in ("eval", "train-head"):
        s = cli_settings(tmp_path, command=command)
        assert (s.backbone, s.threshold) == (Settings().backbone, None)
    assert cli_settings(tmp_path, command="fetch-weights").backbone == "resnet50"
    assert cli_settings(tmp_path, command="people").backbone == "resnet50"


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", json.dumps({"detector": "eyes"})])
def test_unusable_saved_settings_are_named_and_left_out(tmp_path, capsys, content):
    save_choices(tmp_path, {})
    settings_file(tmp_path).write_text(content)
    with pytest.raises(ConfigError, match=str(tmp_path)):
        effective_settings({"FACEREC_GALLERY": str(tmp_path)})
    s = cli_settings(tmp_path, "--threshold", "0.5")  # the CLI warns and goes on, as the app does
    assert (s.backbone, s.detector, s.threshold) == (Settings().backbone, Settings().detector, 0.5)
    err = capsys.readouterr().err
    assert err.startswith("facerec: ") and str(tmp_path) in err and "ignored" in err and err.count("\n") == 1


def test_a_cli_command_runs_with_the_saved_base(tmp_path, monkeypatch, capsys):
    """``facerec fetch-weights`` without a base fetches the one saved for the gallery."""
    from facerec import weights

    save_choices(tmp_path, with_threshold({}, "resnet50", 0.7, backbone="resnet50"))
    used = []
    monkeypatch.setattr(weights, "load_weights", lambda name, model, settings, allow_download=True:
                        used.append((name, settings.threshold)) or "test")
    assert cli.main(["fetch-weights", "--gallery", str(tmp_path)]) == 0
    assert used == [("resnet50", 0.7)]
    assert cli.main(["fetch-weights", "--gallery", str(tmp_path), "--quiet"]) == 0 and len(used) == 2
    assert CALIBRATED not in capsys.readouterr().out
