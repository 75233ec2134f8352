"""Shared fixtures: seeded synthetic photos, a fake detector, a tiny embedder, tmp galleries."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

try:  # before TensorFlow, as app.py does: aiortc imported after TensorFlow crashes the process
    import streamlit_webrtc  # noqa: F401
except ImportError:
    pass

import cv2
import numpy as np
import pytest
from PIL import Image

from facerec.embed import BACKBONES, Embedder
from facerec.settings import Settings
from facerec.types import Face

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
CELEB5 = SHARED / "celeb5"
LFW = SHARED / "lfw_dev"

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
needs_shared = pytest.mark.skipif(not CELEB5.is_dir() and not IN_CI, reason="../shared/faces is absent")


def extra_module(name: str, reason: str):
    """A module of the test extra: imported (a failure under CI, where ``./run.sh test`` installs it),
    else skipped when missing."""
    if IN_CI:
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=reason)
"""Skips without ../shared/faces, except under CI=true, where the test runs and fails."""


class BlobDetector:
    """A stand-in detector: every non-black rectangle of a synthetic photo is a face."""

    name = "blobs"

    def detect(self, image: np.ndarray) -> list[Face]:
        mask = (image.max(axis=2) > 0).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        faces = []
        for x, y, w, h, _area in stats[1:]:
            if w >= 8 and h >= 8:
                faces.append(Face(box=(float(x), float(y), float(w), float(h)), score=0.99))
        return sorted(faces, key=lambda f: -f.area)

    def detect_many(self, images, scales=None):
        return [self.detect(im) for im in images]


class ShySearch(BlobDetector):
    """Finds nothing at first, every face with a finer pyramid (as MTCNN does on a few photos)."""

    fine = False

    def detect(self, image: np.ndarray) -> list[Face]:
        return super().detect(image) if self.fine else []

    def finer(self) -> "ShySearch":
        other = ShySearch()
        other.fine = True
        return other


def person_pattern(person: int, size: int = 48, seed: int = 0) -> np.ndarray:
    """A synthetic 'face' for a person: a fixed random colour pattern plus a little seeded noise."""
    base = np.random.default_rng(1000 + person).integers(30, 255, (6, 6, 3)).astype(np.float32)
    img = cv2.resize(base, (size, size), interpolation=cv2.INTER_NEAREST)
    noise = np.random.default_rng(seed).normal(0, 6, img.shape)
    return np.clip(img + noise, 1, 255).astype(np.uint8)


def synthetic_photo(people: list[int], seed: int = 0, size: int = 48) -> np.ndarray:
    """A black photo with one pattern per person placed side by side."""
    canvas = np.zeros((size + 40, (size + 30) * len(people) + 30, 3), dtype=np.uint8)
    for i, p in enumerate(people):
        x = 30 + i * (size + 30)
        canvas[20:20 + size, x:x + size] = person_pattern(p, size, seed)
    return canvas


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def make_tiny_embedder() -> Embedder:
    """A small random conv net standing in for a pretrained base (32x32 input); the same
    weights in every process (seeded), so worker processes and Ray actors can rebuild it."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(16, 3, activation="relu")(inp)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    base = keras.Model(inp, keras.layers.Dense(64)(x))
    base.trainable = False
    return Embedder(BACKBONES["face-resnet"], base, threshold=0.8)


@pytest.fixture(scope="session")
def tiny_embedder() -> Embedder:
    return make_tiny_embedder()


def tiny_worker(settings: Settings):
    """A tagging worker with the blob detector and the tiny embedder (for worker processes and Ray)."""
    from facerec.tagging import PhotoWorker

    return PhotoWorker(settings, detector=BlobDetector(), embedder=make_tiny_embedder())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(gallery=tmp_path / "gallery", cache_dir=tmp_path / "cache")


@pytest.fixture
def recognizer(settings, tiny_embedder):
    from facerec.pipeline import FaceRecognizer

    return FaceRecognizer(settings, detector=BlobDetector(), embedder=tiny_embedder)


@pytest.fixture
def clustered_vectors():
    """20 people x 6 unit vectors around person centres, plus 15 one-photo strangers."""
    rng = np.random.default_rng(0)
    X, y = [], []
    for p in range(35):
        centre = rng.normal(size=64)
        n = 6 if p < 20 else 1
        for _ in range(n):
            X.append(centre + rng.normal(scale=0.5, size=64))
            y.append(f"p{p:02d}")
    X = np.array(X, dtype=np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True), np.array(y)


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (the SQLite index by its logical content)."""
    import sqlite3

    snap = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and ".facerec" not in p.parts:
            snap[str(p.relative_to(root))] = p.read_bytes()
    db = root / ".facerec" / "index.sqlite"
    if db.exists():
        con = sqlite3.connect(db)
        snap["<photos>"] = repr(con.execute("SELECT person, file, sha, box FROM photos ORDER BY 1, 2").fetchall()).encode()
        snap["<vectors>"] = repr(con.execute("SELECT sha, box, model, vector FROM vectors ORDER BY 1, 2, 3").fetchall()).encode()
        con.close()
    return snap


def deny_reading(monkeypatch, name: str) -> None:
    """Make reading any file called ``name`` fail with PermissionError (tests run as root)."""
    real_read, real_open = Path.read_bytes, Path.open

    def deny(self):
        if self.name == name:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    def deny_open(self, *args, **kwargs):
        if self.name == name:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_bytes", deny)
    monkeypatch.setattr(Path, "open", deny_open)


def people_service(gallery: Path, cache_dir: Path | None = None):
    """The person-lifecycle service over ``gallery`` (no model is loaded unless enrolling)."""
    from facerec.people import People
    from facerec.pipeline import FaceRecognizer

    return People(FaceRecognizer(Settings(gallery=Path(gallery), cache_dir=Path(cache_dir or Path(gallery) / ".cache"))))


@contextmanager
def tmpfs(mount_point: Path, size: str):
    """A real tmpfs of ``size`` (e.g. ``"300k"``) at ``mount_point`` (created), unmounted at the
    end: a disk that can be filled up. Mounting needs root: skipped without it, except under
    CI=true, where the test runs and fails."""
    if os.geteuid() != 0 and not IN_CI:
        pytest.skip("mounting a tmpfs needs root")
    mount_point.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
