"""The photo library's store: its folders, the faces found in its photos, and the user's answers.

One SQLite file, ``<gallery>/.facerec/library.sqlite`` (:attr:`GalleryFiles.library`, mode 0600):

- ``folders``: the folders added to the library;
- ``photos``: every photo of the last scan (path, content hash, size and modification time,
  displayed size, or why it could not be read);
- ``faces``: the faces of each photo (box in displayed-photo pixels, the matcher's name and
  score, the identity vector) and the embedder that made the vectors (``meta``);
- ``marks``: how the user arranged unnamed faces: ``hidden`` (a group hidden as people in the
  background) and ``group`` (a token: faces merged into one group share one; a face taken out
  of a group gets one of its own, see :data:`ALONE`), keyed like the answers;
- ``answers``: what the user said about a face: ``yes`` (this is NAME: a named group, a
  confirmed suggestion) or ``no`` (not NAME: a face taken out of a group or a person, a
  rejected suggestion). Answers are keyed by the photo's **content hash** and the face box,
  never by path, scan or model, so a rescan, a moved photo, another detector or base, or a new
  threshold never loses them: a face found again is matched to an answer by box overlap
  (:func:`iou` >= :data:`SAME_FACE_IOU`).

Nothing here decides who a face is; :mod:`facerec.library` (the service) does. This module
stands on the storage floor only.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerec.storage import GalleryFiles, open_db, transaction
from facerec.types import iou

YES, NO = "yes", "no"
HIDDEN, GROUP = "hidden", "group"
ALONE = "alone:"  # a group token starting with this keeps its face apart (taken out of a group)
SAME_FACE_IOU = 0.5  # two boxes of one photo at least this much overlapped are the same face

SCHEMA = """
CREATE TABLE IF NOT EXISTS folders (path TEXT PRIMARY KEY, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS photos (
    path TEXT PRIMARY KEY, sha TEXT NOT NULL, bytes INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    width INTEGER, height INTEGER, error TEXT, scanned REAL NOT NULL);
CREATE INDEX IF NOT EXISTS photos_sha ON photos (sha);
CREATE TABLE IF NOT EXISTS faces (
    path TEXT NOT NULL, idx INTEGER NOT NULL, sha TEXT NOT NULL,
    x REAL NOT NULL, y REAL NOT NULL, w REAL NOT NULL, h REAL NOT NULL,
    name TEXT NOT NULL, score REAL NOT NULL, vector BLOB,
    PRIMARY KEY (path, idx));
CREATE INDEX IF NOT EXISTS faces_sha ON faces (sha);
CREATE TABLE IF NOT EXISTS answers (
    sha TEXT NOT NULL, x REAL NOT NULL, y REAL NOT NULL, w REAL NOT NULL, h REAL NOT NULL,
    name TEXT NOT NULL, answer TEXT NOT NULL CHECK (answer IN ('yes', 'no')), at REAL NOT NULL,
    PRIMARY KEY (sha, x, y, w, h, name));
CREATE TABLE IF NOT EXISTS marks (
    sha TEXT NOT NULL, x REAL NOT NULL, y REAL NOT NULL, w REAL NOT NULL, h REAL NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('hidden', 'group')), value TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (sha, x, y, w, h, kind));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class StoredPhoto:
    """One photo of the library as last scanned."""

    path: Path
    sha: str
    bytes: int
    mtime_ns: int
    size: tuple[int, int] | None
    error: str | None


@dataclass(frozen=True)
class StoredFace:
    """One face of a library photo as the matcher named it at the last scan or re-match.

    Attributes:
        path, sha: its photo and the photo's content hash.
        idx: its number in the photo (0-based, left to right).
        box: ``(x, y, w, h)`` in displayed-photo pixels.
        name, score: the matcher's answer (``"unknown"`` below the threshold).
        vector: the identity vector (``None`` if none was stored).
    """

    path: Path
    sha: str
    idx: int
    box: Box
    name: str
    score: float
    vector: np.ndarray | None


@dataclass(frozen=True)
class Mark:
    """How the user arranged the unnamed face at ``box`` of photo ``sha``: ``hidden`` (value
    ``""``) or ``group`` (value: the group's token)."""

    sha: str
    box: Box
    kind: str
    value: str


@dataclass(frozen=True)
class Answer:
    """What the user said about the face at ``box`` of photo ``sha``: it is (``yes``) or is not
    (``no``) ``name``."""

    sha: str
    box: Box
    name: str
    answer: str


