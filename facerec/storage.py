"""The storage floor: where facerec keeps its files and how it writes them.

Everything above imports this module; it imports nothing of facerec but the error family.

- :class:`GalleryFiles` names every file facerec keeps for a gallery (index, history,
  original file names, clusters, settings, sign-in keys) and :func:`tag_cache_path` the tag
  cache in the cache folder: no other module spells a file name.
- Writes are atomic and private (:func:`write_atomic`, :func:`private_dir`,
  :func:`private_file`); deletion overwrites first (:func:`shred`, :func:`remove_tree`).
- One hasher (:func:`content_hash`, :func:`file_hash`: SHA-256 hex).
- SQLite is opened in one place (:func:`connect`): WAL where asked, a 30 s busy timeout,
  ``secure_delete`` on. On a full disk a read falls back to an immutable read-only view
  (SQLite cannot create its ``-shm`` file there) and a write raises :class:`DiskFullError`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sqlite3
import stat
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

from facerec.errors import DiskFullError

INDEX_DIR = ".facerec"
TAG_CACHE_FILE = "tags.sqlite"


@dataclass(frozen=True)
class GalleryFiles:
    """Every file facerec keeps for the gallery at ``root`` (paths only; nothing is created)."""

    root: Path

    @property
    def state(self) -> Path:
        """``<gallery>/.facerec``: the index folder (0700)."""
        return Path(self.root) / INDEX_DIR

    @property
    def index(self) -> Path:
        """The gallery index (photos, vectors, forget journal)."""
        return self.state / "index.sqlite"

    @property
    def history(self) -> Path:
        """Who was seen on Live, and when."""
        return self.state / "history.sqlite"

    @property
    def photo_names(self) -> Path:
        """Original file names of enrolled photos."""
        return self.state / "photo_names.sqlite"

    @property
    def clusters(self) -> Path:
        """Folder of unknown-face cluster files."""
        return self.state / "clusters"

    @property
    def settings(self) -> Path:
        """The gallery's saved settings (base, detector, thresholds), read by every front end."""
        return self.state / "settings.json"

    @property
    def legacy_settings(self) -> Path:
        """Settings saved by the app before 0.8 (read when :attr:`settings` is missing)."""
        return self.state / "app_settings.json"

    @property
    def admin_password(self) -> Path:
        """The sign-in password's Argon2id hash."""
        return self.state / "admin_password"

    @property
    def signin_sessions(self) -> Path:
        """The app's signed-in browser sessions: SHA-256 digests of their ids, with expiry times."""
        return self.state / "signin_sessions.json"

    @property
    def signin_failures(self) -> Path:
        """Wrong-password throttle state."""
        return self.state / "signin_failures.json"

    @property
    def api_keys(self) -> Path:
        """Keys of the HTTP API."""
        return self.state / "api_keys.json"

    @property
    def library(self) -> Path:
        """The photo library: its folders, the faces of its photos, and the names confirmed or
        rejected there (kept by photo content hash and face box)."""
        return self.state / "library.sqlite"


def tag_cache_path(cache_dir: Path) -> Path:
    """The tag cache (faces and vectors of tagged photos) in ``cache_dir``."""
    return Path(cache_dir) / TAG_CACHE_FILE


def thumbs_dir(cache_dir: Path) -> Path:
    """Cached face and photo thumbnails in ``cache_dir``."""
    return Path(cache_dir) / "thumbs"


# -- disk full -----------------------------------------------------------------------

_FULL_TEXT = ("database or disk is full", "disk i/o error", "no space left")


LOW_SPACE = 1 << 20  # bytes: below this, SQLite's "disk I/O error" is taken for a full disk


