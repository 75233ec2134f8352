"""The default networks without TensorFlow (issue 22): MobileFaceNet and O-Net run by LiteRT from
their own ``.tflite`` files give today's Keras outputs, ``identify`` never imports TensorFlow,
and the backend is chosen in one place."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import CELEB5, needs_shared

from facerec.errors import ConfigError, ModelUnavailableError
from facerec.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _real_faces(settings: Settings, n_people: int = 5, per_person: int = 2):
    """Aligned MobileFaceNet crops ``(N, 112, 112, 3)`` uint8 of celeb5 people and the YuNet
    detector's O-Net input patches ``(M, 48, 48, 3)`` float32 (MTCNN-scaled) for those photos."""
    from facerec import detect
    from facerec.facepath import FacePath

    path = FacePath(settings)
    patches: list[np.ndarray] = []
    real_scale = detect._mtcnn_scale

    def keep(p):
        out = real_scale(p)
        patches.append(out)
        return out

    crops = []
    detect._mtcnn_scale = keep
    try:
        for person in sorted((CELEB5 / "train").iterdir())[:n_people]:
            for photo in sorted(person.iterdir())[:per_person]:
                faces = path.locate([path.read(photo.read_bytes(), photo.name)])[0]
                crops += [f.crop for f in faces]
    finally:
        detect._mtcnn_scale = real_scale
    return np.stack(crops), np.concatenate(patches)


@pytest.mark.weights
@pytest.mark.realdata
@pytest.mark.slow
@needs_shared
def test_litert_gives_the_keras_vectors_and_points_on_real_faces():
    """On celeb5 faces: LiteRT's MobileFaceNet vectors equal the Keras network's within 1e-4
    (mirror-averaged too), under the same key; LiteRT's O-Net gives mtcnn's Keras O-Net's points
    within 1e-4; several threads at once get the same vectors."""
    from facerec.detect import _onet

    lite_s, keras_s = Settings(runtime="litert"), Settings(runtime="keras")
    crops, patches = _real_faces(lite_s)
    assert len(crops) >= 8 and len(patches) >= 8

    from facerec.embed import load_embedder

    lite, ref = load_embedder(lite_s), load_embedder(keras_s)
    assert (lite.backend, ref.backend) == ("litert", "keras")
    assert lite.key == ref.key == "mobilefacenet@112+none" and lite.dim == ref.dim == 192
    v, r = lite.embed(crops), ref.embed(crops)
    assert v.shape == r.shape == (len(crops), 192) and v.dtype == np.float32
    assert np.abs(v - r).max() < 1e-4
    assert np.abs(lite.embed(crops, flip=True) - ref.embed(crops, flip=True)).max() < 1e-4
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert lite.embed(crops[:1]).shape == (1, 192) and lite.embed(crops[:0]).shape == (0, 192)  # odd and empty batches

    results: dict[int, np.ndarray] = {}

    def worker(i: int) -> None:
        results[i] = lite.embed(crops[i % 2:])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, got in results.items():
        assert np.abs(got - v[i % 2:]).max() < 1e-6

    points_lite, points_keras = _onet(lite_s)(patches), _onet(keras_s)(patches)
    assert points_lite.shape == points_keras.shape == (len(patches), 10)
    assert np.abs(points_lite - points_keras).max() < 1e-4


@pytest.mark.weights
@pytest.mark.realdata
@needs_shared
def test_identify_one_photo_leaves_tensorflow_out(tmp_path):
    """``facerec identify`` of one photo, in a fresh process with a gallery whose vectors must be
    made first: names the person and never imports TensorFlow (nor Keras, nor scikit-learn)."""
    gallery = tmp_path / "gallery"
    for person in ("madonna", "elton_john"):
        (gallery / person).mkdir(parents=True)
        for photo in sorted((CELEB5 / "train" / person).iterdir())[:2]:
            (gallery / person / photo.name).write_bytes(photo.read_bytes())
    probe = sorted((CELEB5 / "val" / "madonna").iterdir())[0]
    code = ("import sys; from facerec.cli import main; rc = main(['identify', '--quiet', sys.argv[1]]); "
            "print('HEAVY', sorted(m for m in ('tensorflow', 'keras', 'sklearn') if m in sys.modules), file=sys.stderr); "
            "sys.exit(rc)")
    env = {**os.environ, "FACEREC_GALLERY": str(gallery)}
    run = subprocess.run([sys.executable, "-c", code, str(probe)], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "HEAVY []" in run.stderr, run.stderr
    assert run.stdout.strip().split(",")[1] == "madonna"


def test_the_backend_is_chosen_in_one_place(tmp_path, monkeypatch):
    """LiteRT for the default base without a head; Keras for heads, the other bases, a converted
    ``.npz`` or ``runtime=keras``; ``runtime=litert`` where it cannot run is a configuration error."""
    from facerec import litert
    from facerec.embed import embedding_runtime

    monkeypatch.setattr(litert, "available", lambda: True)
    assert embedding_runtime(Settings()) == "litert"
    assert embedding_runtime(Settings(weights=(("mobilefacenet", tmp_path / "m.tflite"),))) == "litert"
    assert embedding_runtime(Settings(runtime="keras")) == "keras"
    assert embedding_runtime(Settings(), head_stem=tmp_path / "head") == "keras"
    assert embedding_runtime(Settings(backbone="face-resnet")) == "keras"
    assert embedding_runtime(Settings(weights=(("mobilefacenet", tmp_path / "m.npz"),))) == "keras"
    with pytest.raises(ConfigError, match="head"):
        embedding_runtime(Settings(runtime="litert"), head_stem=tmp_path / "head")
    monkeypatch.setattr(litert, "available", lambda: False)
    assert embedding_runtime(Settings()) == "keras"
    with pytest.raises(ConfigError, match="ai-edge-litert"):
        embedding_runtime(Settings(runtime="litert"))
    with pytest.raises(ConfigError, match="runtime"):
        Settings(runtime="onnx")
    assert Settings.from_env({"FACEREC_RUNTIME": "keras"}).runtime == "keras"


def test_tflite_files_are_cached_under_their_digest_and_checked(tmp_path):
    """The cache names the pinned digest; a file there with other bytes is not used, and without
    a download the error says what was tried and how to fix it."""
    from facerec.weights import TFLITE_SOURCES, tflite_cache_path, tflite_file

    s = Settings(cache_dir=tmp_path)
    for name in ("mobilefacenet", "onet"):
        path = tflite_cache_path(name, s)
        assert path.parent == tmp_path / "weights" and TFLITE_SOURCES[name].sha256[:16] in path.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not the network")
        with pytest.raises(ModelUnavailableError, match="SHA-256 differs.*fetch-weights"):
            tflite_file(name, s, allow_download=False)
    with pytest.raises(ModelUnavailableError, match="not a .tflite"):
        tflite_file("mobilefacenet", Settings(cache_dir=tmp_path, weights=(("mobilefacenet", tmp_path / "x.npz"),)))
