"""Labelled face datasets and their splits, for training, evaluation and benchmarks.

A dataset is a folder of person folders (``DATA_DIR/<person>/<photos>``);
:func:`person_split` halves the people deterministically so that no benchmark person is
seen in training; :func:`detect_dataset` finds (and caches) each photo's largest face.
Nothing here trains or evaluates: :mod:`facerec.train` and :mod:`facerec.evaluate` both use it.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from facerec.detect import Detector
from facerec.errors import FaceRecError
from facerec.images import is_image_path, load_image
from facerec.storage import write_atomic
from facerec.types import Face

Progress = Callable[[Iterable], Iterable]


def person_split(name: str) -> str:
    """Deterministic half of the people: ``"train"`` or ``"test"`` (CRC-32 parity of the name).

    Shipped heads train on the ``train`` half of lfw_dev; benchmarks report on
    the ``test`` half, so no benchmark person was seen in training.
    """
    return "train" if zlib.crc32(name.encode("utf-8")) % 2 == 0 else "test"


def labelled_photos(data_dir: Path, split: str = "all") -> list[tuple[Path, str]]:
    """``(photo, person)`` for every photo in ``data_dir/<person>/``, sorted.

    Args:
        split: ``"all"``, ``"train"`` or ``"test"`` (see :func:`person_split`).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FaceRecError(f"{data_dir}: not a folder (expected DATA_DIR/<person>/<photos>)")
    out = []
    for person in sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if split != "all" and person_split(person.name) != split:
            continue
        out += [(f, person.name) for f in sorted(person.iterdir()) if f.is_file() and is_image_path(f)]
    if not out:
        raise FaceRecError(f"{data_dir}: no photos found in person folders")
    return out


def files_key(paths: Sequence[Path], *parts: object) -> str:
    """A short key of files (path, size, modification time) and ``parts``: the key of every on-disk
    cache of a dataset (detections here, base features in :mod:`facerec.train`)."""
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(repr(parts).encode())
    return h.hexdigest()[:20]


def detect_dataset(paths: Sequence[Path], detector: Detector, cache_dir: Path,
                   progress: Progress | None = None) -> list[Face | None]:
    """The largest face of each photo (``None`` when none is found), cached on disk."""
    cache = cache_dir / "detections" / f"{detector.name}-{files_key(paths, getattr(detector, 'cache_key', ''))}.json"
    if cache.is_file():
        rows = json.loads(cache.read_text())
        return [None if r is None else Face(tuple(r[0]), r[1], None if r[2] is None else np.array(r[2], np.float32))
                for r in rows]
    faces: list[Face | None] = []
    chunks = [list(paths[i:i + 16]) for i in range(0, len(paths), 16)]
    for chunk in (progress(chunks) if progress else chunks):
        images, ok = [], []
        for p in chunk:
            try:
                images.append(load_image(p))
                ok.append(True)
            except FaceRecError:
                ok.append(False)
        found = iter(detector.detect_many(images) if images else [])
        for good in ok:
            fs = next(found) if good else []
            faces.append(max(fs, key=lambda f: f.area) if fs else None)
    rows = [None if f is None else [list(f.box), f.score, None if f.landmarks is None else f.landmarks.tolist()]
            for f in faces]
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(cache, json.dumps(rows).encode())  # a kill never leaves half a cache
    return faces
