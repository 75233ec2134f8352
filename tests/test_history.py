"""Who was here: appearances recorded from Live's video thread, kept in the gallery, shown and forgotten."""

from __future__ import annotations

import os
import stat
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from apptest_nav import goto
from conftest import png_bytes, synthetic_photo
from facerec import history
from facerec.history import History, HistoryWriter, format_duration

APP = str(Path(__file__).resolve().parents[1] / "app.py")
T0 = datetime(2026, 3, 2, 9, 0, 0).timestamp()


def test_sightings_join_into_appearances(tmp_path):
    h = History(tmp_path)
    h.record("Ann", T0)
    h.record("Ann", T0 + 20)
    h.record("Ann", T0 + 45)  # within 30 s of the last sighting: the same stay
    h.record("Bob", T0 + 10)
    h.record("Ann", T0 + 400)  # gone for minutes: a new appearance
    rows = h.appearances()
    assert [(a.name, a.duration) for a in rows] == [("Ann", 0.0), ("Bob", 0.0), ("Ann", 45.0)]
    assert h.people() == ["Ann", "Bob"]
    assert [a.name for a in h.appearances(names=["Bob"])] == ["Bob"]
    assert h.appearances(day=date(2026, 3, 3)) == [] and len(h.appearances(day=date(2026, 3, 2))) == 3
    assert stat.S_IMODE(os.stat(h.path).st_mode) == 0o600
    assert h.path == tmp_path / ".facerec" / "history.sqlite"


def test_forget_removes_a_person_and_csv_lists_the_rest(tmp_path):
    h = History(tmp_path)
    h.record("Ann", T0, b"jpeg")
    h.record("Bob", T0)
    h.record("Bob", T0 + 25)
    assert history.forget(tmp_path, "Ann") == 1
    assert h.people() == ["Bob"]
    assert b"jpeg" not in h.path.read_bytes()  # secure_delete: the row is overwritten on disk
    csv = history.to_csv(h.appearances()).splitlines()
    assert csv[0] == "name,first_seen,last_seen,duration_s,source"
    assert csv[1].startswith("Bob,2026-03-02T09:00:00,") and csv[1].endswith(",25,live")
    assert history.forget(tmp_path / "elsewhere", "Ann") == 0  # no history there: nothing to do


@pytest.mark.parametrize("seconds, text", [(4, "4 s"), (59.9, "59 s"), (120, "2 min"), (3600, "1 h"),
                                           (3960, "1 h 6 min")])
def test_durations_read_as_people_say_them(seconds, text):
    assert format_duration(seconds) == text


def test_the_writer_never_blocks_and_keeps_a_face_snapshot(tmp_path):
    w = HistoryWriter(tmp_path)
    frame = np.full((120, 160, 3), 200, np.uint8)
    w.observe([("Ann", (40.0, 30.0, 50.0, 50.0))], frame, seen_at=T0)
    w.observe([("Ann", (42.0, 30.0, 50.0, 50.0))], frame, seen_at=T0 + 3)
    assert w.flush()
    [a] = w.history.appearances()
    assert (a.name, a.duration) == ("Ann", 3.0) and a.snapshot[:2] == b"\xff\xd8"  # a JPEG


def test_live_records_who_it_names(recognizer, tmp_path):
    """The LiveProcessor hands confirmed known faces to the recorder from the video thread."""
    from facerec.video import LiveProcessor

    recognizer.enroll("Ann", png_bytes(synthetic_photo([1], seed=1)), "a.png")
    w = HistoryWriter(recognizer.settings.gallery)
    proc = LiveProcessor(recognizer, every=1, confirm=2, background=False, recorder=w.observe)
    frame = synthetic_photo([1, 3], seed=2)
    for _ in range(4):
        proc.process(frame)
    assert w.flush()
    [a] = History(recognizer.settings.gallery).appearances()
    assert a.name == "Ann" and a.snapshot is not None  # the stranger is not recorded
    snap = proc.snapshot()
    assert snap.looked and snap.threshold == recognizer.threshold
    assert {f.label for f in snap.faces} == {"Ann", "unknown"}  # verdicts, no raw scores


def test_presence_says_for_how_long():
    from facerec.video import LiveSnapshot, Presence

    snap = LiveSnapshot(present=(Presence("Ann", 0.99, T0), Presence("unknown", 0.4, T0 + 100)),
                        threshold=0.8, looked=True)
    text = presence_text(snap, now=T0 + 130)
    assert text.splitlines() == ["Ann — match  ·  for 2 min", "unknown  ·  for 30 s"]
    assert presence_text(LiveSnapshot(), now=T0) == "looking..."
    assert presence_text(LiveSnapshot(looked=True), now=T0) == "nobody"


def presence_text(snap, now):
    """The Live page's who-is-in-view text (facerec.app.live.presence_text), without running the app."""
    from facerec.app.live import presence_text

    return presence_text(snap, now)


def test_history_page_filters_and_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEREC_GALLERY", str(tmp_path / "g"))
    monkeypatch.setenv("FACEREC_CACHE_DIR", str(tmp_path / "cache"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    goto(at, "Who was here")
    assert "Nobody has been seen yet" in at.info[0].value
    h = History(tmp_path / "g")
    h.record("Ann", T0, history.encode_jpeg(np.zeros((8, 8, 3), np.uint8)))
    for t in range(25, 130, 25):  # seen every 25 s for 2 min: one appearance
        h.record("Ann", T0 + t)
    h.record("Bob", T0 + 86400)
    at.run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["name"]) == ["Bob", "Ann"] and list(table["for"]) == ["0 s", "2 min"]
    assert list(table["seen by"]) == ["live", "live"]
    assert str(table["face"][1]).startswith("data:image/jpeg;base64,")
    at.multiselect[0].set_value(["Ann"]).run()
    assert list(at.dataframe[0].value["name"]) == ["Ann"]
    at.multiselect[0].set_value([]).run()
    at.date_input[0].set_value(date(2026, 3, 3)).run()
    assert list(at.dataframe[0].value["name"]) == ["Bob"]
    assert [b.label for b in at.get("download_button")] == ["Download CSV"]
