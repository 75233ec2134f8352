"""The enrolled people: photos in ``<gallery>/<person>/``, vectors in SQLite.

Each person's photos stay visible as ordinary files. The index
(``<gallery>/.facerec/index.sqlite``, WAL mode, ``secure_delete`` on) records every
photo with its content hash and chosen face box, and one vector per (photo hash,
face box, model key), so enrolling is incremental and switching the base network
re-embeds instead of mixing vectors. Every change runs in one transaction and
bumps a version counter that tells matchers to refit.

Crash safety: a new photo is written as ``.<file>.pending`` while the index's write
lock is held, its row and vector are committed, and only then is it renamed to
``<file>``. :meth:`Gallery.sync` (under the same lock) finishes such a rename left
half done by a crash, and deletes a pending file whose row never committed, so a
photo, its row and its vector exist together or not at all, and a sync can never
index a photo that is being enrolled (it would lose the face box the user picked).

Privacy: the gallery folder, the index folder, person folders and photo files are
created 0700 / 0600 whatever the umask.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import unicodedata
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from facerec.errors import (
    FaceRecError, ForgetIncompleteError, InvalidNameError, PersonExistsError, PersonNotFoundError,
)
from facerec.images import is_image_path
from facerec.storage import (
    INDEX_DIR, GalleryFiles, checkpoint, content_hash, disk_guard, file_hash, open_db, private_dir, remove_tree,
    rollback as _rollback, shred, tighten, transaction, write_atomic,
)
from facerec.types import UNKNOWN

MAX_NAME_LENGTH = 64
PENDING = ".pending"
TRASH_PREFIX = "trash-"
_TMP_NAME = re.compile(r"^\..*\.[0-9a-f]{32}\.tmp$")  # write_atomic's temporary files
_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".pgm", ".heic"}

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
INSERT OR IGNORE INTO meta VALUES ('secure', '1');
""" + """
CREATE TABLE IF NOT EXISTS forgetting (
    person TEXT PRIMARY KEY, folder TEXT NOT NULL, trash TEXT NOT NULL,
    shas TEXT NOT NULL, sizes TEXT NOT NULL, started REAL NOT NULL);
CREATE TABLE IF NOT EXISTS forgetting_vectors (person TEXT NOT NULL, model TEXT NOT NULL, vector BLOB NOT NULL);
"""
_JOURNAL = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS forgetting ("):]


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
    if any(c in clean for c in "/\\|") or ".." in clean:
        raise InvalidNameError(f"name {clean!r} must not contain '/', '\\', '|' or '..' "
                               "('|' and '/' split photo managers' keywords)")
    if clean.startswith("."):
        raise InvalidNameError(f"name {clean!r} must not start with a dot")
    if any(unicodedata.category(c).startswith("C") for c in clean):
        raise InvalidNameError("name contains control characters")
    if clean.casefold() == UNKNOWN:
        raise InvalidNameError(f"{UNKNOWN!r} is reserved for faces nobody enrolled")
    return clean


def box_key(box: tuple[float, float, float, float] | None) -> str:
    """A face box as stable text, whole pixels (``""`` for "the only face")."""
    if box is None:
        return ""
    return json.dumps([int(round(v)) for v in box])


@dataclass(frozen=True)
class Person:
    """An enrolled person and how many photos they have."""

    name: str
    photos: int


@dataclass(frozen=True)
class GalleryProblem:
    """Something in the gallery folder that is not a person or not usable, and why."""

    path: Path
    reason: str


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


@dataclass(frozen=True)
class ForgetPlan:
    """What is being forgotten of one person, recorded in the index's forget journal before
    anything is deleted, so that a forget that failed or was killed can be finished.

    Attributes:
        name: the person.
        folder: their photo folder in the gallery.
        trash: where their folder goes before it is shredded.
        shas: content hashes of their photos (indexed rows and files in their folder).
        sizes: byte sizes of those files (a cheap filter before hashing other files).
        vectors: their stored vectors by embedder key, ``(N, D)`` float32 each.
    """

    name: str
    folder: Path
    trash: Path
    shas: frozenset[str]
    sizes: frozenset[int]
    vectors: dict[str, np.ndarray]


def _record(person: str, root: Path, file: str, sha: str, box: str | None) -> PhotoRecord:
    return PhotoRecord(person, root / person / file, sha, tuple(json.loads(box)) if box else None)


class Gallery:
    """A folder of enrolled people with its SQLite index.

    Safe for several processes (the app and the CLI) at once: SQLite serialises
    writers, every change to files happens while the index's write lock is held,
    and photos are renamed into place only after their row and vector are
    committed (see the module's docstring).
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.files = GalleryFiles(self.root)
        with disk_guard(self.root):
            private_dir(self.root)
            private_dir(self.files.state)
        tighten(self.files.state, 0o700)
        self.db_path = self.files.index
        # an existing index is only read here: opening a gallery never waits for a writer
        open_db(self.db_path, _SCHEMA, wal=True, fresh_marker="vectors").close()

    # -- plumbing ---------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for reading (on a full disk: a read-only view) or :meth:`_transaction`."""
        con = open_db(self.db_path, wal=False)
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that bumps the version; a full disk raises ``DiskFullError``."""
        with self._connect() as con, transaction(con, self.db_path):
            yield con
            con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")

    @staticmethod
    def _forgetting(con: sqlite3.Connection) -> set[str]:
        """Names in the forget journal (people whose forgetting has not finished)."""
        if con.execute("SELECT 1 FROM sqlite_master WHERE name='forgetting'").fetchone() is None:
            return set()
        return {r[0] for r in con.execute("SELECT person FROM forgetting")}

    def forgetting(self) -> list[str]:
        """People whose forgetting failed or was interrupted: not enrolled any more, but
        something of them may be left until the forget is run again."""
        with self._connect() as con:
            return sorted(self._forgetting(con), key=str.casefold)

    def _refuse_forgotten(self, con: sqlite3.Connection, *names: str) -> None:
        busy = self._forgetting(con) & set(names)
        if busy:
            n = sorted(busy)[0]
            raise FaceRecError(f"{n} is being forgotten and that did not finish; forget {n} again "
                               "(`facerec people remove`) before using this name")

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

    def _scan(self) -> tuple[dict[str, Path], list[GalleryProblem]]:
        """Person folders by name, and everything else in the gallery folder that is a problem."""
        folders: dict[str, Path] = {}
        problems: list[GalleryProblem] = []
        for p in sorted(self.root.iterdir()):
            if p.name == INDEX_DIR:
                continue
            try:
                is_dir = p.is_dir()
            except OSError:
                is_dir = False
            if not is_dir:
                if not p.name.startswith(".") and is_image_path(p):
                    problems.append(GalleryProblem(p, "a photo outside any person's folder is not used; "
                                                      "move it into a folder named after the person"))
                continue
            try:
                name = validate_name(p.name)
            except InvalidNameError as exc:
                problems.append(GalleryProblem(p, f"not a person's folder, ignored: {exc}"))
                continue
            if name != p.name:
                problems.append(GalleryProblem(p, f"not a person's folder, ignored: the name should be {name!r} "
                                                  "(no spaces around it, Unicode NFC)"))
                continue
            folders[name] = p
        return folders, problems

    def people(self) -> list[Person]:
        """Every enrolled person (a valid person folder or indexed photos), sorted by name.

        Folders whose name cannot be a person's (``unknown``, ``..x``, ...) are left
        out and reported by :meth:`problems`.
        """
        with self._connect() as con:
            counts = dict(con.execute("SELECT person, COUNT(*) FROM photos GROUP BY person"))
            gone = self._forgetting(con)
        folders, _ = self._scan()
        names = (set(folders) | set(counts)) - gone
        return [Person(n, int(counts.get(n, 0))) for n in sorted(names, key=str.casefold)]

    def problems(self) -> list[GalleryProblem]:
        """What in the gallery folder is not used, and why (bad folder names, stray photos)."""
        return self._scan()[1]

    def __contains__(self, name: str) -> bool:
        try:
            folder = self.person_dir(name)
        except InvalidNameError:
            return False
        with self._connect() as con:
            return folder.is_dir() and folder.name not in self._forgetting(con)

    def photos(self, name: str | None = None) -> list[PhotoRecord]:
        """Indexed photos of one person (or of everyone), oldest first."""
        q = "SELECT person, file, sha, box FROM photos"
        args: tuple = ()
        if name is not None:
            q += " WHERE person = ?"
            args = (validate_name(name),)
        with self._connect() as con:
            rows = con.execute(q + " ORDER BY added, file", args).fetchall()
            gone = self._forgetting(con)
        return [_record(p, self.root, f, sha, b) for p, f, sha, b in rows if p not in gone]

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
        return self.snapshot(model)[1:]

    def person_vectors(self, name: str, model: str) -> list[tuple[PhotoRecord, np.ndarray]]:
        """``name``'s enrolled photos that have a vector made by ``model``, each with it
        (``(D,)`` float32), in the order they were added."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT p.person, p.file, p.sha, p.box, v.vector FROM photos p JOIN vectors v "
                "ON v.sha = p.sha AND v.box = COALESCE(p.box, '') AND v.model = ? WHERE p.person = ? "
                "ORDER BY p.added", (model, name)).fetchall()
        return [(_record(person, self.root, f, sha, b), np.frombuffer(blob, dtype=np.float32))
                for person, f, sha, b, blob in rows]

    def snapshot(self, model: str) -> tuple[int, np.ndarray, list[str], list[PhotoRecord]]:
        """:meth:`vectors` with the gallery version they belong to, read in one transaction:
        a matcher fitted on them and marked with that version cannot miss a later change."""
        with self._connect() as con:
            con.execute("BEGIN")
            version = int(con.execute("SELECT value FROM meta WHERE key='version'").fetchone()[0])
            rows = con.execute(
                "SELECT p.person, p.file, p.sha, p.box, v.vector FROM photos p LEFT JOIN vectors v "
                "ON v.sha = p.sha AND v.box = COALESCE(p.box, '') AND v.model = ? ORDER BY p.person, p.added",
                (model,),
            ).fetchall()
            gone = self._forgetting(con)
            con.execute("COMMIT")
        vecs, names, missing = [], [], []
        for person, f, sha, b, blob in rows:
            if person in gone:
                continue
            if blob is None:
                missing.append(_record(person, self.root, f, sha, b))
            else:
                vecs.append(np.frombuffer(blob, dtype=np.float32))
                names.append(person)
        dim = len(vecs[0]) if vecs else 0
        X = np.stack(vecs) if vecs else np.zeros((0, dim), dtype=np.float32)
        return version, X, names, missing

    # -- writing -------------------------------------------------------------------

    def add_photo(self, name: str, data: bytes, box, vector: np.ndarray, model: str,
                  suffix: str = ".jpg") -> PhotoRecord:
        """Enrol one photo of ``name`` with its face box and vector.

        The photo's bytes are stored unchanged as ``<gallery>/<name>/<hash>.<ext>``,
        visible only once its row and vector are committed. Re-adding the same photo
        for the same person changes nothing, except that a photo indexed by a sync
        without a face box gets this one.

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
        suffix = suffix.lower() if suffix.lower() in _SUFFIXES else ".jpg"
        fname = sha[:16] + suffix
        target, pending = folder / fname, folder / f".{fname}{PENDING}"
        bkey = box_key(box)
        blob = np.asarray(vector, dtype=np.float32).tobytes()
        wrote = False
        new_folder = not folder.is_dir()
        with self._connect() as con, disk_guard(target):
            con.execute("BEGIN IMMEDIATE")
            try:
                self._refuse_forgotten(con, person)
                private_dir(folder)
                if not target.is_file():
                    write_atomic(pending, data, mode=0o600)
                    wrote = True
                con.execute("INSERT INTO photos VALUES (?,?,?,?,?) ON CONFLICT(person, file) "
                            "DO UPDATE SET box = excluded.box WHERE photos.box IS NULL",
                            (person, fname, sha, bkey, time.time()))
                row_box = con.execute("SELECT box FROM photos WHERE person=? AND file=?", (person, fname)).fetchone()[0]
                if row_box == bkey:
                    con.execute("INSERT OR REPLACE INTO vectors VALUES (?,?,?,?)", (sha, bkey, model, blob))
                con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")
                con.execute("COMMIT")
            except BaseException:
                if wrote:
                    pending.unlink(missing_ok=True)
                _rollback(con)
                if new_folder:  # no empty person is left behind (a full disk, say)
                    _remove_empty(folder)
                raise
        if wrote:
            try:
                os.replace(pending, target)
            except FileNotFoundError:
                pass  # a sync finished the rename, or the person was forgotten or renamed meanwhile
        return _record(person, self.root, fname, sha, row_box)

    def add_person(self, name: str) -> None:
        """Enrol ``name`` with no photo yet (their folder); nothing happens if they exist."""
        folder = self.person_dir(name)
        with self._transaction() as con, disk_guard(folder):
            self._refuse_forgotten(con, folder.name)
            private_dir(folder)

    def set_face(self, record: PhotoRecord, box, vector: np.ndarray, model: str) -> None:
        """Store the face box (if it was unknown) and ``model``'s vector for an indexed photo.

        A box set meanwhile (by an enrolment that picked the face) is kept: the vector is
        then stored only if it is of that face. A photo removed meanwhile gets nothing.
        """
        bkey = box_key(record.box if record.box is not None else box)
        with self._transaction() as con:
            con.execute("UPDATE photos SET box=? WHERE person=? AND file=? AND box IS NULL",
                        (bkey, record.person, record.path.name))
            row = con.execute("SELECT box FROM photos WHERE person=? AND file=? AND sha=?",
                              (record.person, record.path.name, record.sha)).fetchone()
            if row is not None and row[0] == bkey:
                con.execute("INSERT OR REPLACE INTO vectors VALUES (?,?,?,?)",
                            (record.sha, bkey, model, np.asarray(vector, dtype=np.float32).tobytes()))

    def _listing(self) -> tuple[dict[tuple[str, str], Path], list[Path]]:
        """Photos on disk by ``(person, file)``, and leftovers of interrupted writes."""
        on_disk: dict[tuple[str, str], Path] = {}
        leftovers: list[Path] = []
        folders, _ = self._scan()
        for person, folder in folders.items():
            try:
                entries = list(folder.iterdir())
            except OSError:
                continue
            for f in entries:
                if f.name.startswith("."):
                    if f.name.endswith(PENDING) or _TMP_NAME.match(f.name):
                        leftovers.append(f)
                elif is_image_path(f) and f.is_file():
                    on_disk[(person, f.name)] = f
        return on_disk, leftovers

    def sync(self) -> tuple[list[PhotoRecord], list[PhotoRecord]]:
        """Reconcile the index with the folders (photos added or deleted by hand).

        New files are hashed before the write lock is taken; under it, everything is
        checked again (a file changed since is left for the next sync). A photo moved
        by hand keeps its face box (and so its vectors). Renames left half done by a
        crashed enrolment are finished, and leftovers of unfinished writes removed.

        Returns:
            ``(added, dropped)``: photos found on disk and now indexed (with
            unknown face boxes unless moved, to be embedded), and index rows whose
            file is gone.
        """
        if any(p.name.startswith(TRASH_PREFIX) for p in (self.root / INDEX_DIR).iterdir()):
            self.empty_trash()  # left by a removal that crashed; failures are reported by the next removal
        indexed = {(r.person, r.path.name) for r in self.photos()}
        on_disk, leftovers = self._listing()
        gone_people = set(self.forgetting())
        on_disk = {k: v for k, v in on_disk.items() if k[0] not in gone_people}
        leftovers = [f for f in leftovers if f.parent.name not in gone_people]
        new = [k for k in on_disk if k not in indexed]
        if not new and not leftovers and all(k in on_disk for k in indexed):
            return [], []
        hashed: dict[tuple[str, str], tuple[str, int, int]] = {}
        for k in new:  # outside the lock: hashing many big files must not hold other writers up
            try:
                st = on_disk[k].stat()
                hashed[k] = (file_hash(on_disk[k]), st.st_size, st.st_mtime_ns)
            except OSError:
                continue
        added: list[PhotoRecord] = []
        dropped: list[PhotoRecord] = []
        with self._transaction() as con:
            gone_people = self._forgetting(con)  # their files and rows are for the forget to remove
            rows = {(p, f): (sha, box) for p, f, sha, box in con.execute("SELECT person, file, sha, box FROM photos")
                    if p not in gone_people}
            on_disk, leftovers = self._listing()
            on_disk = {k: v for k, v in on_disk.items() if k[0] not in gone_people}
            leftovers = [f for f in leftovers if f.parent.name not in gone_people]
            for f in leftovers:
                person = f.parent.name
                if f.name.endswith(PENDING):
                    final = f.name[1:-len(PENDING)]
                    if (person, final) in rows and not (f.parent / final).exists():
                        os.replace(f, f.parent / final)  # committed before a crash: finish the rename
                        on_disk[(person, final)] = f.parent / final
                        continue
                shred(f)  # never committed (or already in place)
            gone = {k: v for k, v in rows.items() if k not in on_disk}
            boxes_by_sha = {sha: box for sha, box in gone.values() if box}
            for (person, fname), (sha, box) in gone.items():
                con.execute("DELETE FROM photos WHERE person=? AND file=?", (person, fname))
                dropped.append(_record(person, self.root, fname, sha, box))
            for k, path in on_disk.items():
                if k in rows or k not in hashed:
                    continue
                sha, size, mtime = hashed[k]
                try:
                    st = path.stat()
                except OSError:
                    continue
                if (st.st_size, st.st_mtime_ns) != (size, mtime):
                    continue  # changed while hashing: the next sync takes it
                box = boxes_by_sha.get(sha)  # moved by hand: keep its face
                con.execute("INSERT OR IGNORE INTO photos VALUES (?,?,?,?,?)", (k[0], k[1], sha, box, time.time()))
                added.append(_record(k[0], self.root, k[1], sha, box))
            if dropped:
                _drop_orphan_vectors(con)
        return added, dropped

    def forget_photo(self, record: PhotoRecord) -> None:
        """Remove one photo: its file, its index row and, unless another row has the same
        photo, its vectors (e.g. a photo with no usable face)."""
        trash = self.root / INDEX_DIR / f"{TRASH_PREFIX}{uuid.uuid4().hex}"
        moved = False
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                if record.path.exists():
                    private_dir(trash)
                    os.replace(record.path, trash / record.path.name)
                    moved = True
                con.execute("DELETE FROM photos WHERE person=? AND file=?", (record.person, record.path.name))
                _drop_orphan_vectors(con)
                con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")
                con.execute("COMMIT")
            except BaseException:
                if moved:
                    os.replace(trash / record.path.name, record.path)
                _rollback(con)
                remove_tree(trash)
                raise
            checkpoint(con)
        failed = remove_tree(trash)
        if failed:
            raise ForgetIncompleteError(f"{record.path.name} was removed from the gallery, but its copy in the "
                                        f"trash could not be deleted: {'; '.join(failed)}")

    def remove_photo(self, name: str, file_name: str) -> None:
        """Delete one enrolled photo of ``name`` (file, index entry and its vectors)."""
        folder = self.person_dir(name)
        if Path(file_name).name != file_name or not (folder / file_name).is_file():
            raise FaceRecError(f"{name} has no photo {file_name!r}")
        with self._connect() as con:
            row = con.execute("SELECT sha FROM photos WHERE person=? AND file=?", (folder.name, file_name)).fetchone()
        self.forget_photo(PhotoRecord(folder.name, folder / file_name, row[0] if row else "", None))

    # -- forgetting: journal first, then the gallery's part (the service does the other stores) --

    def begin_forget(self, name: str) -> ForgetPlan:
        """Record in the forget journal what is to be forgotten of ``name`` (their photos'
        hashes and sizes, their vectors under every base) before anything is deleted, and
        return it. From then on they are no longer enrolled (not listed, not matched, their
        name refused to new photos) until :meth:`end_forget`. Idempotent: a person already in
        the journal gets their recorded plan back, with anything of theirs still indexed added.

        Raises:
            PersonNotFoundError: nobody of that name, and no unfinished forget of them.
            InvalidNameError: a bad name.
            DiskFullError: the journal could not be written (nothing was changed).
        """
        folder = self.person_dir(name)
        person = folder.name
        shas, sizes = set(), set()
        if folder.is_dir():  # hashed before the write lock (many big files must not hold writers up)
            for f in folder.iterdir():
                try:
                    if f.is_file() and not f.is_symlink():
                        sizes.add(f.stat().st_size)
                        shas.add(file_hash(f))
                except OSError:
                    continue
        trash = self.files.state / f"{TRASH_PREFIX}{uuid.uuid4().hex}"
        with self._transaction() as con:
            for stmt in _JOURNAL.split(";"):
                if stmt.strip():
                    con.execute(stmt)
            row = con.execute("SELECT trash, shas, sizes FROM forgetting WHERE person=?", (person,)).fetchone()
            rows = con.execute("SELECT sha FROM photos WHERE person=?", (person,)).fetchall()
            if row is None and not rows and not folder.is_dir():
                raise PersonNotFoundError(f"nobody called {name!r} is enrolled")
            shas |= {r[0] for r in rows}
            if row is not None:
                trash = Path(row[0])
                shas |= set(json.loads(row[1]))
                sizes |= set(json.loads(row[2]))
            new = sorted(shas)
            for i in range(0, len(new), 500):
                part = new[i:i + 500]
                con.execute(
                    "INSERT INTO forgetting_vectors SELECT ?, model, vector FROM vectors v "
                    f"WHERE sha IN ({','.join('?' * len(part))}) AND NOT EXISTS (SELECT 1 FROM forgetting_vectors f "
                    "WHERE f.person=? AND f.model=v.model AND f.vector=v.vector)", (person, *part, person))
            con.execute("INSERT OR REPLACE INTO forgetting VALUES (?,?,?,?,?,?)",
                        (person, str(folder), str(trash), json.dumps(sorted(shas)), json.dumps(sorted(sizes)),
                         time.time()))
            by_model: dict[str, list[np.ndarray]] = {}
            for model, blob in con.execute("SELECT model, vector FROM forgetting_vectors WHERE person=?", (person,)):
                by_model.setdefault(model, []).append(np.frombuffer(blob, dtype=np.float32))
        return ForgetPlan(person, folder, trash, frozenset(shas), frozenset(sizes),
                          {m: np.stack(v) for m, v in by_model.items()})

    def drop_person(self, plan: ForgetPlan) -> tuple[int, int, list[str]]:
        """The gallery's part of a forget (idempotent): in one transaction their folder goes to
        the trash and their rows go, with every vector no remaining photo uses (every base);
        then the index's log is checkpointed and truncated (``secure_delete`` overwrote the
        rows) and the trash shredded.

        Returns:
            ``(photos, vectors, problems)``: rows and vectors removed, leftovers that could not be.
        """
        moved = False
        problems: list[str] = []
        with self._connect() as con:
            with transaction(con, self.db_path):
                try:
                    if plan.folder.is_dir():
                        os.replace(plan.folder, plan.trash)  # atomic: the folder vanishes at once
                        moved = True
                    n = con.execute("DELETE FROM photos WHERE person=?", (plan.name,)).rowcount
                    n_vec = _drop_orphan_vectors(con)
                    con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")
                except BaseException:
                    if moved:
                        os.replace(plan.trash, plan.folder)
                    raise
            if con.execute("SELECT 1 FROM meta WHERE key='secure'").fetchone() is None:
                con.execute("VACUUM")  # an index written before secure_delete: rewritten once
                con.execute("INSERT OR REPLACE INTO meta VALUES ('secure', '1')")
            if not checkpoint(con):
                problems.append(f"{self.db_path}: its write-ahead log could not be cleared (in use)")
        problems += [f"could not delete {f}" for f in remove_tree(plan.trash)]
        return n, n_vec, problems

    def end_forget(self, name: str) -> None:
        """Remove ``name`` from the forget journal (everything of theirs is gone), overwriting
        the recorded hashes and vectors, and clear the index's log."""
        with self._connect() as con:
            with transaction(con, self.db_path):
                if "forgetting" in {r[0] for r in con.execute("SELECT name FROM sqlite_master")}:
                    con.execute("DELETE FROM forgetting WHERE person=?", (name,))
                    con.execute("DELETE FROM forgetting_vectors WHERE person=?", (name,))
            checkpoint(con)

    def empty_trash(self) -> list[str]:
        """Shred every trash folder of committed (or crashed) removals; returns what failed."""
        index = self.root / INDEX_DIR
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")  # a removal in progress holds this lock and its trash
            try:
                found = [p for p in index.iterdir() if p.name.startswith(TRASH_PREFIX)]
            finally:
                con.execute("ROLLBACK")
        failed: list[str] = []
        for p in found:
            failed += remove_tree(p)
        return [f"could not delete {f}" for f in failed]

    def rename_person(self, old: str, new: str) -> None:
        """Rename a person (folder and index); refuses to overwrite someone else
        (:meth:`merge_person` joins two people)."""
        src, dst = self.person_dir(old), self.person_dir(new)
        if not src.is_dir():
            raise PersonNotFoundError(f"nobody called {old!r} is enrolled")
        if src == dst:
            return
        if dst.exists() and not (src.name.casefold() == dst.name.casefold() and os.path.samefile(src, dst)):
            raise PersonExistsError(f"{dst.name!r} is already enrolled; merge {src.name} into them, or "
                                    "choose another name")
        moved = False
        with self._transaction() as con:  # the folder moves under the write lock: a sync never sees half
            self._refuse_forgotten(con, src.name, dst.name)
            try:
                os.replace(src, dst)
                moved = True
                con.execute("UPDATE photos SET person=? WHERE person=?", (dst.name, src.name))
            except BaseException:
                if moved:
                    os.replace(dst, src)
                raise

    def move_photos(self, name: str, files: list[str] | None, to: str) -> int:
        """Move photos of ``name`` (``files``: their file names; ``None``: all, which merges
        ``name`` into ``to`` and removes ``name``) to person ``to`` (created if new). A photo
        ``to`` already has is dropped from ``name`` instead. Face boxes and vectors follow the
        photos. Files move under the index's write lock; after a crash a sync finds them
        in ``to``'s folder and, as for any photo moved by hand, keeps their faces.

        Returns:
            How many photos ``to`` gained.

        Raises:
            PersonNotFoundError: ``name`` is not enrolled or has no such photo.
            InvalidNameError; DiskFullError (nothing was changed).
        """
        src, dst = self.person_dir(name), self.person_dir(to)
        if not src.is_dir():
            raise PersonNotFoundError(f"nobody called {name!r} is enrolled")
        if src == dst:
            return 0
        wanted = sorted(f.name for f in src.iterdir() if not f.name.startswith(".") and f.is_file()) \
            if files is None else list(files)
        for f in wanted:
            if Path(f).name != f or not (src / f).is_file():
                raise PersonNotFoundError(f"{src.name} has no photo {f!r}")
        gained = 0
        new_folder = not dst.is_dir()
        with self._transaction() as con, disk_guard(dst):
            self._refuse_forgotten(con, src.name, dst.name)
            private_dir(dst)
            have = {r[0] for r in con.execute("SELECT sha FROM photos WHERE person=?", (dst.name,))}
            done: list[tuple[Path, Path]] = []
            try:
                for f in wanted:
                    row = con.execute("SELECT sha FROM photos WHERE person=? AND file=?", (src.name, f)).fetchone()
                    if row is not None and row[0] in have:  # already theirs: drop the copy
                        con.execute("DELETE FROM photos WHERE person=? AND file=?", (src.name, f))
                        continue
                    os.replace(src / f, dst / f)
                    done.append((src / f, dst / f))
                    con.execute("UPDATE photos SET person=? WHERE person=? AND file=?", (dst.name, src.name, f))
                    gained += 1
            except BaseException:
                for a, b in reversed(done):
                    os.replace(b, a)
                if new_folder:
                    _remove_empty(dst)
                raise
            _drop_orphan_vectors(con)
        for f in wanted:  # copies of photos ``to`` already had
            if (src / f).exists():
                shred(src / f)
        if files is None:
            remove_tree(src)
        return gained

def _drop_orphan_vectors(con: sqlite3.Connection) -> int:
    """Delete every vector whose photo no row refers to any more; returns how many."""
    return con.execute("DELETE FROM vectors WHERE NOT EXISTS "
                       "(SELECT 1 FROM photos p WHERE p.sha = vectors.sha)").rowcount


def _remove_empty(folder: Path) -> None:
    """Remove ``folder`` if it is empty (best effort)."""
    try:
        folder.rmdir()
    except OSError:
        pass
