"""Who-was-here's writer: sightings queued at exit are written, its error is shared under a lock,
and the history opens through the storage floor (issue 20, "Smaller")."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import datetime
from pathlib import Path

import pytest

from facerec import history, storage
from facerec.errors import DiskFullError
from facerec.history import History, HistoryWriter

T0 = datetime(2026, 3, 2, 9, 0, 0).timestamp()
ROOT = Path(__file__).resolve().parents[1]


def test_sightings_queued_right_before_exit_are_written(tmp_path):
    """A process hands 40 sightings to the gallery's writer (each write slowed down, so nearly all
    are still queued) and exits at once: every one is in the history afterwards."""
    script = textwrap.dedent(f"""
        import time
        import numpy as np
        from facerec import history

        slow = history.History.record
        def record(self, *args, **kwargs):
            time.sleep(0.02)  # a slow disk: the queue is still full when the process ends
            return slow(self, *args, **kwargs)
        history.History.record = record

        w = history.writer({str(tmp_path)!r})
        frame = np.full((120, 160, 3), 200, np.uint8)
        for i in range(40):
            w.observe([(f"person {{i}}", (40.0, 30.0, 50.0, 50.0))], frame, seen_at={T0} + i)
        print("queued", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "queued", done.stderr
    rows = History(tmp_path).appearances()
    assert len(rows) == 40 and {a.name for a in rows} == {f"person {i}" for i in range(40)}
    assert all(a.snapshot[:2] == b"\xff\xd8" for a in rows)  # each with its face picture


def test_close_writes_what_is_queued_and_ends_the_thread(tmp_path):
    w = history.writer(tmp_path)
    assert history.writer(tmp_path) is w  # one per gallery and process
    for i in range(5):
        w.observe([("Ann", (0.0, 0.0, 10.0, 10.0))], None, seen_at=T0 + 100 * i)
    assert w.close() and w.closed and not w._thread.is_alive()
    assert len(History(tmp_path).appearances()) == 5
    w.observe([("Bob", (0.0, 0.0, 10.0, 10.0))], None, seen_at=T0)  # after close: ignored, never blocks
    assert w.close() and History(tmp_path).people() == ["Ann"]
    again = history.writer(tmp_path)
    assert again is not w and not again.closed  # a closed writer is replaced
    history.close_writers()  # what atexit runs
    assert again.closed and not again._thread.is_alive()


def test_the_writer_reports_a_failed_write_then_clears_it(tmp_path, monkeypatch):
    """``error`` is written by the writer thread and read by the page's thread under one lock:
    set while writes fail, cleared by the next good one."""
    w = HistoryWriter(tmp_path)
    real = History.record
    failing = threading.Event()
    failing.set()

    def record(self, *args, **kwargs):
        if failing.is_set():
            raise DiskFullError("disk full: could not write the history")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(History, "record", record)
    w.observe([("Ann", (0.0, 0.0, 10.0, 10.0))], None, seen_at=T0)
    assert w.flush() and w.error == "history not saved: DiskFullError: disk full: could not write the history"
    failing.clear()
    w.observe([("Ann", (0.0, 0.0, 10.0, 10.0))], None, seen_at=T0 + 1)
    assert w.flush() and w.error is None
    assert w.close() and [a.name for a in History(tmp_path).appearances()] == ["Ann"]


def test_a_full_disk_leaves_the_history_readable(tmp_path, monkeypatch):
    """Opened through the storage floor: when SQLite cannot write (a full disk), the history
    still lists who was here, and recording says the disk is full instead of corrupting it."""
    h = History(tmp_path)
    h.record("Ann", T0, b"jpeg")
    h.record("Bob", T0 + 100)
    real = storage._open

    def full(path, immutable=False):
        if not immutable:
            raise sqlite3.OperationalError("database or disk is full")
        return real(path, immutable=True)

    monkeypatch.setattr(storage, "_open", full)
    assert [a.name for a in History(tmp_path).appearances()] == ["Bob", "Ann"]
    assert h.people() == ["Ann", "Bob"]
    with pytest.raises(DiskFullError):
        h.record("Cy", T0 + 200)
    monkeypatch.setattr(storage, "_open", real)
    assert h.people() == ["Ann", "Bob"]  # nothing half-written


def test_forget_leaves_no_copy_in_the_write_ahead_log(tmp_path):
    h = History(tmp_path)
    h.record("Ann", T0, b"a face picture of Ann")
    h.record("Bob", T0)
    assert h.forget("Ann") == 1
    wal = Path(f"{h.path}-wal")
    for f in (h.path, wal):
        assert not f.exists() or b"a face picture of Ann" not in f.read_bytes()
    assert h.people() == ["Bob"]
