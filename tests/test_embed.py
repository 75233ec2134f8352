import json

import numpy as np
import pytest

from facerec.embed import BACKBONES, build_base, build_head, load_head, save_head, HeadInfo


@pytest.mark.parametrize("name,size,dim", [("resnet50", 64, 9 * 1024), ("vgg16", 64, 9 * 512), ("face-resnet", 150, 128)])
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
    # stored as float16 (projection matrix): the same vectors to ~1e-3
    assert info.threshold == 0.5 and np.allclose(np.asarray(loaded(x, training=False)), v, atol=2e-3)


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


def test_flip_default_comes_from_the_backbone_and_settings_can_override(tiny_embedder):
    import dataclasses

    from facerec.embed import Embedder

    crops = np.random.default_rng(1).integers(0, 255, (3, 32, 32, 3)).astype(np.uint8)
    plain, mirrored = tiny_embedder.embed(crops, flip=False), tiny_embedder.embed(crops, flip=True)
    assert np.allclose(tiny_embedder.embed(crops), plain, atol=1e-6)  # face-resnet: no flip by default
    flipping = Embedder(dataclasses.replace(tiny_embedder.backbone, flip=True), tiny_embedder._model)
    assert np.allclose(flipping.embed(crops), mirrored, atol=1e-5)
    assert np.allclose(flipping.embed(crops, flip=False), plain, atol=1e-5)
    assert BACKBONES["resnet50"].flip and not BACKBONES["face-resnet"].flip


def test_embedder_key_names_base_head_and_size(tiny_embedder):
    from facerec.embed import Embedder

    assert tiny_embedder.key == "face-resnet@32+none"  # built-in weights: the plain key, as before
    configured = Embedder(tiny_embedder.backbone, tiny_embedder._model, weights_id="0123456789")
    assert configured.key == "face-resnet#0123456789@32+none"  # a user's weights file: its content digest


def test_grid_pooling_of_several_layers_keeps_layout_and_unit_blocks():
    """Two layers, 2x2 cells each, power-normalised: each layer's block has unit length,
    and moving content from one corner to another changes the features (layout kept)."""
    import dataclasses

    b = dataclasses.replace(BACKBONES["resnet50"], feature_layer=("conv3_block4_out", "conv4_block6_out"),
                            grid=2, power_norm=True)
    base = build_base(b, pretrained=False, input_size=64)
    assert base.output_shape == (None, 4 * 512 + 4 * 1024)
    assert not base.trainable and not base.trainable_weights
    x = np.zeros((2, 64, 64, 3), "float32")
    x[0, :32, :32] = 100.0
    x[1, 32:, 32:] = 100.0
    y = np.asarray(base(x, training=False))
    assert np.allclose(np.linalg.norm(y[:, :2048], axis=1), 1, atol=1e-4)
    assert np.allclose(np.linalg.norm(y[:, 2048:], axis=1), 1, atol=1e-4)
    assert not np.allclose(y[0], y[1], atol=1e-3)


@pytest.mark.parametrize("name", ["resnet50", "vgg16", "face-resnet", "mobilefacenet"])
def test_registry_feature_size_matches_the_shipped_head(name):
    """The registry's pooling gives the feature length the shipped head expects (weights=None)."""
    from facerec.embed import shipped_head

    base = build_base(BACKBONES[name], pretrained=False)
    size = BACKBONES[name].input_size
    x = np.random.default_rng(0).uniform(-100, 100, (1, size, size, 3)).astype("float32")
    assert np.asarray(base(x, training=False)).shape == (1, base.output_shape[-1])
    stem = shipped_head(name)
    assert stem is not None or name == "vgg16"  # these heads ship: their check must not be skipped
    if stem is not None:
        head, info = load_head(stem)
        assert info.in_dim == base.output_shape[-1]
        v = np.asarray(head(np.asarray(base(x, training=False)), training=False))
        assert v.shape == (1, info.out_dim) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)


def test_head_files_with_extra_keys_load_and_broken_ones_are_refused_clearly(tmp_path):
    from facerec.errors import ModelUnavailableError

    save_head(build_head(8, 4), HeadInfo("face-resnet", 8, 4, 0.33), tmp_path / "h")
    info_path = tmp_path / "h.json"
    info_path.write_text(json.dumps({**json.loads(info_path.read_text()), "note": "added by hand"}))
    assert load_head(tmp_path / "h")[1].threshold == 0.33
    for broken in ("{not json", json.dumps({"backbone": "face-resnet"})):
        info_path.write_text(broken)
        with pytest.raises(ModelUnavailableError, match="train-head"):
            load_head(tmp_path / "h")


def test_calibrated_threshold_follows_the_head_in_use(tmp_path):
    from facerec.embed import calibrated_threshold, shipped_head
    from facerec.settings import Settings

    assert calibrated_threshold(Settings()) == BACKBONES[Settings().backbone].threshold  # no head by default
    stem = shipped_head("resnet50")
    shipped = json.loads(stem.with_suffix(".json").read_text())["threshold"]
    assert calibrated_threshold(Settings(backbone="resnet50")) == shipped != BACKBONES["resnet50"].threshold
    save_head(build_head(8, 4), HeadInfo("face-resnet", 8, 4, 0.33), tmp_path / "h")
    assert calibrated_threshold(Settings(head=tmp_path / "h")) == 0.33
