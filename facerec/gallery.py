"""The enrolled people: photos in ``<gallery>/<person>/``, vectors in SQLite.

Each person's photos stay visible as ordinary files. The index
(``<gallery>/.facerec/index.sqlite``, WAL mode) records every photo with its
content hash and chosen face box, and one vector per (photo hash, face box,
model key), so enrolling is incremental and switching the base network
re-embeds instead of mixing vectors. Every change runs in one transaction and
bumps a version counter that tells matchers to refit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
import unicodedata
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from facerec.errors import FaceRecError, InvalidNameError, PersonExistsError, PersonNotFoundError
from facerec.images import is_image_path
from facerec.types import UNKNOWN

MAX_NAME_LENGTH = 64
INDEX_DIR = ".facerec"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS photos (
    person TEXT NOT NULL, file TEXT NOT NULL, sha TEXT NOT NULL,
    box TEXT, added REAL NOT NULL, PRIMARY KEY (person, file));
CREATE INDEX IF NOT EXISTS photos_sha ON photos(sha);
CREATE TABLE IF NOT EXISTS vectors (
    sha TEXT NOT NULL, box TEXT NOT NULL, model TEXT NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (sha, box, model));
INSERT OR IGNORE INTO meta VALUES ('version', '0');
"""


def validate_name(name: str) -> str:
    """Check a person's name and return it NFC-normalised and trimmed.

    Display names with spaces, accents and most punctuation are fine; path
    separators, ``..``, control characters, a leading dot, the reserved word
    ``unknown`` and names over 64 characters are not.

    Raises:
        InvalidNameError: with the reason.
    """
    if not isinstance(name, str):
        raise InvalidNameError("a name must be text")
    clean = unicodedata.normalize("NFC", name).strip()
    if not clean:
        raise InvalidNameError("a name cannot be empty")
    if len(clean) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"name too long ({len(clean)} characters, at most {MAX_NAME_LENGTH})")
    if any(c in clean for c in "/\\") or ".." in clean:
        raise InvalidNameError(f"name {clean!r} must not contain '/', '\\' or '..'")
    if clean.startswith("."):
        raise InvalidNameError(f"name {clean!r} must not start with a dot")
    if any(unicodedata.category(c).startswith("C") for c in clean):
        raise InvalidNameError("name contains control characters")
    if clean.casefold() == UNKNOWN:
        raise InvalidNameError(f"{UNKNOWN!r} is reserved for faces nobody enrolled")
    return clean


def content_hash(data: bytes) -> str:
    """SHA-256 hex digest of a photo's bytes."""
    return hashlib.sha256(data).hexdigest()