class LibraryStore:
    """The library file of the gallery at ``gallery`` (opened, and created when missing, on first use)."""

    def __init__(self, gallery: Path) -> None:
        self.path = GalleryFiles(Path(gallery)).library
        self._con: sqlite3.Connection | None = None

    @property
    def con(self) -> sqlite3.Connection:
        if self._con is None:
            self._con = open_db(self.path, SCHEMA, fresh_marker="marks")  # the newest table: older files get it
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> LibraryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def generation(self) -> int:
        """A number that every change to the file, by any connection or process, increases (what
        the library's memos of who is who are keyed by)."""
        row = self.con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, counted in :meth:`generation`."""
        with transaction(self.con, self.path) as con:
            yield con
            con.execute("INSERT INTO meta VALUES ('generation', '1') ON CONFLICT (key) DO UPDATE "
                        "SET value = CAST(value AS INTEGER) + 1")

    # -- folders -------------------------------------------------------------------------

    def folders(self) -> list[Path]:
        """The library's folders, in the order they were added."""
        return [Path(r[0]) for r in self.con.execute("SELECT path FROM folders ORDER BY added, path")]

    def add_folder(self, folder: Path) -> bool:
        """Add ``folder`` (already checked and resolved by the caller); ``False`` if it was there."""
        with self._write() as con:
            cur = con.execute("INSERT OR IGNORE INTO folders VALUES (?, ?)", (str(folder), time.time()))
        return cur.rowcount > 0

    # -- photos and faces ----------------------------------------------------------------

    def photos(self, paths: Iterable[Path] | None = None) -> dict[Path, StoredPhoto]:
        """Every photo of the last scan (or those of ``paths`` that it has), by path."""
        query = "SELECT path, sha, bytes, mtime_ns, width, height, error FROM photos"
        if paths is None:
            rows = self.con.execute(query).fetchall()
        else:
            wanted, rows = sorted({str(p) for p in paths}), []
            for i in range(0, len(wanted), 500):
                chunk = wanted[i:i + 500]
                rows += self.con.execute(f"{query} WHERE path IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        return {Path(p): StoredPhoto(Path(p), sha, b, m, (w, h) if w is not None else None, e)
                for p, sha, b, m, w, h, e in rows}

    def put_photo(self, photo: StoredPhoto, faces: Sequence[tuple[Box, str, float, np.ndarray | None]]) -> None:
        """Store one scanned photo and its faces ``(box, name, score, vector)`` (replacing what was there)."""
        w, h = photo.size if photo.size else (None, None)
        with self._write() as con:
            con.execute("INSERT OR REPLACE INTO photos VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (str(photo.path), photo.sha, photo.bytes, photo.mtime_ns, w, h, photo.error, time.time()))
            con.execute("DELETE FROM faces WHERE path = ?", (str(photo.path),))
            con.executemany("INSERT INTO faces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                (str(photo.path), i, photo.sha, *(float(v) for v in box), name, float(score),
                 None if vec is None else np.asarray(vec, dtype=np.float32).tobytes())
                for i, (box, name, score, vec) in enumerate(faces)])

    def remove_photos(self, paths: Iterable[Path]) -> int:
        """Forget photos that are gone from the library's folders (answers about them stay)."""
        paths = [str(p) for p in paths]
        if not paths:
            return 0
        with self._write() as con:
            for p in paths:
                con.execute("DELETE FROM faces WHERE path = ?", (p,))
                con.execute("DELETE FROM photos WHERE path = ?", (p,))
        return len(paths)

    def faces(self) -> list[StoredFace]:
        """Every face of the library, by photo path then number."""
        rows = self.con.execute("SELECT path, sha, idx, x, y, w, h, name, score, vector FROM faces ORDER BY path, idx")
        return [StoredFace(Path(p), sha, i, (x, y, w, h), n, s,
                           None if v is None else np.frombuffer(v, dtype=np.float32).copy())
                for p, sha, i, x, y, w, h, n, s, v in rows]

    def set_matches(self, matches: Sequence[tuple[Path, int, str, float]]) -> None:
        """Replace the matcher's names and scores ``(path, idx, name, score)`` (after a re-match)."""
        with self._write() as con:
            con.executemany("UPDATE faces SET name = ?, score = ? WHERE path = ? AND idx = ?",
                            [(n, float(s), str(p), int(i)) for p, i, n, s in matches])

    def rename(self, old: str, new: str) -> None:
        """A person renamed (or merged into ``new``): their answers and stored names follow."""
        with self._write() as con:
            con.execute("UPDATE OR REPLACE answers SET name = ? WHERE name = ?", (new, old))
            con.execute("UPDATE faces SET name = ? WHERE name = ?", (new, old))

    def forget(self, name: str) -> int:
        """Everything that names ``name`` (a forgotten person): their answers, and the photos a face
        of which was named or answered as them, with those photos' faces, vectors and marks (the next
        scan processes them again). Returns how many photos were dropped."""
        with self._write() as con:
            shas = {r[0] for r in con.execute("SELECT sha FROM faces WHERE name = ?", (name,))}
            shas |= {r[0] for r in con.execute("SELECT sha FROM answers WHERE name = ?", (name,))}
            con.execute("DELETE FROM answers WHERE name = ?", (name,))
            n = 0
            for sha in shas:
                con.execute("DELETE FROM marks WHERE sha = ?", (sha,))
                con.execute("DELETE FROM faces WHERE sha = ?", (sha,))
                n += con.execute("DELETE FROM photos WHERE sha = ?", (sha,)).rowcount
        return n

    # -- meta ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as con:
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- answers -----------------------------------------------------------------------------

    def answers(self) -> dict[str, list[Answer]]:
        """Every answer, by photo content hash."""
        out: dict[str, list[Answer]] = {}
        for sha, x, y, w, h, name, answer in self.con.execute(
                "SELECT sha, x, y, w, h, name, answer FROM answers ORDER BY at"):
            out.setdefault(sha, []).append(Answer(sha, (x, y, w, h), name, answer))
        return out

    def answer(self, sha: str, box: Box, name: str, answer: str) -> None:
        """Remember that the face at ``box`` of photo ``sha`` is (``yes``) or is not (``no``) ``name``.

        A ``yes`` replaces any other ``yes`` for that face (a face is one person); an answer
        replaces an earlier one about the same face and name (faces matched by box overlap).
        """
        if answer not in (YES, NO):
            raise ValueError(f"answer must be {YES!r} or {NO!r}, got {answer!r}")
        box = tuple(round(float(v), 2) for v in box)
        with self._write() as con:
            for x, y, w, h, other, was in con.execute(
                    "SELECT x, y, w, h, name, answer FROM answers WHERE sha = ?", (sha,)).fetchall():
                if iou((x, y, w, h), box) < SAME_FACE_IOU:
                    continue
                if other == name or (answer == YES and was == YES):
                    con.execute("DELETE FROM answers WHERE sha = ? AND x = ? AND y = ? AND w = ? AND h = ? "
                                "AND name = ?", (sha, x, y, w, h, other))
            con.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (sha, *box, name, answer, time.time()))

    # -- marks -------------------------------------------------------------------------------

    def marks(self) -> dict[str, list[Mark]]:
        """Every mark, by photo content hash."""
        out: dict[str, list[Mark]] = {}
        for sha, x, y, w, h, kind, value in self.con.execute(
                "SELECT sha, x, y, w, h, kind, value FROM marks ORDER BY at"):
            out.setdefault(sha, []).append(Mark(sha, (x, y, w, h), kind, value))
        return out

    def mark(self, faces: Iterable[tuple[str, Box]], kind: str, value: str | None) -> None:
        """Set (``value`` a string) or clear (``None``) the ``kind`` mark of each face
        ``(sha, box)``; a face's earlier mark of that kind is replaced (faces matched by box overlap)."""
        if kind not in (HIDDEN, GROUP):
            raise ValueError(f"mark must be {HIDDEN!r} or {GROUP!r}, got {kind!r}")
        with self._write() as con:
            for sha, box in faces:
                box = tuple(round(float(v), 2) for v in box)
                for x, y, w, h in con.execute("SELECT x, y, w, h FROM marks WHERE sha = ? AND kind = ?",
                                              (sha, kind)).fetchall():
                    if iou((x, y, w, h), box) >= SAME_FACE_IOU:
                        con.execute("DELETE FROM marks WHERE sha = ? AND x = ? AND y = ? AND w = ? AND h = ? "
                                    "AND kind = ?", (sha, x, y, w, h, kind))
                if value is not None:
                    con.execute("INSERT INTO marks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                (sha, *box, kind, value, time.time()))

    def retoken(self, old: Iterable[str], new: str) -> None:
        """Groups merged: every face of the groups ``old`` joins the group ``new``."""
        with self._write() as con:
            con.executemany("UPDATE marks SET value = ? WHERE kind = ? AND value = ?",
                            [(new, GROUP, o) for o in old])
