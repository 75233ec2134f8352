import json

import numpy as np
import pytest

from facerec.errors import ModelUnavailableError
from facerec.settings import Settings
from facerec.weights import _face_resnet_rename, _resnet50_rename, load_weights, read_tfjs_weights

from conftest import CELEB5, needs_shared


def test_tfjs_decoding_with_quantisation(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    q = np.array([0, 128, 255], dtype=np.uint8)
    (tmp_path / "w.bin").write_bytes(a.tobytes() + q.tobytes())
    (tmp_path / "m.json").write_text(json.dumps([{"paths": ["w.bin"], "weights": [
        {"name": "a", "shape": [2, 3], "dtype": "float32"},
        {"name": "q", "shape": [3], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
    ]}]))
    w = read_tfjs_weights(tmp_path / "m.json")
    assert np.array_equal(w["a"], a) and np.allclose(w["q"], [-1.0, 63.0, 126.5])


def test_name_mappings():
    assert _resnet50_rename("res2a_branch2a/kernel") == ("conv2_block1_1_conv", 0)
    assert _resnet50_rename("bn5c_branch1/moving_variance") == ("conv5_block3_0_bn", 3)
    assert _resnet50_rename("bn_conv1/beta") == ("conv1_bn", 1)
    assert _resnet50_rename("fc1000/bias") == ("predictions", 1)
    assert _face_resnet_rename("conv64_1/conv2/scale/biases") == ("conv64_1_conv2_scale", 1)
    assert _face_resnet_rename("conv32_down/conv/filters") == ("conv32_down_conv", 0)


def test_missing_weights_give_one_clear_message(tmp_path, monkeypatch):
    import keras

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    with pytest.raises(ModelUnavailableError) as err:
        load_weights("vgg16", model, Settings(cache_dir=tmp_path), allow_download=False)
    msg = str(err.value)
    assert "Keras cache" in msg and "FACEREC_WEIGHTS_VGG16" in msg
    with pytest.raises(ModelUnavailableError, match="not found"):
        load_weights("vgg16", model, Settings(cache_dir=tmp_path, weights=(("vgg16", tmp_path / "nope.h5"),)))


@pytest.mark.weights
def test_converted_resnet50_is_keras_imagenet_model():
    """The npm mirror, converted, classifies scikit-learn's temple photo as a palace (ImageNet class 698)."""
    import cv2
    import keras
    from sklearn.datasets import load_sample_image

    model = keras.applications.ResNet50(include_top=True, weights=None)
    load_weights("resnet50", model, Settings())
    img = load_sample_image("china.jpg")
    h, w = img.shape[:2]
    c = min(h, w)
    img = img[(h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c]
    x = cv2.resize(img, (224, 224)).astype("float32")[None]
    p = model.predict(keras.applications.resnet50.preprocess_input(x), verbose=0)[0]
    assert int(np.argmax(p)) == 698 and p[698] > 0.4


@pytest.mark.weights
@pytest.mark.realdata
@needs_shared
def test_face_resnet_puts_same_person_closer(tmp_path):
    from facerec.embed import load_embedder
    from facerec.images import load_image
    from facerec.pipeline import FaceRecognizer

    s = Settings(backbone="face-resnet")
    rec = FaceRecognizer(s.replace(gallery=tmp_path), embedder=load_embedder(s, use_head=False))

    def vec(person, photo):
        faces = rec.faces(load_image(CELEB5 / "train" / person / photo))
        return max(faces, key=lambda f: f.area).vector

    a1, a2, b = vec("madonna", "1.jpg"), vec("madonna", "2.jpg"), vec("elton_john", "1.jpg")
    assert rec.embedder.dim == 128
    assert a1 @ a2 > a1 @ b and a1 @ a2 > a2 @ b


def test_embedder_key_follows_the_weights_files_content_not_its_path(tmp_path):
    """Issue 12: a different file behind the same FACEREC_WEIGHTS_* path gives other keys (and
    the new weights), never the old model under the old key; the same bytes elsewhere, the same key."""
    import shutil

    import keras

    from facerec.embed import build_mobilefacenet, load_embedder

    keras.utils.set_random_seed(0)
    net = build_mobilefacenet()
    arrays = {f"{layer.name}:{i}": w for layer in net.layers for i, w in enumerate(layer.get_weights())}
    path = tmp_path / "weights.npz"
    np.savez(path, **arrays)
    s = Settings(backbone="mobilefacenet", cache_dir=tmp_path / "cache", weights=(("mobilefacenet", path),))
    crops = np.random.default_rng(0).integers(0, 255, (2, 112, 112, 3)).astype(np.uint8)
    first = load_embedder(s, use_head=False)
    v1 = first.embed(crops)
    assert str(path) not in first.key and first.key.startswith("mobilefacenet#")
    assert load_embedder(s, use_head=False).key == first.key  # unchanged file: same key, same model

    arrays["embedding:0"] = arrays["embedding:0"][:, :, ::-1, :].copy()  # other weights, same size, same path
    np.savez(path, **arrays)
    second = load_embedder(s, use_head=False)
    assert second.key != first.key
    assert not np.allclose(second.embed(crops), v1, atol=1e-4)  # and the new weights are the ones used

    elsewhere = tmp_path / "copy.npz"
    shutil.copy(path, elsewhere)
    moved = load_embedder(s.replace(weights=(("mobilefacenet", elsewhere),)), use_head=False)
    assert moved.key == second.key