def box_key(box: tuple[float, float, float, float] | None) -> str:
    """A face box as stable text, whole pixels (``""`` for "the only face")."""
    if box is None:
        return ""
    return json.dumps([int(round(v)) for v in box])


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` (following a symlink) with ``data`` in one step: readers see the
    old file or the new one, never a part. The file's permission bits are kept.

    Raises:
        OSError: nothing was changed (the temporary file is removed).
    """
    path = Path(path)
    target = path.resolve() if path.is_symlink() else path
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o7777)
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Person:
    """An enrolled person and how many photos they have."""

    name: str
    photos: int


@dataclass(frozen=True)
class PhotoRecord:
    """One enrolled photo.

    Attributes:
        person: whose photo.
        path: the file inside the gallery.
        sha: content hash.
        box: the enrolled face's ``(x, y, w, h)`` in photo pixels, or ``None``
            when not yet known (a photo dropped into the folder by hand).
    """

    person: str
    path: Path
    sha: str
    box: tuple[int, int, int, int] | None


class Gallery:
    """A folder of enrolled people with its SQLite index.

    Safe for several processes (the app and the CLI) at once: SQLite
    serialises writers, and files are written under temporary names and
    renamed into place before the index refers to them.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / INDEX_DIR).mkdir(exist_ok=True)
        self.db_path = self.root / INDEX_DIR / "index.sqlite"
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")  # persistent: set once per database
            con.executescript(_SCHEMA)

    # -- plumbing ---------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def person_dir(self, name: str) -> Path:
        """The folder of a (validated) person's photos."""
        path = (self.root / validate_name(name)).resolve()
        if path.parent != self.root.resolve():
            raise InvalidNameError(f"name {name!r} would leave the gallery folder")
        return path

    @property
    def version(self) -> int:
        """Bumped by every change to people, photos or vectors."""
        with self._connect() as con:
            return int(con.execute("SELECT value FROM meta WHERE key='version'").fetchone()[0])

    # -- reading -------------------------------------------------------------------

    def people(self) -> list[Person]:
        """Every enrolled person (a folder in the gallery), sorted by name."""
        with self._connect() as con:
            counts = dict(con.execute("SELECT person, COUNT(*) FROM photos GROUP BY person"))
        names = {p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")}
        names |= set(counts)
        return [Person(n, int(counts.get(n, 0))) for n in sorted(names, key=str.casefold)]

    def __contains__(self, name: str) -> bool:
        try:
            return self.person_dir(name).is_dir()
        except InvalidNameError:
            return False

    def photos(self, name: str | None = None) -> list[PhotoRecord]:
        """Indexed photos of one person (or of everyone), oldest first."""
        q = "SELECT person, file, sha, box FROM photos"
        args: tuple = ()
        if name is not None:
            q += " WHERE person = ?"
            args = (validate_name(name),)
        with self._connect() as con:
            rows = con.execute(q + " ORDER BY added, file", args).fetchall()
        return [
            PhotoRecord(p, self.root / p / f, sha, tuple(json.loads(b)) if b else None)
            for p, f, sha, b in rows
        ]

    def has_photo(self, name: str, sha: str) -> bool:
        """Whether this exact photo is already enrolled for ``name``."""
        with self._connect() as con:
            row = con.execute("SELECT 1 FROM photos WHERE person=? AND sha=?", (validate_name(name), sha)).fetchone()
        return row is not None

    def vectors(self, model: str) -> tuple[np.ndarray, list[str], list[PhotoRecord]]:
        """All stored vectors made by ``model``.

        Returns:
            ``(X, names, missing)``: ``X`` is ``(N, D)`` float32, ``names`` the
            person of each row, ``missing`` the photos with no vector for ``model`` yet.
        """
        with self._connect() as con:
            rows = con.execute(
                "SELECT p.person, p.file, p.sha, p.box, v.vector FROM photos p LEFT JOIN vectors v "
                "ON v.sha = p.sha AND v.box = COALESCE(p.box, '') AND v.model = ? ORDER BY p.person, p.added",
                (model,),
            ).fetchall()
        vecs, names, missing = [], [], []
        for person, f, sha, b, blob in rows:
            if blob is None:
                missing.append(PhotoRecord(person, self.root / person / f, sha, tuple(json.loads(b)) if b else None))
            else:
                vecs.append(np.frombuffer(blob, dtype=np.float32))
                names.append(person)
        dim = len(vecs[0]) if vecs else 0
        X = np.stack(vecs) if vecs else np.zeros((0, dim), dtype=np.float32)
        return X, names, missing

    # -- writing -------------------------------------------------------------------

    def add_photo(self, name: str, data: bytes, box, vector: np.ndarray, model: str,
                  suffix: str = ".jpg") -> PhotoRecord:
        """Enrol one photo of ``name`` with its face box and vector.

        The photo's bytes are stored unchanged as ``<gallery>/<name>/<hash>.<ext>``.
        Re-adding the same photo for the same person changes nothing.

        Args:
            name: person (created if new).
            data: the photo file's bytes.
            box: ``(x, y, w, h)`` of the enrolled face in photo pixels.
            vector: ``(D,)`` float32 identity vector of that face.
            model: key of the embedder that made ``vector``.
            suffix: file extension to store the photo under.
        """
        folder = self.person_dir(name)
        person = folder.name
        sha = content_hash(data)
        suffix = suffix.lower() if suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".pgm", ".heic"} else ".jpg"
        fname = sha[:16] + suffix
        target = folder / fname
        folder.mkdir(exist_ok=True)
        created = not target.exists()
        if created:
            write_atomic(target, data)
        bkey = box_key(box)
        try:
            with self._transaction() as con:
                con.execute("INSERT OR IGNORE INTO photos VALUES (?,?,?,?,?)", (person, fname, sha, bkey, time.time()))
                con.execute("INSERT OR REPLACE INTO vectors VALUES (?,?,?,?)",
                            (sha, bkey, model, np.asarray(vector, dtype=np.float32).tobytes()))
        except BaseException:
            if created:
                target.unlink(missing_ok=True)
            raise
        return PhotoRecord(person, target, sha, tuple(json.loads(bkey)) if bkey else None)

    def set_face(self, record: PhotoRecord, box, vector: np.ndarray, model: str) -> None:
        """Store the face box (if it was unknown) and ``model``'s vector for an indexed photo."""
        bkey = box_key(record.box if record.box is not None else box)
        with self._transaction() as con:
            con.execute("UPDATE photos SET box=? WHERE person=? AND file=?", (bkey, record.person, record.path.name))
            con.execute("INSERT OR REPLACE INTO vectors VALUES (?,?,?,?)",
                        (record.sha, bkey, model, np.asarray(vector, dtype=np.float32).tobytes()))

    def sync(self) -> tuple[list[PhotoRecord], list[PhotoRecord]]:
        """Reconcile the index with the folders (photos added or deleted by hand).

        Returns:
            ``(added, dropped)``: photos found on disk and now indexed (with
            unknown face boxes, to be embedded), and index rows whose file is gone.
        """
        indexed = {(r.person, r.path.name): r for r in self.photos()}
        on_disk = {}
        for folder in self.root.iterdir():
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            try:
                validate_name(folder.name)
            except InvalidNameError:
                continue
            for f in folder.iterdir():
                if f.is_file() and not f.name.startswith(".") and is_image_path(f):
                    on_disk[(folder.name, f.name)] = f
        added_keys = [k for k in on_disk if k not in indexed]
        dropped = [r for k, r in indexed.items() if k not in on_disk]
        added = []
        if added_keys or dropped:
            with self._transaction() as con:
                for person, fname in added_keys:
                    try:
                        sha = content_hash(on_disk[(person, fname)].read_bytes())
                    except OSError:
                        continue
                    con.execute("INSERT OR IGNORE INTO photos VALUES (?,?,?,NULL,?)", (person, fname, sha, time.time()))
                    added.append(PhotoRecord(person, on_disk[(person, fname)], sha, None))
                for r in dropped:
                    con.execute("DELETE FROM photos WHERE person=? AND file=?", (r.person, r.path.name))
        return added, dropped

    def forget_photo(self, record: PhotoRecord) -> None:
        """Remove one photo from the index and the folder (e.g. a photo with no usable face)."""
        with self._transaction() as con:
            con.execute("DELETE FROM photos WHERE person=? AND file=?", (record.person, record.path.name))
        record.path.unlink(missing_ok=True)

    def remove_photo(self, name: str, file_name: str) -> None:
        """Delete one enrolled photo of ``name`` (file and index entry)."""
        folder = self.person_dir(name)
        if Path(file_name).name != file_name or not (folder / file_name).is_file():
            raise FaceRecError(f"{name} has no photo {file_name!r}")
        self.forget_photo(PhotoRecord(folder.name, folder / file_name, "", None))

    def remove_person(self, name: str) -> int:
        """Forget a person: their photos, folder and vectors. Returns the photo count removed."""
        folder = self.person_dir(name)
        if not folder.is_dir():
            raise PersonNotFoundError(f"nobody called {name!r} is enrolled")
        trash = self.root / INDEX_DIR / f"trash-{uuid.uuid4().hex}"
        os.replace(folder, trash)  # atomic: the person vanishes at once
        try:
            with self._transaction() as con:
                n = con.execute("DELETE FROM photos WHERE person=?", (folder.name,)).rowcount
                con.execute("DELETE FROM vectors WHERE NOT EXISTS "
                            "(SELECT 1 FROM photos p WHERE p.sha = vectors.sha)")
        except BaseException:
            os.replace(trash, folder)
            raise
        shutil.rmtree(trash, ignore_errors=True)
        return n

    def rename_person(self, old: str, new: str) -> None:
        """Rename a person (folder and index); refuses to overwrite someone else."""
        src, dst = self.person_dir(old), self.person_dir(new)
        if not src.is_dir():
            raise PersonNotFoundError(f"nobody called {old!r} is enrolled")
        if src == dst:
            return
        if dst.exists() and not (src.name.casefold() == dst.name.casefold() and os.path.samefile(src, dst)):
            raise PersonExistsError(f"{new!r} is already enrolled; remove or rename them first")
        os.replace(src, dst)
        try:
            with self._transaction() as con:
                con.execute("UPDATE photos SET person=? WHERE person=?", (dst.name, src.name))
        except BaseException:
            os.replace(dst, src)
            raise
