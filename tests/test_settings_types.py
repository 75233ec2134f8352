from pathlib import Path

import numpy as np
import pytest

from facerec.errors import ConfigError
from facerec.settings import Settings
from facerec.types import UNKNOWN, Face, Match


def test_from_env_reads_prefixed_variables():
    s = Settings.from_env({"FACEREC_GALLERY": "/x/people", "FACEREC_THRESHOLD": "0.7", "FACEREC_DETECTOR": "opencv",
                           "FACEREC_WEIGHTS_FACE_RESNET": "/w.npz", "FACEREC_FLIP": "yes"})
    assert s.gallery == Path("/x/people")
    assert s.threshold == 0.7 and s.detector == "opencv" and s.flip
    assert s.weight_file("face-resnet") == Path("/w.npz")


def test_overrides_beat_environment_and_none_is_ignored():
    s = Settings.from_env({"FACEREC_THRESHOLD": "0.7"}, threshold=0.3, backbone=None)
    assert s.threshold == 0.3 and s.backbone == Settings().backbone == "mobilefacenet"


@pytest.mark.parametrize("env", [{"FACEREC_THRESHOLD": "1.5"}, {"FACEREC_THRESHOLD": "abc"},
                                 {"FACEREC_DETECTOR": "yolo"}, {"FACEREC_MIN_FACE_SIZE": "0"}])
def test_bad_values_raise_config_error(env):
    with pytest.raises(ConfigError):
        Settings.from_env(env)


def test_settings_are_hashable_for_caching():
    assert hash(Settings()) == hash(Settings())


def test_face_and_match_values():
    f = Face(box=(10.4, 20.6, 30.0, 40.0), score=0.9, landmarks=np.zeros((5, 2), np.float32))
    assert f.int_box() == (10, 21, 30, 40) and f.area == 1200
    g = f.replace(vector=np.ones(3, np.float32))
    assert f.vector is None and g.vector is not None
    with pytest.raises(AttributeError):
        f.score = 1.0  # frozen
    assert Match("ann", 0.9).known and not Match(UNKNOWN, 0.2).known


def test_ice_servers_from_the_environment():
    assert Settings.from_env({}).ice_server_list() == []
    urls = Settings.from_env({"FACEREC_ICE_SERVERS": "stun:a.example:3478, turn:b.example"}).ice_server_list()
    assert urls == [{"urls": ["stun:a.example:3478", "turn:b.example"]}]
    turn = '[{"urls": ["turn:t.example:3478"], "username": "u", "credential": "p"}]'
    assert Settings.from_env({"FACEREC_ICE_SERVERS": turn}).ice_server_list()[0]["username"] == "u"
    for bad in ('[{"url": "x"}]', "[not json"):
        with pytest.raises(ConfigError):
            Settings.from_env({"FACEREC_ICE_SERVERS": bad}).ice_server_list()
