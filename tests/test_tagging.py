"""Batch tagging: reports, the `tag` command, bad input, the cache, the engines."""

from __future__ import annotations

import csv
import io
import json
from functools import partial
from pathlib import Path

import pytest

from facerec.tagging import PhotoResult, csv_report, identify_files, json_report
from facerec.types import UNKNOWN

from conftest import deny_reading, png_bytes, synthetic_photo


def _enrol(recognizer):
    for person, name in [(1, "Ann"), (2, "Bob")]:
        for seed in range(2):
            recognizer.enroll(name, png_bytes(synthetic_photo([person], seed=seed)), source=f"{name}{seed}.png")


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    (d / "a.png").write_bytes(png_bytes(synthetic_photo([2, 9, 1], seed=7)))
    (d / "sub" / "b.png").write_bytes(png_bytes(synthetic_photo([1], seed=5)))
    (d / "none.png").write_bytes(png_bytes(synthetic_photo([], seed=5)))
    (d / "empty.jpg").write_bytes(b"")
    return d


def _results(recognizer, photo_dir):
    from facerec.tagging import find_photos

    _enrol(recognizer)
    return list(identify_files(recognizer, find_photos([photo_dir])))


def test_csv_report_one_row_per_face(recognizer, photo_dir):
    results = _results(recognizer, photo_dir)
    rows = list(csv.reader(io.StringIO(csv_report(results))))
    assert rows[0] == ["path", "face", "name", "score", "x", "y", "w", "h", "verdict"]
    body = rows[1:]
    assert len(body) == 4  # 3 faces in a.png, 1 in b.png; none and the empty file have no rows
    a = sorted((r for r in body if r[0].endswith("a.png")), key=lambda r: int(r[4]))
    assert [r[2] for r in a] == ["Bob", UNKNOWN, "Ann"]
    assert sorted(r[1] for r in a) == ["1", "2", "3"]
    assert a[0][4:8] == ["30", "20", "48", "48"]  # box in photo pixels
    assert all(0 <= float(r[3]) <= 1 for r in body)
    b = [r for r in body if r[0].endswith("b.png")]
    assert [r[2] for r in b] == ["Ann"]


def test_json_report_has_photos_faces_and_failures(recognizer, photo_dir):
    results = _results(recognizer, photo_dir)
    doc = json.loads(json_report(results))
    by_name = {Path(p["path"]).name: p for p in doc["photos"]}
    assert set(by_name) == {"a.png", "b.png", "none.png"}
    a = by_name["a.png"]
    assert (a["width"], a["height"]) == (264, 88)
    assert sorted(f["name"] for f in a["faces"]) == ["Ann", "Bob", UNKNOWN]
    assert by_name["none.png"]["faces"] == []
    assert [Path(f["path"]).name for f in doc["failed"]] == ["empty.jpg"]
    assert "empty" in doc["failed"][0]["error"]
    assert doc["summary"] == {"photos": 4, "tagged": 3, "failed": 1, "faces": 4}


def test_a_file_name_that_is_not_utf8_is_reported_not_a_crash(recognizer, tmp_path):
    """`facerec tag --report` crashed writing a report (and the app's table) when a photo's
    name was not valid UTF-8; the name is now written with \\udcXX escapes that JSON reads
    back as the same Python path."""
    import os

    _enrol(recognizer)
    d = tmp_path / "odd"
    d.mkdir()
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not UTF-8
    (d / name).write_bytes(png_bytes(synthetic_photo([1])))
    (d / os.fsdecode(b"bad\xff.jpg")).write_bytes(b"")  # a failure whose message holds the name
    results = list(identify_files(recognizer, sorted(d.iterdir())))
    doc = json.loads(json_report(results))
    assert [Path(p["path"]).name for p in doc["photos"]] == [name]
    assert [Path(p["path"]).name for p in doc["failed"]] == [os.fsdecode(b"bad\xff.jpg")]
    assert doc["photos"][0]["faces"][0]["name"] == "Ann"
    text = csv_report(results)
    text.encode("utf-8")  # writable as UTF-8
    assert "caf\\udce9.png" in text


def test_reports_of_nothing_are_valid():
    assert csv_report([]) == "path,face,name,score,x,y,w,h,verdict\n"
    assert json.loads(json_report([PhotoResult(Path("x.jpg"), error="x.jpg: file is empty")]))["failed"] == [
        {"path": "x.jpg", "error": "x.jpg: file is empty"}]


