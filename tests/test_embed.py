import numpy as np
import pytest

from facerec.embed import BACKBONES, build_base, build_head, load_head, save_head, HeadInfo


@pytest.mark.parametrize("name,size,dim", [("resnet50", 64, 1024), ("vgg16", 64, 512), ("face-resnet", 150, 128)])
def test_bases_are_frozen_with_the_right_feature_size(name, size, dim):
    base = build_base(BACKBONES[name], pretrained=False, input_size=size)
    assert base.output_shape == (None, dim)
    assert not base.trainable and not base.trainable_weights
    x = np.random.default_rng(0).uniform(-1, 1, (2, size, size, 3)).astype("float32")
    assert np.asarray(base(x, training=False)).shape == (2, dim)


def test_head_gives_unit_vectors_and_round_trips(tmp_path):
    head = build_head(40, 16)
    x = np.random.default_rng(0).normal(size=(5, 40)).astype("float32")
    v = np.asarray(head(x, training=False))
    assert v.shape == (5, 16) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    save_head(head, HeadInfo("resnet50", 40, 16, 0.5), tmp_path / "h")
    loaded, info = load_head(tmp_path / "h")
    assert info.threshold == 0.5 and np.allclose(np.asarray(loaded(x, training=False)), v, atol=1e-5)


def test_embedder_batches_and_flips(tiny_embedder):
    crops = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3)).astype(np.uint8)
    v = tiny_embedder.embed(crops, batch_size=2)
    assert v.shape == (5, 64) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert np.allclose(v, tiny_embedder.embed(crops, batch_size=5), atol=1e-5)
    vf = tiny_embedder.embed(crops, flip=True)
    assert np.allclose(np.linalg.norm(vf, axis=1), 1, atol=1e-5) and not np.allclose(vf, v)
    with pytest.raises(ValueError):
        tiny_embedder.embed(crops[:, :16])


def test_embedder_key_names_base_head_and_size(tiny_embedder):
    assert tiny_embedder.key == "face-resnet@32+none"
