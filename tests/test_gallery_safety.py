"""A gallery that survives crashes and races (issue 12, item 3) and odd folders (item 6).

Every test asserts on outcomes: the gallery each scenario ends with is compared with
the gallery an undisturbed run makes.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import facerec.gallery as gallery_mod
from facerec.gallery import Gallery
from facerec.types import Face

from conftest import png_bytes, synthetic_photo

REPO = Path(__file__).resolve().parents[1]

ENROL_SCRIPT = """
import io, sys
import numpy as np
from PIL import Image
sys.path.insert(0, {repo!r})
from facerec.gallery import Gallery
from facerec.storage import content_hash

print("ready", flush=True)
g = Gallery(sys.argv[1])
g.sync()
for i in range({n}):
    rng = np.random.default_rng(i)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(buf, format="PNG")
    name, data = f"P{{i % 5}}", buf.getvalue()
    if not g.has_photo(name, content_hash(data)):  # a re-run skips what is done, as people do
        g.add_photo(name, data, (i, 1, 8, 8), rng.normal(size=16).astype(np.float32), "m", ".png")
print("done", flush=True)
"""


def _state(root: Path) -> dict:
    """What a gallery holds: rows, vectors and the files in person folders (with bytes)."""
    con = sqlite3.connect(root / ".facerec" / "index.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    state = {
        "photos": con.execute("SELECT person, file, sha, box FROM photos ORDER BY 1, 2").fetchall(),
        "vectors": con.execute("SELECT sha, box, model, vector FROM vectors ORDER BY 1, 2, 3").fetchall(),
    }
    con.close()
    state["files"] = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                      if p.is_file() and ".facerec" not in p.relative_to(root).parts}
    return state


def test_enrolment_killed_at_random_moments_ends_as_an_undisturbed_one(tmp_path):
    """20 runs of an enrolment script, each killed (SIGKILL) a random while after it
    started enrolling (a few photos in, on average), then one run to the end."""
    n = 60
    script = tmp_path / "enrol.py"
    script.write_text(ENROL_SCRIPT.format(repo=str(REPO), n=n))

    def start(root: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, str(script), str(root)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout.readline().strip() == "ready"
        return proc

    ref = start(tmp_path / "ref")
    t0 = time.perf_counter()
    assert ref.stdout.readline().strip() == "done" and ref.wait() == 0
    per_photo = (time.perf_counter() - t0) / n
    root = tmp_path / "g"
    rng = random.Random(12)
    for _ in range(20):
        proc = start(root)
        time.sleep(rng.uniform(0.0, 6 * per_photo))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    last = start(root)
    assert last.stdout.readline().strip() == "done" and last.wait() == 0
    ref.stdout.close()
    last.stdout.close()
    Gallery(root).sync()  # as the next program to open it does
    got, want = _state(root), _state(ref_root := tmp_path / "ref")
    assert len(want["photos"]) == n and len(want["files"]) == n and ref_root.is_dir()
    assert got == want


def test_sync_during_a_group_photo_enrolment_keeps_the_picked_face(recognizer, monkeypatch):
    """A sync from another program at the worst moments of an enrolment (just after the
    photo's file is written, just before it is renamed into place): the face the user
    picked in a group photo is the one enrolled, not the largest."""
    rec = recognizer
    root = rec.gallery.root
    rec.enroll("Bob", png_bytes(synthetic_photo([2], seed=1)), source="bob.png")
    syncs: list[threading.Thread] = []
    busy = threading.local()

    def sync_now() -> None:
        def run():
            busy.on = True
            Gallery(root).sync()
        t = threading.Thread(target=run)
        t.start()
        t.join(0.5)  # done by then unless it waits for the enrolment's write lock, as it should
        syncs.append(t)

    real_write, real_replace = gallery_mod.write_atomic, os.replace

    def write_then_sync(path, data, *args, **kwargs):
        real_write(path, data, *args, **kwargs)
        if not getattr(busy, "on", False):
            sync_now()

    def sync_then_replace(src, dst, *args, **kwargs):
        if not getattr(busy, "on", False) and str(src).endswith(gallery_mod.PENDING):
            sync_now()
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(gallery_mod, "write_atomic", write_then_sync)
    monkeypatch.setattr(gallery_mod.os, "replace", sync_then_replace)
    # a group photo: a big face of person 4 and the small face of person 5, whom the user picks
    group = np.zeros((140, 260, 3), np.uint8)
    group[10:130, 10:130] = synthetic_photo([4], seed=7, size=120)[20:140, 30:150]
    group[40:88, 180:228] = synthetic_photo([5], seed=7)[20:68, 30:78]
    picked = Face(box=(180.0, 40.0, 48.0, 48.0), score=0.99)
    result = rec.enroll("Cleo", png_bytes(group), source="party.png", face=picked)
    rec.enroll("Cleo", png_bytes(synthetic_photo([5], seed=8)), source="cleo.png")
    for t in syncs:
        t.join()
    monkeypatch.undo()
    assert syncs
    records = {r.path.name: r for r in rec.gallery.photos("Cleo")}
    assert records[result.record.path.name].box == (180, 40, 48, 48)
    assert all(r.path.is_file() for r in records.values()) and len(records) == 2
    assert not [p for p in (root / "Cleo").iterdir() if p.name.startswith(".")]
    names = [m.name for _, m in rec.identify(synthetic_photo([4, 5], seed=9))]
    assert names[1] == "Cleo" and names[0] != "Cleo"


def test_sync_during_a_rename_keeps_the_face_boxes(tmp_path, monkeypatch):
    g = Gallery(tmp_path / "g")
    for i in range(3):
        g.add_photo("Ann", png_bytes(synthetic_photo([3], seed=i)), (30, 20, 48, 48), np.ones(8, np.float32), "m",
                    ".png")
    threads: list[threading.Thread] = []
    real_replace = os.replace

    def replace_then_sync(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if Path(dst).name == "Anne":
            t = threading.Thread(target=lambda: Gallery(g.root).sync())
            t.start()
            t.join(0.5)
            threads.append(t)

    monkeypatch.setattr(gallery_mod.os, "replace", replace_then_sync)
    g.rename_person("Ann", "Anne")
    for t in threads:
        t.join()
    monkeypatch.undo()
    assert threads
    assert [r.box for r in g.photos("Anne")] == [(30, 20, 48, 48)] * 3 and not g.photos("Ann")
    X, names, missing = g.vectors("m")
    assert names == ["Anne"] * 3 and not missing


def test_a_photo_moved_by_hand_keeps_its_face(tmp_path):
    g = Gallery(tmp_path / "g")
    rec = g.add_photo("Ann", png_bytes(synthetic_photo([3, 4], seed=1)), (108, 20, 48, 48),
                      np.ones(8, np.float32), "m", ".png")
    (g.root / "Bea").mkdir()
    os.replace(rec.path, g.root / "Bea" / "party.png")
    added, dropped = g.sync()
    assert [(r.person, r.box) for r in added] == [("Bea", (108, 20, 48, 48))] and len(dropped) == 1
    assert g.vectors("m")[1] == ["Bea"]


CONCURRENT_SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
sys.path.insert(0, {tests!r})
import numpy as np
from conftest import BlobDetector, png_bytes, synthetic_photo
from facerec.embed import BACKBONES
from facerec.pipeline import FaceRecognizer
from facerec.settings import Settings


class StubEmbedder:
    \"\"\"A numpy stand-in for the network (no TensorFlow start-up in each process).\"\"\"
    key, input_size, threshold, backbone = "stub", 32, 0.8, BACKBONES["face-resnet"]

    def embed(self, crops, flip=None, batch_size=32):
        x = np.asarray(crops, np.float32).reshape(len(crops), -1)[:, ::48]
        return x / np.linalg.norm(x, axis=1, keepdims=True)


mode, gallery, folder, first = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
settings = Settings(gallery=gallery)
rec = FaceRecognizer(settings, detector=BlobDetector(), embedder=StubEmbedder())
files = []
for i in range(first, first + 50):
    path = f"{{folder}}/p{{i}}.png"
    with open(path, "wb") as f:
        f.write(png_bytes(synthetic_photo([i], seed=i)))
    files.append(path)
if mode == "cli":
    from facerec import cli
    cli._recognizer = lambda args: rec
    sys.exit(cli.main(["enroll", "-q", "--yes", "--gallery", gallery, "--name", f"Person {{first}}"] + files))
for path in files:  # as the app's Enrol page: one photo at a time, the face picked
    data = open(path, "rb").read()
    face = rec.find_faces(rec.read(data, path))[0]
    rec.enroll(f"Person {{first}}", data, source=path, face=face)
    rec.refresh()  # as the Live page does between enrolments
print("done")
"""


def test_the_cli_and_the_app_enrolling_at_once_lose_nothing(tmp_path):
    script = tmp_path / "enrol.py"
    script.write_text(CONCURRENT_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests")))
    gallery = tmp_path / "g"
    procs = []
    for mode, first in (("cli", 0), ("app", 100)):
        (tmp_path / mode).mkdir()
        procs.append(subprocess.Popen([sys.executable, str(script), mode, str(gallery), str(tmp_path / mode),
                                       str(first)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    g = Gallery(gallery)
    assert {(p.name, p.photos) for p in g.people()} == {("Person 0", 50), ("Person 100", 50)}
    X, names, missing = g.vectors("stub")
    assert len(X) == 100 and not missing
    state = _state(gallery)
    assert len(state["files"]) == 100 and len({sha for _, _, sha, _ in state["photos"]}) == 100


def test_odd_folders_are_listed_as_problems_and_hide_nobody(tmp_path):
    g = Gallery(tmp_path / "g")
    for name in ("Ann", "Zed"):
        g.add_photo(name, png_bytes(synthetic_photo([len(name)], seed=ord(name[0]))), (1, 1, 8, 8),
                    np.ones(4, np.float32), "m", ".png")
    for odd in ("unknown", "..x", " Bea", "Unknown"):
        (g.root / odd).mkdir()
        (g.root / odd / "a.png").write_bytes(png_bytes(synthetic_photo([1])))
    people = g.people()
    assert [p.name for p in people] == ["Ann", "Zed"]
    for p in people:  # what the People page does for each person listed
        assert len(g.photos(p.name)) == 1
    assert sorted(p.path.name for p in g.problems()) == sorted([" Bea", "..x", "Unknown", "unknown"])
    assert all(p.reason for p in g.problems())
    added, _ = g.sync()
    assert added == []


def test_people_list_names_everyone_and_reports_odd_folders_on_stderr(tmp_path, capsys):
    from facerec import cli

    g = Gallery(tmp_path / "g")
    g.add_photo("Ann", png_bytes(synthetic_photo([1])), (1, 1, 8, 8), np.ones(4, np.float32), "m", ".png")
    (g.root / "unknown").mkdir()
    (g.root / "Zed").mkdir()
    assert cli.main(["people", "list", "--gallery", str(g.root)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["Ann,1", "Zed,0"]
    assert "unknown" in err and "ignored" in err


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_gallery_index_and_caches_are_private_whatever_the_umask(tmp_path, umask):
    from facerec.cluster import UnknownGroup, Member, save_clusters
    from facerec.tagcache import TagCache

    old = os.umask(umask)
    try:
        g = Gallery(tmp_path / "g")
        rec = g.add_photo("Ann", png_bytes(synthetic_photo([1])), (30, 20, 48, 48), np.ones(4, np.float32), "m",
                          ".png")
        photo = tmp_path / "p.png"
        photo.write_bytes(png_bytes(synthetic_photo([1])))
        save_clusters([UnknownGroup("unknown_1", (Member(photo, (30.0, 20.0, 48.0, 48.0)),),
                                    np.ones((1, 4), np.float32))], tmp_path / "g" / ".facerec" / "clusters" / "c.json",
                      0.5, "m")
        with TagCache(tmp_path / "cache" / "tags.sqlite") as cache:
            cache.put("ab", "p", (10, 10), [])
    finally:
        os.umask(old)
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in [g.root, g.root / ".facerec", rec.path.parent, rec.path,
                                                           g.db_path, tmp_path / "cache",
                                                           tmp_path / "cache" / "tags.sqlite"]}
    modes.update({p: stat.S_IMODE(p.stat().st_mode) for p in (g.root / ".facerec" / "clusters").iterdir()})
    modes[g.root / ".facerec" / "clusters"] = stat.S_IMODE((g.root / ".facerec" / "clusters").stat().st_mode)
    for suffix in ("-wal", "-shm"):
        wal = Path(f"{g.db_path}{suffix}")
        if wal.exists():
            modes[wal] = stat.S_IMODE(wal.stat().st_mode)
    for path, mode in modes.items():
        assert mode == (0o700 if path.is_dir() else 0o600), (str(path), oct(mode))


def test_cache_writes_are_atomic(tmp_path, monkeypatch):
    """A cluster file whose rewrite fails (disk full, a kill) is left whole as it was."""
    import facerec.cluster as cluster_mod
    from facerec.cluster import Member, UnknownGroup, load_clusters, save_clusters

    photo = tmp_path / "p.png"
    photo.write_bytes(png_bytes(synthetic_photo([1])))
    group = UnknownGroup("unknown_1", (Member(photo, (30.0, 20.0, 48.0, 48.0)),), np.ones((1, 4), np.float32))
    path = tmp_path / "clusters" / "clusters.json"
    save_clusters([group], path, 0.5, "m", sheets=False)
    before = path.read_bytes()
    real_fsync, real_write = os.fsync, cluster_mod.write_atomic

    def die(fd):
        raise OSError(28, "No space left on device")

    def json_fails(target, data, *args, **kwargs):
        if Path(target).suffix == ".json":
            monkeypatch.setattr(gallery_mod.os, "fsync", die)
        try:
            real_write(target, data, *args, **kwargs)
        finally:
            monkeypatch.setattr(gallery_mod.os, "fsync", real_fsync)

    monkeypatch.setattr(cluster_mod, "write_atomic", json_fails)
    with pytest.raises(OSError):
        save_clusters([group, group], path, 0.7, "m", sheets=False)
    monkeypatch.undo()
    assert path.read_bytes() == before and load_clusters(path).threshold == 0.5
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


def test_refresh_cannot_miss_a_change_made_while_it_reads(recognizer, monkeypatch):
    """Another program enrols someone just after refresh() read the vectors: the next
    refresh() sees the change (the matcher is marked with the version read with them)."""
    rec = recognizer
    rec.enroll("Ann", png_bytes(synthetic_photo([1], seed=1)), source="ann.png")
    other = Gallery(rec.gallery.root)
    dan = rec.faces(synthetic_photo([6], seed=2))[0]
    real = Gallery.snapshot
    done = []

    def snapshot_then_enrol(self, model):
        out = real(self, model)
        if not done:
            done.append(other.add_photo("Dan", png_bytes(synthetic_photo([6], seed=2)), dan.box, dan.vector, model,
                                        ".png"))
        return out

    monkeypatch.setattr(Gallery, "snapshot", snapshot_then_enrol)
    rec.refresh()
    monkeypatch.undo()
    assert done
    assert [m.name for _, m in rec.identify(synthetic_photo([6], seed=3))] == ["Dan"]


def test_re_embedding_does_not_hold_up_other_callers(recognizer):
    """While one thread embeds the gallery for a base, another with a matcher keeps
    matching at once; one without (wait=False) is told the progress instead of waiting."""
    from facerec.errors import GalleryBusyError
    from facerec.pipeline import FaceRecognizer

    rec = recognizer
    rec.enroll("Ann", png_bytes(synthetic_photo([1], seed=1)), source="ann.png")
    rec.refresh()
    (rec.gallery.root / "Bea").mkdir()
    (rec.gallery.root / "Bea" / "b.png").write_bytes(png_bytes(synthetic_photo([2], seed=2)))
    Gallery(rec.gallery.root).sync()  # dropped in by hand and indexed elsewhere: to be embedded here
    fresh = FaceRecognizer(rec.settings, detector=rec.detector, embedder=rec.embedder)
    started, release = threading.Event(), threading.Event()

    def slow(records):
        for r in records:
            started.set()
            release.wait(30)
            yield r

    worker = threading.Thread(target=rec.refresh, args=(slow,))
    worker.start()
    try:
        assert started.wait(30)
        assert [m.name for _, m in rec.identify(synthetic_photo([1], seed=4))] == ["Ann"]  # old matcher, no wait
        assert rec.preparing == (0, 1)
        fresh._refresh_lock = rec._refresh_lock  # as if this recogniser's own refresh were the slow one
        fresh._preparing = (0, 1)
        with pytest.raises(GalleryBusyError, match="0 of 1"):
            fresh.refresh(wait=False)
    finally:
        release.set()
        worker.join()
    assert rec.preparing is None
    assert [m.name for _, m in rec.identify(synthetic_photo([2], seed=5))] == ["Bea"]


def test_sync_hashes_dropped_photos_without_holding_the_write_lock(tmp_path, monkeypatch):
    g = Gallery(tmp_path / "g")
    (g.root / "Cleo").mkdir()
    for i in range(3):
        (g.root / "Cleo" / f"{i}.png").write_bytes(png_bytes(synthetic_photo([4], seed=i)))
    writable = []
    real = gallery_mod.file_hash

    def hash_and_try_writing(path):
        con = sqlite3.connect(g.db_path, timeout=0, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")  # another writer, not waiting at all
            con.execute("ROLLBACK")
            writable.append(True)
        except sqlite3.OperationalError:
            writable.append(False)
        finally:
            con.close()
        return real(path)

    monkeypatch.setattr(gallery_mod, "file_hash", hash_and_try_writing)
    added, _ = g.sync()
    assert len(added) == 3 and writable == [True] * 3