# -- facerec tag ---------------------------------------------------------------------


@pytest.fixture
def tag_env(recognizer, monkeypatch, tmp_path):
    """The CLI over the fake detector and tiny embedder, Ann and Bob enrolled, cache in tmp."""
    from facerec import cli
    from facerec.pipeline import FaceRecognizer

    def make(args):
        return FaceRecognizer(cli._settings(args), detector=recognizer.detector, embedder=recognizer.embedder)

    monkeypatch.setattr(cli, "_recognizer", make)
    monkeypatch.setenv("FACEREC_CACHE_DIR", str(tmp_path / "cache"))
    gallery = tmp_path / "g"
    monkeypatch.setenv("FACEREC_GALLERY", str(gallery))
    rec = make(cli.build_parser().parse_args(["identify", "x"]))
    _enrol(rec)
    return tmp_path


def _save(img_array, path: Path, fmt: str, **kw) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img_array).save(path, format=fmt, **kw)


def _snapshot(root: Path) -> dict:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(out: str) -> list[list[str]]:
    return [r for r in csv.reader(io.StringIO(out))]


def test_tag_reads_every_format_recursively_and_never_touches_originals(tag_env, capsys):
    import numpy as np
    from PIL import Image

    from facerec import cli

    d = tag_env / "photos"
    photo = synthetic_photo([1, 2], seed=3)
    _save(photo, d / "p.png", "PNG")
    _save(photo, d / "deep" / "er" / "p.jpg", "JPEG", quality=100, subsampling=0)
    _save(photo, d / "p.webp", "WEBP", lossless=True)
    _save(photo, d / "p.bmp", "BMP")
    _save(photo, d / "p.tiff", "TIFF")
    frames = [Image.fromarray(photo), Image.fromarray(synthetic_photo([9], seed=1))]
    frames[0].save(d / "p.gif", save_all=True, append_images=frames[1:], optimize=False)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed = stored rotated 90 degrees clockwise
    Image.fromarray(np.ascontiguousarray(np.rot90(photo, k=1))).save(d / "rot.png", exif=exif)
    (d / "notes.txt").write_text("not a photo, not listed")
    before = _snapshot(d)

    code = cli.main(["tag", str(d), "-q", "--report", str(tag_env / "r.csv"), "--report", str(tag_env / "r.json"),
                     "--annotate", str(tag_env / "ann")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert _snapshot(d) == before  # bytes and mtimes unchanged, nothing added
    rows = _rows(out)
    by_photo: dict[str, list] = {}
    for r in rows:
        by_photo.setdefault(Path(r[0]).name, []).append(r)
    assert set(by_photo) == {"p.png", "p.jpg", "p.webp", "p.bmp", "p.tiff", "p.gif", "rot.png"}
    for name, rs in by_photo.items():
        rs.sort(key=lambda r: int(r[4]))
        assert len(rs) == 2, name
        if name != "p.jpg":  # JPEG ringing on black blurs the fake detector's boxes and the tiny embedder's names
            assert [r[2] for r in rs] == ["Ann", "Bob"], name
        tol = 10 if name == "p.jpg" else 1
        assert [int(v) for v in rs[0][4:8]] == pytest.approx([30, 20, 48, 48], abs=tol), name  # displayed pixels
    assert (tag_env / "r.csv").read_text().splitlines()[0] == "path,face,name,score,x,y,w,h,verdict"
    assert len(_rows((tag_env / "r.csv").read_text())) == len(rows) + 1
    doc = json.loads((tag_env / "r.json").read_text())
    assert doc["summary"]["photos"] == 7 and doc["failed"] == []
    assert {(p["width"], p["height"]) for p in doc["photos"]} == {(photo.shape[1], photo.shape[0])}
    ann = sorted(p.relative_to(tag_env / "ann").as_posix() for p in (tag_env / "ann").rglob("*") if p.is_file())
    assert ann == ["deep/er/p.jpg", "p.bmp.jpg", "p.gif.jpg", "p.png.jpg", "p.tiff.jpg", "p.webp.jpg", "rot.png.jpg"]
    drawn = np.asarray(Image.open(tag_env / "ann" / "p.png.jpg"))
    assert drawn.shape == photo.shape and (drawn != photo).any()
    assert "tagged 7 of 7 photo(s)" in err and "14 face(s)" in err


def test_tag_failures_give_exit_code_and_reasons(tag_env, capsys):
    from facerec import cli

    d = tag_env / "photos"
    _save(synthetic_photo([1], seed=2), d / "ok.png", "PNG")
    (d / "empty.jpg").write_bytes(b"")
    code = cli.main(["tag", str(d), "-q", "--report", str(tag_env / "r.json")])
    out, err = capsys.readouterr()
    assert code == 1
    assert [r[2] for r in _rows(out)] == ["Ann"]
    assert "1 failed" in err and "empty.jpg: file is empty" in err
    assert json.loads((tag_env / "r.json").read_text())["failed"][0]["error"].endswith("empty.jpg: file is empty")


def test_tag_refuses_a_bad_report_name(tag_env, capsys):
    from facerec import cli

    assert cli.main(["tag", str(tag_env), "--report", "out.txt"]) != 0
    assert "must end in .csv or .json" in capsys.readouterr().err


def test_bad_files_are_reported_with_reasons_and_the_run_goes_on(tag_env, capsys, monkeypatch):
    import numpy as np
    from PIL import Image

    from facerec import cli

    from test_images import _png_header

    d = tag_env / "photos"
    photo = synthetic_photo([1, 2], seed=4)
    _save(photo, d / "good.png", "PNG")
    Image.fromarray(photo).convert("CMYK").save(d / "cmyk.tiff")
    Image.fromarray(photo).convert("RGBA").save(d / "alpha.png")
    Image.fromarray(photo).convert("L").save(d / "grey.png")
    Image.fromarray((photo.max(axis=2).astype(np.uint16) * 257)).save(d / "deep16.png")
    (d / "zero.jpg").write_bytes(b"")
    good = (d / "good.png").read_bytes()
    (d / "cut.png").write_bytes(good[: len(good) // 2])
    (d / "text.jpg").write_bytes(b"this is a text file with a .jpg name")
    (d / "huge.png").write_bytes(_png_header(20000, 20000))
    (d / "locked.png").write_bytes(good)
    (d / "dangling.jpg").symlink_to(d / "deleted.jpg")
    deny_reading(monkeypatch, "locked.png")
    code = cli.main(["tag", str(d), "-q", "--report", str(tag_env / "r.json"), "--report", str(tag_env / "r.csv")])
    out, err = capsys.readouterr()
    assert code == 1
    reasons = {Path(f["path"]).name: f["error"] for f in json.loads((tag_env / "r.json").read_text())["failed"]}
    assert reasons.keys() == {"zero.jpg", "cut.png", "text.jpg", "huge.png", "locked.png", "dangling.jpg"}
    expected = {"zero.jpg": "file is empty", "cut.png": "cannot decode", "text.jpg": "not an image",
                "huge.png": "image too large (400 megapixels", "locked.png": "permission denied",
                "dangling.jpg": "no such file (or a broken link)"}
    for name, why in expected.items():
        assert why in reasons[name], (name, reasons[name])
        assert why in err  # the summary lists each failure
    assert "6 failed" in err
    found = {}
    for r in _rows(out):
        found.setdefault(Path(r[0]).name, []).append(r[2])
    assert set(found) == {"good.png", "cmyk.tiff", "alpha.png", "grey.png", "deep16.png"}
    assert all(len(v) == 2 for v in found.values())
    for name in ("good.png", "cmyk.tiff", "alpha.png"):
        assert sorted(found[name]) == ["Ann", "Bob"], name


# -- the tag cache -------------------------------------------------------------------


class _NoDetector:
    """A detector that must not be needed (every photo should come from the cache)."""

    name = "blobs"

    def detect(self, image):
        raise AssertionError("detection ran on a cached photo")

    def detect_many(self, images, scales=None):
        raise AssertionError("detection ran on a cached photo")


@pytest.fixture
def many_photos(tmp_path):
    d = tmp_path / "many"
    d.mkdir()
    for i in range(20):
        people = [[1], [2], [1, 2], [9], [2, 9, 1]][i % 5]
        (d / f"{i:02d}.png").write_bytes(png_bytes(synthetic_photo(people, seed=i)))
    (d / "bad.jpg").write_bytes(b"nope")
    return d


def _table(results) -> str:
    results = sorted(results, key=lambda r: str(r.path))
    return csv_report(results) + json.dumps(json.loads(json_report(results))["failed"])


def test_second_run_comes_from_the_cache_and_changes_are_retagged(recognizer, settings, many_photos, tmp_path):
    from facerec.pipeline import FaceRecognizer
    from facerec.tagcache import TagCache
    from facerec.tagging import find_photos, tag_photos

    _enrol(recognizer)
    paths = list(find_photos([many_photos]))
    plain = list(tag_photos(recognizer, paths))
    with TagCache(tmp_path / "tags.sqlite") as cache:
        first = list(tag_photos(recognizer, paths, cache=cache))
        assert _table(first) == _table(plain) and not any(r.cached for r in first)
        blind = FaceRecognizer(settings, detector=_NoDetector(), embedder=recognizer.embedder)
        second = list(tag_photos(blind, paths, cache=cache))
        assert _table(second) == _table(first)
        assert sum(r.cached for r in second) == 20  # the bad file is tried again, and fails again

        (many_photos / "03.png").write_bytes(png_bytes(synthetic_photo([1], seed=99)))  # edited photo
        third = {r.path.name: r for r in tag_photos(recognizer, paths, cache=cache)}
        assert not third["03.png"].cached and [m.name for _, m in third["03.png"].faces] == ["Ann"]
        assert sum(r.cached for r in third.values()) == 19

        before = {r.path.name: sorted(m.name for _, m in r.faces) for r in third.values()}
        recognizer.enroll("Cleo", png_bytes(synthetic_photo([9], seed=0)), source="cleo.png")
        fourth = {r.path.name: r for r in tag_photos(blind, paths, cache=cache)}  # gallery changed: re-matched only
        assert sum(r.cached for r in fourth.values()) == 20
        assert before["08.png"] == [UNKNOWN] and [m.name for _, m in fourth["08.png"].faces] == ["Cleo"]
        assert sorted(m.name for _, m in fourth["04.png"].faces) == ["Ann", "Bob", "Cleo"]


def test_unchanged_gallery_reuses_stored_matches_and_a_changed_one_rematches(recognizer, settings, many_photos,
                                                                            tmp_path, monkeypatch):
    from facerec.classify import CosineMatcher
    from facerec.pipeline import FaceRecognizer
    from facerec.tagcache import TagCache
    from facerec.tagging import find_photos, tag_photos

    _enrol(recognizer)
    paths = list(find_photos([many_photos]))
    with TagCache(tmp_path / "tags.sqlite") as cache:
        first = list(tag_photos(recognizer, paths, cache=cache))
        fit = CosineMatcher.fit

        def no_fit(self, X, y):
            raise AssertionError("a matcher was fitted although every photo's matches are stored")

        monkeypatch.setattr(CosineMatcher, "fit", no_fit)
        blind = FaceRecognizer(settings, detector=_NoDetector(), embedder=recognizer.embedder)
        second = list(tag_photos(blind, paths, cache=cache))
        assert _table(second) == _table(first) and sum(r.cached for r in second) == 20
        # a different threshold is a different match key: re-matched from the stored vectors
        with pytest.raises(AssertionError, match="matcher was fitted"):
            list(tag_photos(FaceRecognizer(settings.replace(threshold=0.99), detector=_NoDetector(),
                                           embedder=recognizer.embedder), paths, cache=cache))

        monkeypatch.setattr(CosineMatcher, "fit", fit)
        recognizer.enroll("Cleo", png_bytes(synthetic_photo([9], seed=0)), source="cleo.png")
        third = {r.path.name: r for r in tag_photos(blind, paths, cache=cache)}
        assert sum(r.cached for r in third.values()) == 20
        assert [m.name for _, m in third["08.png"].faces] == ["Cleo"]
        assert sorted(m.name for _, m in third["04.png"].faces) == ["Ann", "Bob", "Cleo"]
        monkeypatch.setattr(CosineMatcher, "fit", no_fit)  # the new gallery's matches are stored now
        fourth = list(tag_photos(blind, paths, cache=cache))
        assert _table(fourth) == _table(third.values())


def test_interrupted_run_leaves_a_consistent_cache_and_resumes(recognizer, many_photos, tmp_path):
    import sqlite3

    from facerec.tagcache import TagCache
    from facerec.tagging import find_photos, tag_photos

    _enrol(recognizer)
    paths = list(find_photos([many_photos]))
    expected = _table(tag_photos(recognizer, paths))
    db = tmp_path / "tags.sqlite"
    with TagCache(db) as cache:
        seen = []
        with pytest.raises(KeyboardInterrupt):
            for res in tag_photos(recognizer, paths, cache=cache, batch_size=4):
                seen.append(res)
                if len(seen) == 7:
                    raise KeyboardInterrupt
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = con.execute("SELECT COUNT(*) FROM photos").fetchone()[0]
    con.close()
    assert 7 <= stored < 20
    with TagCache(db) as cache:
        again = list(tag_photos(recognizer, paths, cache=cache, batch_size=4))
    assert _table(again) == expected
    assert sum(r.cached for r in again) == stored


def test_pipeline_settings_are_part_of_the_key(recognizer, settings, many_photos, tmp_path):
    from facerec.pipeline import FaceRecognizer
    from facerec.tagcache import TagCache
    from facerec.tagging import find_photos, tag_photos

    _enrol(recognizer)
    paths = list(find_photos([many_photos]))[:5]
    with TagCache(tmp_path / "tags.sqlite") as cache:
        list(tag_photos(recognizer, paths, cache=cache))
        other = FaceRecognizer(settings.replace(min_face_size=30), detector=recognizer.detector,
                               embedder=recognizer.embedder)
        assert not any(r.cached for r in tag_photos(other, paths, cache=cache))
        assert all(r.cached for r in tag_photos(other, paths, cache=cache))


def test_cli_second_run_needs_no_model_and_no_cache_writes_nothing(tag_env, capsys, monkeypatch, recognizer):
    from facerec import cli
    from facerec.pipeline import FaceRecognizer

    d = tag_env / "photos"
    for i in range(5):
        _save(synthetic_photo([1 + i % 2], seed=i), d / f"{i}.png", "PNG")
    cache = tag_env / "c.sqlite"
    assert cli.main(["tag", str(d), "-q", "--no-cache"]) == 0
    assert not cache.exists() and not (tag_env / "cache" / "tags.sqlite").exists()
    first_out = capsys.readouterr().out
    assert cli.main(["tag", str(d), "-q", "--cache", str(cache)]) == 0
    assert capsys.readouterr().out == first_out

    class NoEmbedder:
        @property
        def key(self):
            raise AssertionError("the embedder was loaded for a fully cached run")

    monkeypatch.setattr(cli, "_recognizer", lambda args: FaceRecognizer(cli._settings(args), detector=_NoDetector(),
                                                                         embedder=NoEmbedder()))
    assert cli.main(["tag", str(d), "--cache", str(cache)]) == 0
    out, err = capsys.readouterr()
    assert out == first_out and "5 from cache, 0 processed" in err


def test_cli_cached_run_in_a_fresh_process_imports_neither_sklearn_nor_tensorflow(tag_env, capsys):
    import os
    import subprocess
    import sys

    from facerec import cli

    d = tag_env / "photos"
    for i in range(4):
        _save(synthetic_photo([1 + i % 2, 9], seed=i), d / f"{i}.png", "PNG")
    cache = tag_env / "c.sqlite"
    assert cli.main(["tag", str(d), "-q", "--cache", str(cache)]) == 0
    first_out = capsys.readouterr().out
    code = ("import sys; from facerec import cli; rc = cli.main(sys.argv[1:]); "
            "print('HEAVY', sorted(m for m in ('sklearn', 'tensorflow') if m in sys.modules), file=sys.stderr); "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "tag", str(d), "--cache", str(cache)], capture_output=True,
                          text=True, env=dict(os.environ), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == first_out and "4 from cache, 0 processed" in proc.stderr
    assert "HEAVY []" in proc.stderr


# -- engines -------------------------------------------------------------------------


@pytest.mark.slow
def test_worker_processes_give_the_same_results(recognizer, many_photos, tmp_path):
    from facerec.tagcache import TagCache
    from facerec.tagging import find_photos, tag_photos

    from conftest import tiny_worker

    _enrol(recognizer)
    paths = list(find_photos([many_photos]))
    expected = _table(tag_photos(recognizer, paths))
    factory = partial(tiny_worker, recognizer.settings)
    with TagCache(tmp_path / "tags.sqlite") as cache:
        pooled = list(tag_photos(recognizer, paths, cache=cache, workers=2, worker_factory=factory, batch_size=3))
        assert _table(pooled) == expected and not any(r.cached for r in pooled)
        again = tag_photos(recognizer, paths, cache=cache, worker_factory=factory)
        assert all(r.cached for r in again if not r.error)


# -- sidecars and unknown groups -----------------------------------------------------


def test_tag_writes_xmp_sidecars_and_leaves_photos_alone(tag_env, capsys):
    from facerec import cli

    d = tag_env / "photos"
    _save(synthetic_photo([1, 9], seed=3), d / "a.png", "PNG")
    _save(synthetic_photo([9], seed=4), d / "s" / "b.png", "PNG")
    before = _snapshot(d)
    assert cli.main(["tag", str(d), "-q", "--xmp"]) == 0
    text = (d / "a.png.xmp").read_text()
    assert "Ann" in text and "mwg-rs:Regions" in text and "unknown" not in text
    assert not (d / "s" / "b.png.xmp").exists()  # nobody named, no sidecar
    assert cli.main(["tag", str(d), "-q", "--xmp", "--xmp-style", "stem", "--xmp-unknown"]) == 0
    assert (d / "a.xmp").exists() and (d / "s" / "b.xmp").exists()
    after = _snapshot(d)
    assert {k: v for k, v in after.items() if not k.endswith(".xmp")} == before
    capsys.readouterr()


def test_cluster_unknown_then_enroll_cluster_names_them(tag_env, capsys):
    from facerec import cli

    d = tag_env / "photos"
    for i in range(3):
        _save(synthetic_photo([9, 1], seed=10 + i), d / f"cleo{i}.png", "PNG")
    for i in range(2):
        _save(synthetic_photo([7], seed=20 + i), d / f"dan{i}.png", "PNG")
    assert cli.main(["tag", str(d), "-q", "--cluster-unknown"]) == 0
    err = capsys.readouterr().err
    assert "5 unknown face(s) in 2 group(s): unknown_1 (3), unknown_2 (2)" in err
    sheets = tag_env / "g" / ".facerec" / "clusters"
    assert (sheets / "unknown_1.jpg").is_file() and (sheets / "unknown_2.jpg").is_file()
    assert cli.main(["enroll-cluster", "unknown_1", "--name", "Cleo", "-q"]) == 0
    assert "enrolled 3 photo(s) of unknown_1 as Cleo" in capsys.readouterr().err
    assert cli.main(["tag", str(d), "-q"]) == 0
    names = {}
    for r in _rows(capsys.readouterr().out):
        names.setdefault(Path(r[0]).name, set()).add(r[2])
    assert names["cleo0.png"] == {"Ann", "Cleo"} and names["dan1.png"] == {UNKNOWN}
    assert cli.main(["enroll-cluster", "unknown_9", "--name", "X", "-q"]) != 0


@pytest.mark.slow
def test_ray_engine_on_a_two_node_cluster_gives_the_same_results_and_reports(recognizer, many_photos, tmp_path):
    """The whole per-photo work (decode, detect, align, embed) runs on actors spread over two
    simulated nodes; the driver only matches, caches and reports."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from facerec.tagcache import TagCache
    from facerec.tagging import find_photos, tag_photos

    from conftest import tiny_worker

    _enrol(recognizer)
    paths = list(find_photos([many_photos]))
    expected = _table(tag_photos(recognizer, paths))
    here = Path(__file__).resolve().parent
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": f"{here}:{here.parent}"}})
    try:
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        with TagCache(tmp_path / "tags.sqlite") as cache:
            results = list(tag_photos(recognizer, paths, cache=cache, engine="ray", workers=2,
                                      worker_factory=partial(tiny_worker, recognizer.settings), batch_size=4))
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert _table(results) == expected
    assert json.loads(json_report(results))["summary"] == {"photos": 21, "tagged": 20, "failed": 1, "faces": 32}


def test_tag_reads_heic_when_pillow_heif_is_installed(tag_env, capsys):
    pytest.importorskip("pillow_heif")
    from facerec import cli

    d = tag_env / "photos"
    d.mkdir()
    photo = synthetic_photo([1, 2], seed=3)
    _save(photo, d / "phone.heic", "HEIF", quality=100)
    assert cli.main(["tag", str(d), "-q"]) == 0
    rows = sorted(_rows(capsys.readouterr().out), key=lambda r: int(r[4]))
    assert len(rows) == 2 and [int(v) for v in rows[0][4:8]] == pytest.approx([30, 20, 48, 48], abs=10)


def test_tag_on_an_empty_gallery_is_one_clear_error(tag_env, capsys):
    from facerec import cli

    d = tag_env / "photos"
    _save(synthetic_photo([1], seed=3), d / "a.png", "PNG")
    assert cli.main(["tag", str(d), "-q", "--gallery", str(tag_env / "nobody")]) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nobody is enrolled" in err[0]


def test_pipeline_key_uses_the_backbones_flip_default():
    from facerec.settings import Settings
    from facerec.tagging import pipeline_key

    def key(**kw):
        return pipeline_key(Settings(**kw), "e", "mtcnn")

    assert key(backbone="resnet50") == key(backbone="resnet50", flip=True) != key(backbone="resnet50", flip=False)
    assert key() == key(flip=False) != key(flip=True)


# -- the verdict in every output (issue 24, item 7) ---------------------------------------


def test_reports_carry_the_verdict_and_a_guess_is_not_a_plain_name(tmp_path):
    """A stranger's half face just above the threshold ("Elton John?", 0.42 against 0.40) was
    exported as plain "Elton John": the CSV and JSON reports now say "possible match"."""
    from facerec.types import Face, Match

    faces = [(Face((10, 10, 40, 40), 0.99), Match("Elton John", 0.42)),
             (Face((60, 10, 40, 40), 0.99), Match("Ann", 0.95)),
             (Face((110, 10, 40, 40), 0.99), Match(UNKNOWN, 0.2))]
    res = PhotoResult(tmp_path / "party.jpg", faces, size=(200, 80), threshold=0.40)
    rows = list(csv.DictReader(io.StringIO(csv_report([res]))))
    assert [(r["name"], r["verdict"]) for r in rows] == [
        ("Elton John", "possible match"), ("Ann", "match"), (UNKNOWN, "unknown")]
    doc = json.loads(json_report([res]))
    assert [f["verdict"] for f in doc["photos"][0]["faces"]] == ["possible match", "match", "unknown"]
    assert [m.name for _, m in res.sure_faces()] == [UNKNOWN, "Ann", UNKNOWN]
    assert [m.name for _, m in res.sure_faces(include_possible=True)] == ["Elton John", "Ann", UNKNOWN]


def test_xmp_names_only_sure_matches_unless_asked(tag_env, capsys):
    """`tag --xmp` wrote a possible match (just above the threshold) as the person's name; now
    the sidecar names only sure matches, and --xmp-possible includes the guesses."""
    from facerec import cli

    d = tag_env / "photos"
    _save(synthetic_photo([1], seed=3), d / "a.png", "PNG")
    assert cli.main(["tag", str(d), "-q"]) == 0
    (row,) = _rows(capsys.readouterr().out)
    assert row[2] == "Ann" and row[8] == "match"
    score = float(row[3])
    just_below = f"{score - 0.002:.4f}"  # Ann's score is then just above the threshold: a possible match
    before = (d / "a.png").read_bytes()
    assert cli.main(["tag", str(d), "-q", "--xmp", "--threshold", just_below, "--xmp-unknown"]) == 0
    (row,) = _rows(capsys.readouterr().out)
    assert (row[2], row[8]) == ("Ann", "possible match")
    text = (d / "a.png.xmp").read_text()
    assert "mwg-rs:Regions" in text and "Ann" not in text  # an unnamed face region, no name, no keyword
    assert cli.main(["tag", str(d), "-q", "--xmp", "--threshold", just_below, "--xmp-possible"]) == 0
    assert "Ann" in (d / "a.png.xmp").read_text()
    assert (d / "a.png").read_bytes() == before
    capsys.readouterr()


def test_tag_starts_worker_processes_by_itself_only_for_a_big_folder(monkeypatch):
    """Measured (benchmarks/README.md): 2 workers 10-15% faster from 300 photos on, slower at 92."""
    from facerec import cli

    monkeypatch.setattr(cli.os, "cpu_count", lambda: 2)
    assert cli.auto_workers(92) == 0 and cli.auto_workers(199) == 0
    assert cli.auto_workers(200) == 2 and cli.auto_workers(10_000) == 2
    assert cli.auto_workers(10_000, engine="ray") == 0  # Ray: one actor per CPU of the cluster
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 1)
    assert cli.auto_workers(10_000) == 0
