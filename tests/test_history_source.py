"""Who was here, by source: Live's sightings ("live") beside the HTTP API's (the key's name),
and history files written before the source column existed (issue 21, item 6)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from facerec import history, storage
from facerec.errors import DiskFullError
from facerec.history import History, HistoryWriter

T0 = datetime(2026, 3, 2, 9, 0, 0).timestamp()

OLD_SCHEMA = """
CREATE TABLE appearances (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    snapshot BLOB);
CREATE INDEX appearances_name ON appearances(name, last_seen);
CREATE INDEX appearances_first ON appearances(first_seen);
"""


def _old_file(gallery: Path) -> Path:
    """A history file as facerec wrote it before sources: Ann and Bob seen on Live."""
    path = history.history_path(gallery)
    path.parent.mkdir(parents=True, mode=0o700)
    con = sqlite3.connect(path)
    con.executescript(OLD_SCHEMA)
    con.executemany("INSERT INTO appearances (name, first_seen, last_seen, snapshot) VALUES (?,?,?,?)",
                    [("Ann", T0, T0 + 40, b"jpeg"), ("Bob", T0 + 100, T0 + 100, None)])
    con.commit()
    con.close()
    path.chmod(0o600)
    return path


def _columns(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return [r[1] for r in con.execute("PRAGMA table_info(appearances)")]
    finally:
        con.close()


def test_sources_keep_their_own_appearances(tmp_path):
    h = History(tmp_path)
    h.record("Ann", T0)
    h.record("Ann", T0 + 10, source="doorbell")  # the same minute at another camera: its own appearance
    h.record("Ann", T0 + 20)
    h.record("Ann", T0 + 25, source="doorbell")
    rows = h.appearances()
    assert sorted((a.source, a.first_seen - T0, a.last_seen - T0) for a in rows) == [
        ("doorbell", 10, 25), ("live", 0, 20)]
    assert h.sources() == ["doorbell", "live"]
    assert [a.source for a in h.appearances(sources=["doorbell"])] == ["doorbell"]
    assert [a.source for a in h.appearances(names=["Ann"], sources=["live"])] == ["live"]
    csv = history.to_csv(h.appearances()).splitlines()
    assert csv[0].endswith(",source") and csv[1].endswith(",15,doorbell") and csv[2].endswith(",20,live")
    assert h.rename("Ann", "Anna") == 2 and {a.name for a in h.appearances()} == {"Anna"}
    assert history.forget(tmp_path, "Anna") == 2 and h.sources() == []


def test_an_old_file_is_read_as_is_and_migrated_by_the_first_write(tmp_path):
    path = _old_file(tmp_path)
    h = History(tmp_path)  # opening writes nothing
    assert "source" not in _columns(path)
    assert [(a.name, a.source, a.snapshot) for a in h.appearances()] == [("Bob", "live", None),
                                                                       ("Ann", "live", b"jpeg")]
    assert h.sources() == ["live"] and h.appearances(sources=["doorbell"]) == []
    assert h.record("Ann", T0 + 50) == 1  # continues Live's appearance of the old file
    assert "source" in _columns(path)
    h.record("Ann", T0 + 60, source="doorbell")
    assert sorted((a.name, a.source, a.last_seen - T0) for a in h.appearances()) == [
        ("Ann", "doorbell", 60), ("Ann", "live", 50), ("Bob", "live", 100)]
    History(tmp_path).record("Cy", T0 + 70)  # migrating twice is harmless
    assert _columns(path).count("source") == 1


def test_an_old_file_on_a_full_disk_is_readable_and_left_unchanged(tmp_path, monkeypatch):
    path = _old_file(tmp_path)
    real = storage._open

    def full(p, immutable=False):
        if not immutable:
            raise sqlite3.OperationalError("database or disk is full")
        return real(p, immutable=True)

    monkeypatch.setattr(storage, "_open", full)
    h = History(tmp_path)
    assert [(a.name, a.source) for a in h.appearances()] == [("Bob", "live"), ("Ann", "live")]
    assert h.sources() == ["live"] and h.people() == ["Ann", "Bob"]
    assert [a.name for a in h.appearances(sources=["live"], names=["Ann"])] == ["Ann"]
    with pytest.raises(DiskFullError):
        h.record("Cy", T0 + 200, source="doorbell")
    monkeypatch.setattr(storage, "_open", real)
    assert "source" not in _columns(path)  # nothing half-written, not even the migration
    assert [a.name for a in History(tmp_path).appearances()] == ["Bob", "Ann"]


def test_the_writer_records_each_source(tmp_path):
    w = HistoryWriter(tmp_path)
    frame = np.zeros((120, 160, 3), np.uint8)
    w.observe([("Ann", (40.0, 30.0, 40.0, 40.0))], frame, seen_at=T0)
    w.observe([("Ann", (40.0, 30.0, 40.0, 40.0))], frame, seen_at=T0 + 1, source="doorbell")
    assert w.close()
    rows = History(tmp_path).appearances()
    assert sorted(a.source for a in rows) == ["doorbell", "live"]
    assert all(a.snapshot is not None for a in rows)  # the first sighting at each source keeps a face