def is_disk_full(exc: BaseException, path: Path | str | None = None) -> bool:
    """Whether ``exc`` (an ``OSError`` or ``sqlite3.Error``) comes from a full disk (or quota).
    SQLite reports a full disk as "database or disk is full", or as "disk I/O error" when it
    cannot create its ``-shm`` file: the latter counts only when ``path``'s file system has
    less than :data:`LOW_SPACE` free."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, sqlite3.Error):
        text = str(exc).lower()
        if "database or disk is full" in text:
            return True
        if "disk i/o error" in text and path is not None:
            try:
                return shutil.disk_usage(Path(path).parent).free < LOW_SPACE
            except OSError:
                return False
    return False


def disk_full_error(path: Path | str, exc: BaseException) -> DiskFullError:
    """The one-line error for a write that failed on a full disk."""
    return DiskFullError(f"disk full: could not write {path} ({exc}); free some space and try again "
                         "(nothing was changed)")


@contextmanager
def disk_guard(path: Path | str) -> Iterator[None]:
    """Turn a full-disk ``OSError``/``sqlite3.Error`` raised inside into :class:`DiskFullError`."""
    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        if is_disk_full(exc, path):
            raise disk_full_error(path, exc) from exc
        raise


# -- SQLite --------------------------------------------------------------------------

class FullDiskView(sqlite3.Connection):
    """A read-only, immutable view of a database opened on a full disk (see :func:`open_db`)."""


def is_full_disk_view(con: sqlite3.Connection) -> bool:
    """Whether ``con`` is the read-only view :func:`open_db` gives on a full disk."""
    return isinstance(con, FullDiskView)


def _open(path: Path, immutable: bool = False) -> sqlite3.Connection:
    if immutable:  # a read-only view that needs no -shm/-wal file: readable on a full disk
        con = sqlite3.connect(f"file:{quote(os.fspath(path))}?immutable=1", uri=True,
                              isolation_level=None, check_same_thread=False, factory=FullDiskView)
    else:
        con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA busy_timeout=30000")
        con.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten, not left in free space
    return con


def open_db(path: Path | str, schema: str = "", wal: bool = True, fresh_marker: str | None = None,
            ) -> sqlite3.Connection:
    """Open (creating, mode 0600) the SQLite file ``path`` for reading and writing: autocommit
    (``isolation_level=None``: use ``BEGIN IMMEDIATE`` for transactions), busy timeout 30 s,
    ``secure_delete`` on, WAL when ``wal``. ``schema`` (``CREATE ... IF NOT EXISTS``) is run
    only when the table ``fresh_marker`` is missing (so opening an existing file writes nothing).

    On a full disk an existing file is opened as an immutable read-only view instead (its
    reads work, its writes raise); creating a new file raises :class:`DiskFullError`.
    """
    path = Path(path)
    try:
        private_dir(path.parent)
        existed = path.is_file() and path.stat().st_size > 0
        private_file(path)  # SQLite gives its -wal and -shm files the same mode
        for suffix in ("", "-wal", "-shm", "-journal"):
            tighten(Path(f"{path}{suffix}"), 0o600)
        con = _open(path)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a full disk shows here (no -shm file)
            if wal:
                use_wal(con)
            if schema and (fresh_marker is None or con.execute(
                    "SELECT 1 FROM sqlite_master WHERE name=?", (fresh_marker,)).fetchone() is None):
                con.executescript(schema)
        except BaseException:
            con.close()
            raise
        return con
    except (OSError, sqlite3.Error) as exc:
        if not is_disk_full(exc, path):
            raise
        if not existed:
            raise disk_full_error(path, exc) from exc
        return _open(path, immutable=True)


@contextmanager
def connect(path: Path | str, schema: str = "", wal: bool = True,
            fresh_marker: str | None = None) -> Iterator[sqlite3.Connection]:
    """:func:`open_db` for one block, closed at the end."""
    con = open_db(path, schema, wal, fresh_marker)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def transaction(con: sqlite3.Connection, path: Path | str = "the database") -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` on ``con`` (rolled back on any error); a full disk
    raises :class:`DiskFullError` with nothing changed."""
    if is_full_disk_view(con):
        raise DiskFullError(f"disk full: {path} can be read but not written; free some space and try again "
                            "(nothing was changed)")
    with disk_guard(path):
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            rollback(con)
            raise


def rollback(con: sqlite3.Connection) -> None:
    """Roll back ``con``'s transaction if one is open."""
    try:
        con.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # the failed statement already ended the transaction


# -- files ---------------------------------------------------------------------------

def content_hash(data: bytes) -> str:
    """SHA-256 hex digest of a photo's bytes."""
    return hashlib.sha256(data).hexdigest()



def file_hash(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes, read in 1 MiB pieces (same as :func:`content_hash`)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()



def private_dir(path: Path) -> Path:
    """Create folder ``path`` (and missing parents) with mode 0700 whatever the umask.

    An existing folder is left as it is.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return path
    os.chmod(path, 0o700)
    return path



def private_file(path: Path) -> Path:
    """Create an empty file with mode 0600 (whatever the umask) unless it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return Path(path)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return Path(path)



def tighten(path: Path, mode: int) -> None:
    """Best effort: set ``path``'s permission bits to ``mode`` if it exists, is ours and differs."""
    try:
        st = os.stat(path)
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) != mode:
            os.chmod(path, mode)
    except OSError:
        pass



def write_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` (following a symlink) with ``data`` in one step: readers see the
    old file or the new one, never a part. An existing file keeps its permission bits;
    a new one gets ``mode`` (``None``: the umask's default).

    Raises:
        OSError: nothing was changed (the temporary file is removed).
    """
    path = Path(path)
    target = path.resolve() if path.is_symlink() else path
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if mode is not None else 0o666)
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o7777)
        elif mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise



def shred(path: Path) -> None:
    """Overwrite a regular file with zeros, then delete it (best effort against undelete:
    on a copy-on-write file system or an SSD the old blocks may survive; use disk encryption).

    Raises:
        OSError: it could not be deleted (a missing file is not an error).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode) and st.st_size:
        try:
            with open(path, "r+b") as f:
                left = st.st_size
                zeros = bytes(min(left, 1 << 20))
                while left > 0:
                    left -= f.write(zeros[:min(left, len(zeros))])
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            pass  # read-only or gone: deleting it below still counts
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass



def remove_tree(path: Path) -> list[str]:
    """Shred every file under ``path`` and remove it; returns what failed (``[]``: all gone)."""
    failed: list[str] = []
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return failed
    if path.is_symlink() or not path.is_dir():
        try:
            shred(path)
        except OSError as exc:
            failed.append(f"{path} ({exc.strerror or exc})")
        return failed
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            try:
                shred(Path(dirpath) / n)
            except OSError as exc:
                failed.append(f"{Path(dirpath) / n} ({exc.strerror or exc})")
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if not failed:
                failed.append(f"{dirpath} ({exc.strerror or exc})")
    return failed



def checkpoint(con: sqlite3.Connection, tries: int = 5) -> bool:
    """Copy a WAL database's log into the file and truncate the log to nothing (so deleted
    rows leave no trace there). Returns ``False`` if other connections kept it busy."""
    con.execute("PRAGMA busy_timeout=2000")
    for _ in range(tries):
        busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return True
        time.sleep(0.1)
    return False



def use_wal(con: sqlite3.Connection, tries: int = 100) -> None:
    """Put the database in WAL mode (persistent: a no-op once set). Switching takes an exclusive
    lock and SQLite does not wait for it (no busy handler there): two processes opening a new
    gallery at once got "database is locked", so it is retried for up to ~10 s."""
    for attempt in range(tries):
        try:
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.1)
