"""Batch tagging: reports, the `tag` command, bad input, the cache, the engines."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from facerec.tagging import PhotoResult, csv_report, identify_files, json_report
from facerec.types import UNKNOWN

from conftest import png_bytes, synthetic_photo


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
    assert rows[0] == ["path", "face", "name", "score", "x", "y", "w", "h"]
    body = rows[1:]
    assert len(body) == 4  # 3 faces in a.png, 1 in b.png; none and the empty file have no rows
    a = sorted((r for r in body if r[0].endswith("a.png")), key=lambda r: int(r[4]))
    assert [r[2] for r in a] == ["Bob", UNKNOWN, "Ann"]
    assert sorted(r[1] for r in a) == ["1", "2", "3"]
    assert a[0][4:] == ["30", "20", "48", "48"]  # box in photo pixels
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


def test_reports_of_nothing_are_valid():
    assert csv_report([]) == "path,face,name,score,x,y,w,h\n"
    assert json.loads(json_report([PhotoResult(Path("x.jpg"), error="x.jpg: file is empty")]))["failed"] == [
        {"path": "x.jpg", "error": "x.jpg: file is empty"}]
