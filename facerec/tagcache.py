"""The tagger's cache: faces found in a photo, by photo content and pipeline.

One SQLite file (WAL mode) keyed by ``(sha, pipeline)``: ``sha`` is the SHA-256 of
the photo's bytes (a renamed or moved photo is still a hit; an edited one is
not), ``pipeline`` names everything that decides the faces and their vectors
(detector and its settings, base + head key, flip). Stored per photo: its
displayed size and each face's box, score, landmarks and identity vector, so a
later run skips decoding, detection and embedding and only re-matches the
vectors against the gallery as it is then (matching is cheap, so a gallery
change re-names every face without re-processing any photo). The last matches
of each photo are stored too, keyed by the gallery's match key (content
fingerprint of its vectors and names, base + head key, threshold: see
:func:`facerec.tagging.gallery_match_key`), so a run over unchanged photos and an
unchanged gallery needs no matcher at all.

Each photo is committed in its own small transaction, so an interrupted run
leaves a consistent cache and the next run resumes where it stopped.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from facerec.types import Face, Match

_SCHEMA = """
CREATE TABLE IF NOT EXISTS photos (
    sha TEXT NOT NULL, pipeline TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    faces TEXT NOT NULL, vectors BLOB NOT NULL, dim INTEGER NOT NULL, added REAL NOT NULL,
    PRIMARY KEY (sha, pipeline));
CREATE TABLE IF NOT EXISTS models (signature TEXT PRIMARY KEY, key TEXT NOT NULL, threshold REAL NOT NULL);
CREATE TABLE IF NOT EXISTS matches (
    sha TEXT NOT NULL, pipeline TEXT NOT NULL, gallery TEXT NOT NULL, matches TEXT NOT NULL,
    PRIMARY KEY (sha, pipeline));
"""


class TagCache:
    """Faces and vectors per ``(photo content hash, pipeline key)``.

    Args:
        path: the SQLite file (its folder is created).

    Safe to use from several threads of one process (one connection, a lock)
    and from several processes at once (SQLite locking, WAL).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection (the cache stays on disk)."""
        with self._lock:
            self._con.close()

    def __enter__(self) -> "TagCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self, sha: str, pipeline: str) -> tuple[tuple[int, int], list[Face]] | None:
        """``((width, height), faces)`` stored for a photo, or ``None``.

        Faces have ``box``, ``score``, ``landmarks`` and ``vector`` (``crop`` is ``None``).
        """
        with self._lock:
            row = self._con.execute("SELECT width, height, faces, vectors, dim FROM photos WHERE sha=? AND pipeline=?",
                                    (sha, pipeline)).fetchone()
        if row is None:
            return None
        w, h, faces_json, blob, dim = row
        items = json.loads(faces_json)
        vecs = np.frombuffer(blob, dtype=np.float32).reshape(len(items), dim) if items else np.zeros((0, dim), np.float32)
        faces = [Face(box=tuple(it["box"]), score=it["score"],
                      landmarks=None if it["landmarks"] is None else np.array(it["landmarks"], dtype=np.float32),
                      vector=vecs[i].copy()) for i, it in enumerate(items)]
        return (int(w), int(h)), faces

    def put(self, sha: str, pipeline: str, size: tuple[int, int], faces: list[Face]) -> None:
        """Store one photo's faces (each with a ``vector``), committed at once."""
        items = [{"box": [float(v) for v in f.box], "score": float(f.score),
                  "landmarks": None if f.landmarks is None else np.asarray(f.landmarks, dtype=float).tolist()}
                 for f in faces]
        vecs = [np.asarray(f.vector, dtype=np.float32) for f in faces]
        dim = len(vecs[0]) if vecs else 0
        blob = np.stack(vecs).tobytes() if vecs else b""
        with self._lock:
            self._con.execute("INSERT OR REPLACE INTO photos VALUES (?,?,?,?,?,?,?,?)",
                              (sha, pipeline, int(size[0]), int(size[1]), json.dumps(items), blob, dim, time.time()))

    def count(self, pipeline: str | None = None) -> int:
        """How many photos are stored (for one pipeline key, or all)."""
        q, args = "SELECT COUNT(*) FROM photos", ()
        if pipeline is not None:
            q, args = q + " WHERE pipeline=?", (pipeline,)
        with self._lock:
            return int(self._con.execute(q, args).fetchone()[0])

    def model(self, signature: str) -> tuple[str, float] | None:
        """``(embedder key, threshold)`` remembered for a model signature (see :func:`facerec.tagging.model_signature`)."""
        with self._lock:
            row = self._con.execute("SELECT key, threshold FROM models WHERE signature=?", (signature,)).fetchone()
        return None if row is None else (row[0], float(row[1]))

    def set_model(self, signature: str, key: str, threshold: float) -> None:
        """Remember which embedder key and threshold a model signature gave."""
        with self._lock:
            self._con.execute("INSERT OR REPLACE INTO models VALUES (?,?,?)", (signature, key, float(threshold)))

    def get_matches(self, sha: str, pipeline: str, gallery: str) -> list[Match] | None:
        """The matches stored for a photo's faces (in face order) under gallery match key ``gallery``, or ``None``."""
        with self._lock:
            row = self._con.execute("SELECT matches FROM matches WHERE sha=? AND pipeline=? AND gallery=?",
                                    (sha, pipeline, gallery)).fetchone()
        return None if row is None else [Match(name, float(score)) for name, score in json.loads(row[0])]

    def put_matches(self, sha: str, pipeline: str, gallery: str, matches: list[Match]) -> None:
        """Store a photo's matches under gallery match key ``gallery`` (replaces older ones)."""
        text = json.dumps([[m.name, float(m.score)] for m in matches], ensure_ascii=False)
        with self._lock:
            self._con.execute("INSERT OR REPLACE INTO matches VALUES (?,?,?,?)", (sha, pipeline, gallery, text))
