"""Who was here: the appearances Live saw, kept in the gallery's own SQLite folder.

One row per appearance: the person, when they were first and last seen, where (the
``source``: ``"live"`` for the app's Live page, the API key's name, e.g. ``"doorbell"``, for
recognitions through ``facerec serve``), and a small JPEG of their face from the moment
they were first named. Seeing someone again at the same source within ``GAP_S`` seconds of
their last sighting there extends the same appearance; a longer absence starts a new one.
Only enrolled people are recorded (a stranger has no name to join sightings under).

Files written before the ``source`` column existed are read as they are (every row
``"live"``, also as a read-only view on a full disk); the column is added
(``ALTER TABLE ... ADD COLUMN``) by the first write.

The file is ``<gallery>/.facerec/history.sqlite``, mode 0600 in a 0700 folder, opened
through the storage floor (:func:`facerec.storage.open_db`: WAL, busy timeout,
``secure_delete``, so :func:`forget` overwrites what it deletes; on a full disk it stays
readable and a write raises :class:`facerec.errors.DiskFullError`).

Live's video thread must never wait on a disk: it hands sightings to a
:class:`HistoryWriter` (:func:`writer`), which only copies the face crops into a queue;
one background thread per gallery encodes and writes them. What is queued when the process
exits is written first (:meth:`HistoryWriter.close`, run at exit). Nothing here touches
Streamlit.
"""

from __future__ import annotations

import atexit
import csv
import io
import queue
import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from facerec.storage import GalleryFiles, checkpoint, connect, open_db, transaction

GAP_S = 30.0
"""An appearance continues when its person is seen again within this many seconds."""
LIVE = "live"
"""The source of the Live page's sightings (and of every row of a file older than sources)."""
SNAPSHOT_SIDE = 96

_SCHEMA = """
CREATE TABLE IF NOT EXISTS appearances (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    snapshot BLOB, source TEXT NOT NULL DEFAULT 'live');
CREATE INDEX IF NOT EXISTS appearances_name ON appearances(name, last_seen);
CREATE INDEX IF NOT EXISTS appearances_first ON appearances(first_seen);
"""

Box = tuple[float, float, float, float]


def _has_source(con: sqlite3.Connection) -> bool:
    """Whether the file has the ``source`` column (files of facerec 0.9 and before do not)."""
    return any(row[1] == "source" for row in con.execute("PRAGMA table_info(appearances)"))


def _source_column(con: sqlite3.Connection) -> str:
    """The SQL for an appearance's source: the column, or ``'live'`` on an older file."""
    return "source" if _has_source(con) else f"'{LIVE}'"


def _migrate(con: sqlite3.Connection) -> None:
    """Add the ``source`` column to an older file (inside the caller's write transaction)."""
    if not _has_source(con):
        con.execute(f"ALTER TABLE appearances ADD COLUMN source TEXT NOT NULL DEFAULT '{LIVE}'")


def history_path(gallery: Path | str) -> Path:
    """The history file of ``gallery`` (:attr:`facerec.storage.GalleryFiles.history`)."""
    return GalleryFiles(Path(gallery)).history


@dataclass(frozen=True)
class Appearance:
    """One stay in view: ``first_seen`` / ``last_seen`` are ``time.time()`` seconds;
    ``snapshot`` a small JPEG of the face, or ``None``; ``source`` where: ``"live"`` or an
    API key's name."""

    id: int
    name: str
    first_seen: float
    last_seen: float
    snapshot: bytes | None
    source: str = LIVE

    @property
    def duration(self) -> float:
        return max(0.0, self.last_seen - self.first_seen)


