"""Who was here: the appearances Live saw, kept in the gallery's own SQLite folder.

One row per appearance: the person, when they were first and last seen, and a small JPEG
of their face from the moment they were first named. Seeing someone again within
``GAP_S`` seconds of their last sighting extends the same appearance; a longer absence
starts a new one. Only enrolled people are recorded (a stranger has no name to join
sightings under).

The file is ``<gallery>/.facerec/history.sqlite``, mode 0600 in a 0700 folder, written
with ``secure_delete`` so :func:`forget` overwrites what it deletes.

Live's video thread must never wait on a disk: it hands sightings to a
:class:`HistoryWriter` (:func:`writer`), which only copies the face crops into a queue;
one background thread per gallery encodes and writes them. Nothing here touches Streamlit.
"""

from __future__ import annotations

import csv
import io
import queue
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from facerec.storage import INDEX_DIR, private_dir, private_file, tighten

HISTORY_FILE = "history.sqlite"
GAP_S = 30.0
"""An appearance continues when its person is seen again within this many seconds."""
SNAPSHOT_SIDE = 96

_SCHEMA = """
CREATE TABLE IF NOT EXISTS appearances (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    snapshot BLOB);
CREATE INDEX IF NOT EXISTS appearances_name ON appearances(name, last_seen);
CREATE INDEX IF NOT EXISTS appearances_first ON appearances(first_seen);
"""

Box = tuple[float, float, float, float]


def history_path(gallery: Path | str) -> Path:
    return Path(gallery) / INDEX_DIR / HISTORY_FILE


@dataclass(frozen=True)
class Appearance:
    """One stay in view: ``first_seen`` / ``last_seen`` are ``time.time()`` seconds;
    ``snapshot`` a small JPEG of the face, or ``None``."""

    id: int
    name: str
    first_seen: float
    last_seen: float
    snapshot: bytes | None

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
        private_dir(self.path.parent)
        private_file(self.path)
        with self._connect() as con:
            con.executescript(_SCHEMA)
        for suffix in ("", "-journal"):
            tighten(Path(f"{self.path}{suffix}"), 0o600)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for one transaction: committed (or rolled back) and closed at the end."""
        con = sqlite3.connect(self.path, timeout=30)
        try:
            con.execute("PRAGMA secure_delete = ON")
            with con:
                yield con
        finally:
            con.close()

    def record(self, name: str, seen_at: float, snapshot: bytes | None = None, gap: float = GAP_S) -> int:
        """Note that ``name`` was in view at ``seen_at``; returns the appearance's id."""
        with self._connect() as con:
            row = con.execute("SELECT id, last_seen, snapshot FROM appearances WHERE name = ? "
                              "ORDER BY last_seen DESC LIMIT 1", (name,)).fetchone()
            if row is not None and row[1] - gap <= seen_at <= row[1] + gap:
                con.execute("UPDATE appearances SET last_seen = MAX(last_seen, ?), snapshot = COALESCE(snapshot, ?) "
                            "WHERE id = ?", (seen_at, snapshot, row[0]))
                return int(row[0])
            cur = con.execute("INSERT INTO appearances (name, first_seen, last_seen, snapshot) VALUES (?,?,?,?)",
                              (name, seen_at, seen_at, snapshot))
            return int(cur.lastrowid)

    def appearances(self, day: date | None = None, names: Iterable[str] | None = None) -> list[Appearance]:
        """Appearances, newest first; only those overlapping ``day`` (local time) and of ``names``."""
        q, args = "SELECT id, name, first_seen, last_seen, snapshot FROM appearances WHERE 1=1", []
        if day is not None:
            start = datetime.combine(day, datetime.min.time()).timestamp()
            end = datetime.combine(day + timedelta(days=1), datetime.min.time()).timestamp()
            q += " AND last_seen >= ? AND first_seen < ?"
            args += [start, end]
        if names is not None:
            names = list(names)
            q += f" AND name IN ({','.join('?' * len(names))})"
            args += names
        with self._connect() as con:
            rows = con.execute(q + " ORDER BY first_seen DESC, id DESC", args).fetchall()
        return [Appearance(*r) for r in rows]

    def people(self) -> list[str]:
        with self._connect() as con:
            return [r[0] for r in con.execute("SELECT DISTINCT name FROM appearances ORDER BY name")]

    def forget(self, name: str) -> int:
        """Delete every appearance of ``name`` (overwritten on disk); returns how many."""
        with self._connect() as con:
            n = con.execute("DELETE FROM appearances WHERE name = ?", (name,)).rowcount
        return n

    def rename(self, old: str, new: str) -> int:
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
    """``name,first_seen,last_seen,duration_s`` with ISO local times, one appearance a line."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "first_seen", "last_seen", "duration_s"])
    for a in appearances:
        w.writerow([a.name, datetime.fromtimestamp(a.first_seen).isoformat(timespec="seconds"),
                    datetime.fromtimestamp(a.last_seen).isoformat(timespec="seconds"), round(a.duration)])
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


class HistoryWriter:
    """Takes sightings from any thread without blocking; one daemon thread writes them.

    :meth:`observe` copies the face crops (a few kilobytes) into a queue and returns;
    the writer thread encodes them and calls :meth:`History.record`. A person's snapshot
    is kept from the start of an appearance only, so later sightings carry none.
    """

    def __init__(self, gallery: Path | str, gap: float = GAP_S) -> None:
        self.history = History(gallery)
        self.gap = gap
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._last: dict[str, float] = {}  # name -> last sighting handed over (this process)
        self._lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="facerec-history", daemon=True)
        self._thread.start()

    def observe(self, people: Sequence[tuple[str, Box]], frame: np.ndarray | None = None,
                seen_at: float | None = None) -> None:
        """``people`` (name, box in ``frame``) are in view at ``seen_at`` (default now)."""
        if not people:
            return
        now = time.time() if seen_at is None else seen_at
        items = []
        with self._lock:
            for name, box in people:
                last = self._last.get(name)
                fresh = last is None or now - last > self.gap
                self._last[name] = now
                crop = face_snapshot(frame, box) if fresh and frame is not None else None
                items.append((name, now, crop))
            self._pending += 1
        self._queue.put(items)

    def _run(self) -> None:
        while True:
            items = self._queue.get()
            try:
                for name, seen_at, crop in items:
                    self.history.record(name, seen_at, encode_jpeg(crop), self.gap)
                self.error = None
            except Exception as exc:  # a full disk must not kill the thread; reported to the page
                self.error = f"history not saved: {type(exc).__name__}: {exc}"
            with self._lock:
                self._pending -= 1
                self._idle.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every sighting handed over so far is written (tests)."""
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
    """The process's one writer for ``gallery`` (its thread lives as long as the process)."""
    key = Path(gallery).resolve()
    with _WRITERS_LOCK:
        w = _WRITERS.get(key)
        if w is None:
            w = _WRITERS[key] = HistoryWriter(key)
        return w
