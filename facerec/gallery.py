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
from typing import Iterable, Iterator

import numpy as np

from facerec.errors import (
    FaceRecError, ForgetIncompleteError, InvalidNameError, PersonExistsError, PersonNotFoundError,
)
from facerec.images import is_image_path
from facerec.storage import (
    INDEX_DIR, checkpoint, content_hash, file_hash, private_dir, private_file, remove_tree, rollback as _rollback,
    shred, tighten, use_wal, write_atomic,
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
class ForgetReport:
    """What :meth:`Gallery.forget_person` removed.

    Attributes:
        name: the person.
        photos: photo files and index rows removed.
        vectors: stored vectors removed (every base).
        tag_photos: photos whose cached faces and vectors were dropped from tag caches.
        tag_matches: stored match lists naming the person dropped from tag caches.
        cluster_groups: ``"<file>:<label>"`` of every unknown-face group removed.
        problems: leftovers that could not be removed, each with its reason.
    """

    name: str
    photos: int
    vectors: int
    tag_photos: int = 0
    tag_matches: int = 0
    cluster_groups: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


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
        private_dir(self.root)
        index = self.root / INDEX_DIR
        private_dir(index)
        tighten(index, 0o700)
        self.db_path = index / "index.sqlite"
        private_file(self.db_path)  # SQLite gives its -wal and -shm files the same mode
        for suffix in ("", "-wal", "-shm"):
            tighten(Path(f"{self.db_path}{suffix}"), 0o600)
        with self._connect() as con:
            use_wal(con)
            fresh = con.execute("SELECT 1 FROM sqlite_master WHERE name='vectors'").fetchone() is None
            if fresh:  # an existing index is only read here: opening a gallery never waits for a writer
                con.executescript(_SCHEMA)
                # written with secure_delete from the start: no VACUUM needed at a forget
                con.execute("INSERT OR IGNORE INTO meta VALUES ('secure', '1')")

    # -- plumbing ---------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten, not left in free space
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
                _rollback(con)
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
        folders, _ = self._scan()
        names = set(folders) | set(counts)
        return [Person(n, int(counts.get(n, 0))) for n in sorted(names, key=str.casefold)]

    def problems(self) -> list[GalleryProblem]:
        """What in the gallery folder is not used, and why (bad folder names, stray photos)."""
        return self._scan()[1]

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
        return [_record(p, self.root, f, sha, b) for p, f, sha, b in rows]

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
            con.execute("COMMIT")
        vecs, names, missing = [], [], []
        for person, f, sha, b, blob in rows:
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
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
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
                raise
        if wrote:
            try:
                os.replace(pending, target)
            except FileNotFoundError:
                pass  # a sync finished the rename, or the person was forgotten or renamed meanwhile
        return _record(person, self.root, fname, sha, row_box)

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
            rows = {(p, f): (sha, box) for p, f, sha, box in con.execute("SELECT person, file, sha, box FROM photos")}
            on_disk, leftovers = self._listing()
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

    def forget_person(self, name: str, tag_caches: Iterable[Path] = (),
                      cluster_files: Iterable[Path] | None = None) -> ForgetReport:
        """Forget a person everywhere facerec keeps something of them.

        In order (a re-run after a crash anywhere finishes the job): (1) the tag caches
        named drop the stored matches naming them and the cached faces and vectors of
        every photo that named them, is one of their photos or has a face as close to
        theirs as the recognition threshold (see :meth:`TagCache.forget`); (2) the cluster files
        drop every unknown-face group holding one of their faces (with its vectors and
        contact sheet); (3) in one transaction their folder goes to the trash and their
        rows go, with every vector no remaining photo uses (every base); (4) the index's
        log is checkpointed and truncated (``secure_delete`` overwrote the rows), the
        trash shredded. Leftovers that cannot be removed are reported, not hidden.

        Args:
            name: the person.
            tag_caches: tag cache files to clean (e.g. ``settings.cache_dir / "tags.sqlite"``).
            cluster_files: cluster files to clean; default every ``*.json`` in
                ``<gallery>/.facerec/clusters/``.

        Raises:
            PersonNotFoundError: nobody of that name (nothing is changed).
            InvalidNameError: a bad name.
        """
        folder = self.person_dir(name)
        person = folder.name
        with self._connect() as con:
            rows = con.execute("SELECT file, sha FROM photos WHERE person=?", (person,)).fetchall()
            shas = {sha for _, sha in rows}
            vec_rows = con.execute(
                f"SELECT model, vector FROM vectors WHERE sha IN ({','.join('?' * len(shas))})", tuple(shas)
            ).fetchall() if shas else []
        if not folder.is_dir() and not rows:
            raise PersonNotFoundError(f"nobody called {name!r} is enrolled")
        sizes = set()
        if folder.is_dir():
            for f in folder.iterdir():
                try:
                    if f.is_file() and not f.is_symlink():
                        sizes.add(f.stat().st_size)
                        shas.add(file_hash(f))
                except OSError:
                    continue
        by_model: dict[str, list[np.ndarray]] = {}
        for model, blob in vec_rows:
            by_model.setdefault(model, []).append(np.frombuffer(blob, dtype=np.float32))
        vectors = {m: np.stack(v) for m, v in by_model.items()}
        problems: list[str] = []
        tag_photos = tag_matches = 0
        for path in tag_caches:
            if not Path(path).is_file():
                continue
            from facerec.tagcache import TagCache

            try:
                with TagCache(Path(path)) as cache:
                    n_photos, n_matches, clean = cache.forget([person], shas, vectors)
                tag_photos, tag_matches = tag_photos + n_photos, tag_matches + n_matches
                if not clean:
                    problems.append(f"{path}: its write-ahead log could not be cleared (in use); run this again")
            except (sqlite3.Error, OSError) as exc:
                problems.append(f"{path}: tag cache not cleaned ({exc})")
        from facerec.cluster import CLUSTERS_DIR, forget_faces

        if cluster_files is None:
            cdir = self.root / INDEX_DIR / CLUSTERS_DIR
            cluster_files = sorted(cdir.glob("*.json")) if cdir.is_dir() else []
        groups: list[str] = []
        for path in cluster_files:
            try:
                labels = forget_faces(Path(path), shas, sizes, vectors, folder)
                groups += [f"{Path(path).name}:{label}" for label in labels]
            except (FaceRecError, OSError) as exc:
                problems.append(f"{path}: cluster file not cleaned ({exc})")
        trash = self.root / INDEX_DIR / f"{TRASH_PREFIX}{uuid.uuid4().hex}"
        moved = False
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                if folder.is_dir():
                    os.replace(folder, trash)  # atomic: the person vanishes at once
                    moved = True
                n = con.execute("DELETE FROM photos WHERE person=?", (person,)).rowcount
                n_vec = _drop_orphan_vectors(con)
                con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")
                con.execute("COMMIT")
            except BaseException:
                if moved:
                    os.replace(trash, folder)
                _rollback(con)
                raise
            secure = con.execute("SELECT 1 FROM meta WHERE key='secure'").fetchone() is not None
            if not secure:  # an index written before secure_delete: rewrite it once
                con.execute("VACUUM")
                con.execute("INSERT OR REPLACE INTO meta VALUES ('secure', '1')")
            if not checkpoint(con):
                problems.append(f"{self.db_path}: its write-ahead log could not be cleared (in use); "
                                "run this again")
        problems += self.empty_trash()
        return ForgetReport(person, n, n_vec, tag_photos, tag_matches, tuple(groups), tuple(problems))

    def remove_person(self, name: str, tag_caches: Iterable[Path] = (),
                      cluster_files: Iterable[Path] | None = None) -> int:
        """:meth:`forget_person`, returning the number of photos removed.

        Raises:
            ForgetIncompleteError: the person is forgotten but something listed in the
                message could not be removed.
        """
        report = self.forget_person(name, tag_caches, cluster_files)
        if report.problems:
            raise ForgetIncompleteError(f"{report.name} was forgotten, but some of it could not be removed: "
                                        + "; ".join(report.problems))
        return report.photos

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
        """Rename a person (folder and index); refuses to overwrite someone else."""
        src, dst = self.person_dir(old), self.person_dir(new)
        if not src.is_dir():
            raise PersonNotFoundError(f"nobody called {old!r} is enrolled")
        if src == dst:
            return
        if dst.exists() and not (src.name.casefold() == dst.name.casefold() and os.path.samefile(src, dst)):
            raise PersonExistsError(f"{new!r} is already enrolled; remove or rename them first")
        moved = False
        with self._connect() as con:  # the folder moves under the write lock: a sync never sees half
            con.execute("BEGIN IMMEDIATE")
            try:
                os.replace(src, dst)
                moved = True
                con.execute("UPDATE photos SET person=? WHERE person=?", (dst.name, src.name))
                con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version'")
                con.execute("COMMIT")
            except BaseException:
                if moved:
                    os.replace(dst, src)
                _rollback(con)
                raise


def _drop_orphan_vectors(con: sqlite3.Connection) -> int:
    """Delete every vector whose photo no row refers to any more; returns how many."""
    return con.execute("DELETE FROM vectors WHERE NOT EXISTS "
                       "(SELECT 1 FROM photos p WHERE p.sha = vectors.sha)").rowcount