def format_duration(seconds: float) -> str:
    """``"4 s"``, ``"2 min"``, ``"1 h 5 min"``: how long, as people say it."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min" if s % 3600 >= 60 else f"{s // 3600} h"


class History:
    """The appearances file of one gallery (open a connection per call: safe from any thread)."""

    def __init__(self, gallery: Path | str) -> None:
        self.path = history_path(gallery)
        open_db(self.path, _SCHEMA, fresh_marker="appearances").close()  # created 0600 in a 0700 folder

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for one transaction (``BEGIN IMMEDIATE``): committed, or rolled back on an
        error, and closed at the end. On a full disk reads work and a write raises
        :class:`facerec.errors.DiskFullError` with nothing changed."""
        with connect(self.path, _SCHEMA, fresh_marker="appearances") as con:
            with transaction(con, self.path):
                _migrate(con)
                yield con

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for reading only (no write lock taken: readable on a full disk)."""
        with connect(self.path, _SCHEMA, fresh_marker="appearances") as con:
            yield con

    def record(self, name: str, seen_at: float, snapshot: bytes | None = None, gap: float = GAP_S,
               source: str = LIVE) -> int:
        """Note that ``name`` was in view of ``source`` at ``seen_at``; returns the appearance's id."""
        with self._connect() as con:
            row = con.execute("SELECT id, last_seen, snapshot FROM appearances WHERE name = ? AND source = ? "
                              "ORDER BY last_seen DESC LIMIT 1", (name, source)).fetchone()
            if row is not None and row[1] - gap <= seen_at <= row[1] + gap:
                con.execute("UPDATE appearances SET last_seen = MAX(last_seen, ?), snapshot = COALESCE(snapshot, ?) "
                            "WHERE id = ?", (seen_at, snapshot, row[0]))
                return int(row[0])
            cur = con.execute("INSERT INTO appearances (name, first_seen, last_seen, snapshot, source) "
                              "VALUES (?,?,?,?,?)", (name, seen_at, seen_at, snapshot, source))
            return int(cur.lastrowid)

    def appearances(self, day: date | None = None, names: Iterable[str] | None = None,
                    sources: Iterable[str] | None = None) -> list[Appearance]:
        """Appearances, newest first; only those overlapping ``day`` (local time), of ``names``
        and seen by ``sources``."""
        q, args = "SELECT id, name, first_seen, last_seen, snapshot, {src} AS src FROM appearances WHERE 1=1", []
        if day is not None:
            start = datetime.combine(day, datetime.min.time()).timestamp()
            end = datetime.combine(day + timedelta(days=1), datetime.min.time()).timestamp()
            q += " AND last_seen >= ? AND first_seen < ?"
            args += [start, end]
        if names is not None:
            names = list(names)
            q += f" AND name IN ({','.join('?' * len(names))})"
            args += names
        if sources is not None:
            sources = list(sources)
            q += f" AND {{src}} IN ({','.join('?' * len(sources))})"
            args += sources
        with self._reading() as con:
            q = q.format(src=_source_column(con))
            rows = con.execute(q + " ORDER BY first_seen DESC, id DESC", args).fetchall()
        return [Appearance(*r) for r in rows]

    def sources(self) -> list[str]:
        """Every source with at least one appearance (``"live"``, key names), sorted."""
        with self._reading() as con:
            return [r[0] for r in con.execute(f"SELECT DISTINCT {_source_column(con)} FROM appearances ORDER BY 1")]

    def people(self) -> list[str]:
        """Everyone with at least one appearance, by name."""
        with self._reading() as con:
            return [r[0] for r in con.execute("SELECT DISTINCT name FROM appearances ORDER BY name")]

    def forget(self, name: str) -> int:
        """Delete every appearance of ``name`` (overwritten on disk, the write-ahead log
        checkpointed and truncated, so no copy of the rows is left there); returns how many."""
        with connect(self.path, _SCHEMA, fresh_marker="appearances") as con:
            with transaction(con, self.path):
                n = con.execute("DELETE FROM appearances WHERE name = ?", (name,)).rowcount
            checkpoint(con)  # best effort: another connection reading now keeps the log until it ends
        return n

    def rename(self, old: str, new: str) -> int:
        """Carry ``old``'s appearances over to ``new``; returns how many."""
        with self._connect() as con:
            return con.execute("UPDATE appearances SET name = ? WHERE name = ?", (new, old)).rowcount


def forget(gallery: Path | str, name: str) -> int:
    """Forget ``name`` in the history of ``gallery`` (no file: nothing to do); returns rows deleted."""
    if not history_path(gallery).is_file():
        return 0
    return History(gallery).forget(name)


def rename(gallery: Path | str, old: str, new: str) -> int:
    """Carry ``old``'s appearances over to ``new`` (after a rename)."""
    if not history_path(gallery).is_file():
        return 0
    return History(gallery).rename(old, new)


