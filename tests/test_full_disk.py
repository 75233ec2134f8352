"""A full disk never makes a gallery unreadable, and a write that fails on it says "disk full"
and leaves nothing half made (issue 25, item 2): a gallery on a small tmpfs, filled up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from facerec import cli
from facerec.errors import DiskFullError
from facerec.people import People
from facerec.pipeline import FaceRecognizer

from conftest import BlobDetector, png_bytes, synthetic_photo, tmpfs


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but the index, and the index's rows (read without writing)."""
    import sqlite3

    snap = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".facerec" not in p.parts}
    con = sqlite3.connect(f"file:{root / '.facerec' / 'index.sqlite'}?immutable=1", uri=True)
    for table in ("photos", "vectors"):
        snap[f"<{table}>"] = repr(con.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()).encode()
    con.close()
    return snap


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (mounting needs root)."""
    with tmpfs(tmp_path / "disk", "2m") as disk:
        yield disk


def fill(mnt: Path) -> Path:
    """Fill the file system at ``mnt``; returns the filler (delete it to free the space)."""
    filler = mnt / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                continue
    assert os.statvfs(mnt).f_bavail == 0
    return filler


@pytest.fixture
def full_gallery(small_disk, settings, tiny_embedder):
    settings = settings.replace(gallery=small_disk / "g")
    people = People(FaceRecognizer(settings, detector=BlobDetector(), embedder=tiny_embedder))
    for name, person in (("Ann", 1), ("Bob", 2)):
        for s in range(2):
            people.enroll(name, png_bytes(synthetic_photo([person], seed=s)), source=f"{name}{s}.png", confirm=True)
    filler = fill(small_disk)
    return settings, filler


def _fresh(settings, tiny_embedder) -> People:
    """A new process's view: nothing cached, every file opened again."""
    return People(FaceRecognizer(settings, detector=BlobDetector(), embedder=tiny_embedder))


def test_reading_a_gallery_on_a_full_disk_works(full_gallery, tiny_embedder, monkeypatch, capsys):
    settings, _ = full_gallery
    before = tree_snapshot(settings.gallery)
    people = _fresh(settings, tiny_embedder)
    assert [(p.name, p.photos) for p in people.list()] == [("Ann", 2), ("Bob", 2)]
    named = people.rec.identify(synthetic_photo([2], seed=9))
    assert [m.name for _, m in named] == ["Bob"]
    monkeypatch.setenv("FACEREC_GALLERY", str(settings.gallery))
    monkeypatch.setenv("FACEREC_CACHE_DIR", str(settings.cache_dir))
    assert cli.main(["people", "list"]) == 0
    assert capsys.readouterr().out == "Ann,2\nBob,2\n"
    assert tree_snapshot(settings.gallery) == before  # nothing written on the read path


def test_enrolling_on_a_full_disk_says_so_and_leaves_no_empty_person(full_gallery, tiny_embedder, monkeypatch,
                                                                     capsys, tmp_path):
    settings, filler = full_gallery
    people = _fresh(settings, tiny_embedder)
    for name in ("Bill Gates", "Ann"):  # a new person, and a photo more of someone enrolled
        with pytest.raises(DiskFullError, match="disk full"):
            people.enroll(name, png_bytes(synthetic_photo([3], seed=1)), source="x.png", confirm=True)
    assert [(p.name, p.photos) for p in people.list()] == [("Ann", 2), ("Bob", 2)]
    assert not (settings.gallery / "Bill Gates").exists()
    photo = tmp_path / "bill.png"
    photo.write_bytes(png_bytes(synthetic_photo([3], seed=1)))
    monkeypatch.setattr(cli, "_recognizer", lambda args: people.rec)
    assert cli.main(["enroll", "--name", "Bill Gates", str(photo)]) == DiskFullError.exit_code
    err = capsys.readouterr().err
    assert "disk full" in err and "Traceback" not in err
    filler.unlink()  # space freed: the same command works
    assert cli.main(["enroll", "--name", "Bill Gates", str(photo)]) == 0
    assert [(p.name, p.photos) for p in _fresh(settings, tiny_embedder).list()] == [
        ("Ann", 2), ("Bill Gates", 1), ("Bob", 2)]


def test_forgetting_on_a_full_disk_changes_nothing_or_finishes(full_gallery, tiny_embedder):
    settings, filler = full_gallery
    people = _fresh(settings, tiny_embedder)
    before = tree_snapshot(settings.gallery)
    try:
        people.forget("Ann")
        done = True
    except DiskFullError:
        done = False
    if not done:  # as before, readable, and Ann still fully enrolled
        assert tree_snapshot(settings.gallery) == before
        assert [(p.name, p.photos) for p in people.list()] == [("Ann", 2), ("Bob", 2)]
        filler.unlink()
        people.forget("Ann")
    assert [p.name for p in _fresh(settings, tiny_embedder).list()] == ["Bob"]
    assert people.unfinished() == []
