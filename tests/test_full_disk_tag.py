"""`facerec tag` with its tag cache on a full disk (a small tmpfs filled up, for real).

Issue 25 item 2: the run must write its report for every photo, list what could not be
stored, exit non-zero, and the next run after space is freed must carry on from the
photos whose cache entries were stored.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import png_bytes, synthetic_photo, tmpfs

@pytest.fixture
def small_disk(tmp_path: Path):
    """A 300 KiB tmpfs at ``tmp_path/disk`` (unmounted at the end)."""
    with tmpfs(tmp_path / "disk", "300k") as disk:
        yield disk


def fill(disk: Path, leave: int) -> Path:
    """Write a filler file until about ``leave`` bytes are free on ``disk``; returns it."""
    filler = disk / "filler"
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as f:
        try:
            f.write(b"\0" * max(0, free - leave))
            f.flush()
        except OSError:
            pass
    return filler


def _photos(d: Path, n: int) -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = d / f"p{i:03d}.png"
        p.write_bytes(png_bytes(synthetic_photo([1 + i % 2], seed=100 + i)))
        out.append(p)
    return out


def _faces(report: Path) -> dict[str, list]:
    doc = json.loads(report.read_text())
    return {Path(p["path"]).name: [(f["name"], f["box"]) for f in p["faces"]] for p in doc["photos"]}


def test_tag_with_its_cache_on_a_full_disk_reports_every_photo_and_the_next_run_carries_on(tag_env, capsys,
                                                                                          small_disk):
    from facerec import cli
    from facerec.tagcache import TagCache

    n = 30
    _photos(tag_env / "photos", n)
    cache = small_disk / "tags.sqlite"
    filler = fill(small_disk, 192 * 1024)  # room for the cache and its first few photos only

    first = tag_env / "first.json"
    code = cli.main(["tag", str(tag_env / "photos"), "-q", "--cache", str(cache), "--report", str(first)])
    out, err = capsys.readouterr()
    assert code != 0, err
    assert "Traceback" not in err
    doc = json.loads(first.read_text())
    assert doc["summary"] == {"photos": n, "tagged": n, "failed": 0, "faces": n}  # every photo reported
    assert len(out.strip().splitlines()) == n  # one CSV row per face on stdout, as ever
    assert "disk full" in err and "not stored in the tag cache" in err
    noted = [line for line in err.splitlines() if "not stored in the tag cache" in line]

    filler.unlink()  # space freed (and the disk grown: 300 KiB hold a few photos' log pages only)
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    with TagCache(cache) as tc:
        stored = tc.count()
    assert 0 < stored < n  # the photos before the disk filled are kept
    assert len(noted) == n - stored  # one note per photo not stored
    assert {Path(line.split(": not stored")[0].strip()).name for line in noted}.isdisjoint(
        {f"p{i:03d}.png" for i in range(stored)})  # the stored ones are the first, in order
    second = tag_env / "second.json"
    code = cli.main(["tag", str(tag_env / "photos"), "-q", "--cache", str(cache), "--report", str(second)])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert f"{stored} from cache, {n - stored} processed; 0 failed" in err
    assert _faces(second) == _faces(first)
    code = cli.main(["tag", str(tag_env / "photos"), "-q", "--cache", str(cache)])
    _, err = capsys.readouterr()
    assert code == 0 and f"{n} from cache, 0 processed" in err


def test_tag_with_no_room_even_to_open_its_cache_runs_without_it(tag_env, capsys, small_disk):
    from facerec import cli

    n = 6
    _photos(tag_env / "photos", n)
    cache = small_disk / "tags.sqlite"
    fill(small_disk, 0)
    report = tag_env / "r.json"
    code = cli.main(["tag", str(tag_env / "photos"), "-q", "--cache", str(cache), "--report", str(report)])
    _, err = capsys.readouterr()
    assert code != 0 and "Traceback" not in err
    assert json.loads(report.read_text())["summary"]["tagged"] == n
    assert "disk full" in err
    assert len([line for line in err.splitlines() if "not stored in the tag cache" in line]) == n


@pytest.fixture
def tag_env(recognizer, monkeypatch, tmp_path):
    """The CLI over the fake detector and tiny embedder, Ann and Bob enrolled."""
    from facerec import cli
    from facerec.pipeline import FaceRecognizer

    def make(args):
        return FaceRecognizer(cli._settings(args), detector=recognizer.detector, embedder=recognizer.embedder)

    monkeypatch.setattr(cli, "_recognizer", make)
    monkeypatch.setenv("FACEREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FACEREC_GALLERY", str(tmp_path / "g"))
    rec = make(cli.build_parser().parse_args(["identify", "x"]))
    for person, name in [(1, "Ann"), (2, "Bob")]:
        for seed in range(2):
            rec.enroll(name, png_bytes(synthetic_photo([person], seed=seed)), source=f"{name}{seed}.png")
    return tmp_path