def to_csv(appearances: Sequence[Appearance]) -> str:
    """``name,first_seen,last_seen,duration_s,source`` with ISO local times, one appearance a
    line (``source`` last, so scripts reading the first four columns keep working)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "first_seen", "last_seen", "duration_s", "source"])
    for a in appearances:
        w.writerow([a.name, datetime.fromtimestamp(a.first_seen).isoformat(timespec="seconds"),
                    datetime.fromtimestamp(a.last_seen).isoformat(timespec="seconds"), round(a.duration), a.source])
    return buf.getvalue()


def face_snapshot(frame: np.ndarray, box: Box, side: int = SNAPSHOT_SIDE) -> np.ndarray | None:
    """A copy of ``box`` (with a little margin) cut from an RGB frame, at most ``side`` pixels."""
    x, y, w, h = box
    m = 0.15 * max(w, h)
    H, W = frame.shape[:2]
    x0, y0 = max(0, int(x - m)), max(0, int(y - m))
    x1, y1 = min(W, int(x + w + m)), min(H, int(y + h + m))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    crop = frame[y0:y1, x0:x1]
    step = max(1, int(np.ceil(max(crop.shape[:2]) / side)))
    return np.ascontiguousarray(crop[::step, ::step])


def encode_jpeg(pixels: np.ndarray | None) -> bytes | None:
    if pixels is None:
        return None
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


_STOP = object()  # put on a writer's queue by close(): the thread ends after what came before
EXIT_TIMEOUT_S = 10.0
"""At exit, each writer gets this long to write what is still queued (a hung disk must not hang the exit)."""
_OPEN_WRITERS: "weakref.WeakSet[HistoryWriter]" = weakref.WeakSet()  # closed at exit
_OPEN_LOCK = threading.Lock()


class HistoryWriter:
    """Takes sightings from any thread without blocking; one daemon thread writes them.

    :meth:`observe` copies the face crops (a few kilobytes) into a queue and returns;
    the writer thread encodes them and calls :meth:`History.record`. A person's snapshot
    is kept from the start of an appearance only, so later sightings carry none.

    :meth:`close` writes what is queued and ends the thread; it runs by itself when the
    process exits (``atexit``), so sightings queued just before are not lost.
    """

    def __init__(self, gallery: Path | str, gap: float = GAP_S) -> None:
        self.history = History(gallery)
        self.gap = gap
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._last: dict[tuple[str, str], float] = {}  # (name, source) -> last sighting handed over (this process)
        self._lock = threading.Lock()  # guards _last, _pending, _closed and _error
        self._pending = 0
        self._closed = False
        self._error: str | None = None
        self._idle = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._run, name="facerec-history", daemon=True)
        self._thread.start()
        with _OPEN_LOCK:
            _OPEN_WRITERS.add(self)

    @property
    def error(self) -> str | None:
        """Why the last batch of sightings was not written, or ``None`` when it was (for the page)."""
        with self._lock:
            return self._error

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (later sightings are not recorded)."""
        with self._lock:
            return self._closed

    def observe(self, people: Sequence[tuple[str, Box]], frame: np.ndarray | None = None,
                seen_at: float | None = None, source: str = LIVE) -> None:
        """``people`` (name, box in ``frame``) are in view of ``source`` at ``seen_at`` (default now)."""
        if not people:
            return
        now = time.time() if seen_at is None else seen_at
        items = []
        with self._lock:
            if self._closed:  # the process is exiting: nothing takes sightings any more
                return
            for name, box in people:
                last = self._last.get((name, source))
                fresh = last is None or now - last > self.gap
                self._last[(name, source)] = now
                crop = face_snapshot(frame, box) if fresh and frame is not None else None
                items.append((name, now, crop, source))
            self._pending += 1
            self._queue.put(items)  # under the lock: never after close()'s stop mark

    def _run(self) -> None:
        while True:
            items = self._queue.get()
            if items is _STOP:
                return
            error = None
            try:
                for name, seen_at, crop, source in items:
                    self.history.record(name, seen_at, encode_jpeg(crop), self.gap, source)
            except Exception as exc:  # a full disk must not kill the thread; reported to the page
                error = f"history not saved: {type(exc).__name__}: {exc}"
            with self._lock:
                self._error = error
                self._pending -= 1
                self._idle.notify_all()

    def close(self, timeout: float = EXIT_TIMEOUT_S) -> bool:
        """Write every sighting handed over so far, then end the writer thread; later
        sightings are ignored. Idempotent; runs at exit for every writer not closed yet.

        Returns:
            ``True`` when everything queued was written within ``timeout`` seconds.
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        self._thread.join(timeout)
        with _OPEN_LOCK:
            _OPEN_WRITERS.discard(self)
        return not self._thread.is_alive()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every sighting handed over so far is written (without ending the thread)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True


_WRITERS: dict[Path, HistoryWriter] = {}
_WRITERS_LOCK = threading.Lock()


def writer(gallery: Path | str) -> HistoryWriter:
    """The process's one writer for ``gallery`` (its thread lives as long as the process, and
    writes what is still queued when it exits)."""
    key = Path(gallery).resolve()
    with _WRITERS_LOCK:
        w = _WRITERS.get(key)
        if w is None or w.closed:
            w = _WRITERS[key] = HistoryWriter(key)
        return w


@atexit.register
def close_writers(timeout: float = EXIT_TIMEOUT_S) -> None:
    """Write what every open :class:`HistoryWriter` still holds, then end their threads (at exit:
    atexit runs while daemon threads still run, before the interpreter stops them)."""
    with _OPEN_LOCK:
        writers = list(_OPEN_WRITERS)
    for w in writers:
        w.close(timeout)
