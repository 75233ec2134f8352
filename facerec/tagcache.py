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

The file is created 0600 (its folder 0700 when created here) and every connection
runs with ``secure_delete``, so :meth:`TagCache.forget` leaves nothing of a
forgotten person in it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from facerec.errors import DiskFullError
from facerec.storage import checkpoint, disk_guard, private_dir, private_file, tighten, use_wal
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

    Raises:
        DiskFullError: (opening, or any write) the disk or quota is full; a failed write
            leaves the cache as it was (:class:`CacheSession` carries on without it).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with disk_guard(self.path):
            self._open()

    def _open(self) -> None:
        private_dir(self.path.parent)
        private_file(self.path)  # SQLite gives its -wal and -shm files the same mode
        for suffix in ("", "-wal", "-shm"):
            tighten(os.fspath(self.path) + suffix, 0o600)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            self._con.execute("PRAGMA secure_delete=ON")
            use_wal(self._con)  # retried: several processes may open a new cache at once
            self._con.execute("PRAGMA synchronous=NORMAL")
            fresh = self._con.execute("SELECT 1 FROM sqlite_master WHERE name='photos'").fetchone() is None
            self._con.executescript(_SCHEMA)
            if fresh:  # secure_delete from the start (user_version 1): no VACUUM needed at a forget
                self._con.execute("PRAGMA user_version=1")
        except BaseException:
            self._con.close()
            raise

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
        with self._lock, disk_guard(self.path):
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
        with self._lock, disk_guard(self.path):
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
        with self._lock, disk_guard(self.path):
            self._con.execute("INSERT OR REPLACE INTO matches VALUES (?,?,?,?)", (sha, pipeline, gallery, text))

    def forget(self, names: Iterable[str], shas: Iterable[str] = (),
               vectors: Mapping[str, np.ndarray] | None = None) -> tuple[int, int, bool]:
        """Forget people: drop every stored match list naming one of ``names`` (those photos
        are matched again next time), and the cached faces and vectors of those photos, of
        the photos ``shas`` (theirs), and of every photo with a face at least as similar to
        one of ``vectors[embedder key]`` (theirs) as the threshold remembered for that key
        (their face tagged before they were enrolled, or named someone else): all of these
        are processed again next time.

        The file is then rewritten once if it predates ``secure_delete``, and its log
        checkpointed and truncated, so no deleted row survives in it.

        Returns:
            ``(photos, match_lists, clean)``: cached photos dropped, match lists dropped,
            and whether the log could be cleared (``False``: another connection kept it busy).
        """
        names = set(names)
        hit = set(shas)
        with self._lock:
            con = self._con
            con.execute("BEGIN IMMEDIATE")
            try:
                for name in names:  # a cheap text filter first, then the exact check
                    needle = json.dumps(name, ensure_ascii=False)
                    for sha, text in con.execute("SELECT sha, matches FROM matches WHERE instr(matches, ?) > 0",
                                                 (needle,)).fetchall():
                        if any(n in names for n, _ in json.loads(text)):
                            hit.add(sha)
                hit |= self._similar(con, vectors or {})
                n_matches = n_photos = 0
                hits = sorted(hit)
                for i in range(0, len(hits), 500):
                    part = hits[i:i + 500]
                    marks = ",".join("?" * len(part))
                    n_matches += con.execute(f"DELETE FROM matches WHERE sha IN ({marks})", part).rowcount
                    n_photos += con.execute(f"DELETE FROM photos WHERE sha IN ({marks})", part).rowcount
                con.execute("COMMIT")
            except BaseException:
                try:
                    con.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise
            if int(con.execute("PRAGMA user_version").fetchone()[0]) < 1:  # written before secure_delete
                con.execute("VACUUM")
                con.execute("PRAGMA user_version=1")
            clean = checkpoint(con)
            con.execute("PRAGMA busy_timeout=30000")
        return n_photos, n_matches, clean

    @staticmethod
    def _similar(con: sqlite3.Connection, vectors: Mapping[str, np.ndarray]) -> set[str]:
        """Photos with a face close to one of ``vectors[key]`` under pipelines of embedder ``key``."""
        thresholds: dict[str, float] = {}
        for key, thr in con.execute("SELECT key, threshold FROM models"):
            thresholds[key] = min(float(thr), thresholds.get(key, 1.0))
        found: set[str] = set()
        for key, theirs in vectors.items():
            if key not in thresholds or theirs is None or not len(theirs):
                continue
            theirs = np.asarray(theirs, np.float32)
            theirs = theirs / np.maximum(np.linalg.norm(theirs, axis=1, keepdims=True), 1e-12)
            rows = con.execute("SELECT sha, vectors, dim FROM photos WHERE substr(pipeline, 1, ?) = ? AND dim = ?",
                               (len(key) + 1, key + "|", theirs.shape[1]))
            for sha, blob, dim in rows:
                faces = np.frombuffer(blob, dtype=np.float32).reshape(-1, dim)
                if len(faces):
                    faces = faces / np.maximum(np.linalg.norm(faces, axis=1, keepdims=True), 1e-12)
                    if float((faces @ theirs.T).max()) >= thresholds[key] - 1e-6:
                        found.add(sha)
        return found


class CacheSession:
    """One tagging run's use of a :class:`TagCache` (or of none): reads go to the cache;
    the first write that meets a full disk turns writing off for the rest of the run
    instead of ending it, and every photo whose faces are then not stored gets a one-line
    note (it is processed again by the next run, which carries on from the stored ones).

    Args:
        cache: the cache, or ``None`` (no cache: nothing read or written, no notes).
        full: why the cache could not even be opened (a full disk), if so: every photo
            processed gets a note.
    """

    def __init__(self, cache: TagCache | None, full: str | None = None) -> None:
        self.cache = cache
        self.full = full

    @property
    def writable(self) -> bool:
        return self.cache is not None and self.full is None

    def get(self, sha: str, pipeline: str) -> tuple[tuple[int, int], list[Face]] | None:
        """:meth:`TagCache.get` (``None`` without a cache)."""
        return None if self.cache is None else self.cache.get(sha, pipeline)

    def get_matches(self, sha: str, pipeline: str, gallery: str) -> list[Match] | None:
        """:meth:`TagCache.get_matches` (``None`` without a cache)."""
        return None if self.cache is None else self.cache.get_matches(sha, pipeline, gallery)

    def put(self, sha: str, pipeline: str, size: tuple[int, int], faces: list[Face], name: str) -> str | None:
        """Store one photo's faces; returns the note for photo ``name`` when they could not be stored."""
        if self.writable:
            try:
                self.cache.put(sha, pipeline, size, faces)
                return None
            except DiskFullError as exc:
                self.full = str(exc.__cause__ or exc)
        if self.full is None:
            return None  # no cache asked for
        return f"{name}: not stored in the tag cache (disk full: {self.full}); it is processed again next run"

    def put_matches(self, sha: str, pipeline: str, gallery: str, matches: list[Match]) -> None:
        """Store a photo's matches when the cache is writable (a miss only costs a re-match later)."""
        if self.writable:
            try:
                self.cache.put_matches(sha, pipeline, gallery, matches)
            except DiskFullError as exc:
                self.full = str(exc.__cause__ or exc)
