"""The person lifecycle (facerec.people): forgetting that always completes, look-alike names,
rename / merge / move, and the CLI making the app's enrolment checks (issues 20 and 25)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facerec import cli, history, photonames
from facerec.errors import (
    ConfirmationNeededError, ForgetIncompleteError, InvalidNameError, PersonExistsError, PersonNotFoundError,
)
from facerec.people import People
from facerec.storage import tag_cache_path
from facerec.tagcache import TagCache
from facerec.types import Face, Match

from conftest import png_bytes, synthetic_photo

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def people(recognizer) -> People:
    return People(recognizer)


def _enrol(people: People, name: str, person: int, seeds=(0, 1, 2)) -> None:
    for s in seeds:
        people.enroll(name, png_bytes(synthetic_photo([person], seed=s)), source=f"{name}-{s}.png", confirm=True)


def _traces(people: People, name: str, shas: set[str]) -> dict[str, object]:
    """Everything of ``name`` left in any store (empty values: nothing)."""
    g = people.gallery
    with sqlite3.connect(g.db_path) as con:
        rows = con.execute("SELECT COUNT(*) FROM photos WHERE person=?", (name,)).fetchone()[0]
    cache = tag_cache_path(people.settings.cache_dir)
    tag_rows = 0
    if cache.is_file():
        with sqlite3.connect(cache) as con:
            tag_rows = sum(name in text for (text,) in con.execute("SELECT matches FROM matches"))
            tag_rows += con.execute(f"SELECT COUNT(*) FROM photos WHERE sha IN ({','.join('?' * len(shas))})",
                                    tuple(shas)).fetchone()[0]
    return {
        "rows": rows,
        "folder": (g.root / name).exists(),
        "trash": [p.name for p in g.files.state.glob("trash-*")],
        "file names": [s for s in photonames.names(g.root) if s in shas],
        "history": history.History(g.root).appearances(names=[name]),
        "tag cache": tag_rows,
        "listed": name in [p.name for p in g.people()],
    }


def _seed_stores(people: People, name: str) -> set[str]:
    """Give ``name`` something in every store: tag cache matches and faces, history."""
    shas = {r.sha for r in people.photos(name)}
    with TagCache(tag_cache_path(people.settings.cache_dir)) as cache:
        for i, sha in enumerate(sorted(shas)):
            face = Face(box=(0, 0, 10, 10), score=0.9, vector=np.ones(8, np.float32) / np.sqrt(8))
            cache.put(sha, "p", (10, 10), [face])
            cache.put_matches(sha, "p", "g", [Match(name, 0.9)])
    history.History(people.gallery.root).record(name, time.time())
    return shas


def _nothing_left(traces: dict) -> bool:
    return not any(traces.values())


def test_a_forget_that_fails_on_the_tag_cache_is_finished_by_forgetting_again(people, monkeypatch):
    _enrol(people, "Ann", 1)
    _enrol(people, "Bob", 2)
    shas = _seed_stores(people, "Ann")
    assert _traces(people, "Ann", shas)["tag cache"]  # the check is not vacuous

    def unwritable(self, *a, **k):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(TagCache, "forget", unwritable)
    with pytest.raises(ForgetIncompleteError, match="tag cache") as err:
        people.forget("Ann")
    assert "forget Ann again" in str(err.value)
    left = _traces(people, "Ann", shas)
    assert left["tag cache"] and not left["rows"] and not left["folder"] and not left["history"]
    assert not left["file names"] and not left["listed"]  # everything else is gone at once
    assert people.unfinished() == ["Ann"]
    monkeypatch.undo()
    report = people.forget("Ann")  # never "not found" while something of them is left
    assert report.problems == () and report.tag_matches == 3
    assert _nothing_left(_traces(people, "Ann", shas)) and people.unfinished() == []
    assert [p.name for p in people.list()] == ["Bob"] and len(people.photos("Bob")) == 3
    with pytest.raises(PersonNotFoundError):
        people.forget("Ann")


def test_a_tag_cache_that_is_a_folder_is_reported_not_passed_over(people):
    """It used to report success (exit 0) and leave the rows."""
    _enrol(people, "Ann", 1)
    cache = tag_cache_path(people.settings.cache_dir)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.mkdir()
    with pytest.raises(ForgetIncompleteError, match=str(cache.name)):
        people.forget("Ann")
    assert people.unfinished() == ["Ann"]
    cache.rmdir()
    assert people.forget("Ann").problems == ()
    assert people.unfinished() == []


def test_a_failed_forget_through_the_cli_is_listed_and_finished(people, settings, monkeypatch, capsys):
    _enrol(people, "Ann", 1)
    shas = _seed_stores(people, "Ann")
    cache = tag_cache_path(settings.cache_dir)
    moved = cache.with_name("kept-aside.sqlite")
    cache.rename(moved)
    cache.mkdir()  # the tag cache cannot be opened
    monkeypatch.setenv("FACEREC_GALLERY", str(settings.gallery))
    monkeypatch.setenv("FACEREC_CACHE_DIR", str(settings.cache_dir))
    assert cli.main(["people", "remove", "Ann"]) == ForgetIncompleteError.exit_code
    err = capsys.readouterr().err
    assert "tags.sqlite" in err and "again" in err and err.count("\n") == 1
    assert cli.main(["people", "list"]) == 0
    out, err = capsys.readouterr()
    assert "Ann" not in out and "Ann is half forgotten" in err
    cache.rmdir()
    moved.rename(cache)
    assert cli.main(["people", "remove", "Ann"]) == 0
    assert _nothing_left(_traces(people, "Ann", shas))


KILL_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from conftest import people_service
people = people_service({gallery!r}, {cache!r})
people.gallery.people()
print("ready", flush=True)
sys.stdin.readline()
t = time.perf_counter()
people.forget("Ann")
print("took", time.perf_counter() - t, flush=True)
"""


def _forget_in_child(tmp_path: Path, people: People, delay: float | None) -> float | None:
    script = tmp_path / "forget.py"
    script.write_text(KILL_SCRIPT.format(tests=str(REPO / "tests"), gallery=str(people.gallery.root),
                                         cache=str(people.settings.cache_dir)))
    p = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    p.stdin.write("go\n")
    p.stdin.flush()
    if delay is None:
        out = p.communicate(timeout=60)[0]
        return float(out.split()[-1])
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    return None


def test_a_forget_killed_at_any_moment_is_finished_by_forgetting_again(tmp_path, recognizer):
    """SIGKILL at moments swept over a forget's run; then the other people are intact and
    forgetting again leaves nothing of the person in any store."""
    people = People(recognizer)
    _enrol(people, "Bob", 2)
    bob = {r.path.name for r in people.photos("Bob")}
    took = None
    outcomes = []
    for i, fraction in enumerate([None, 0.0, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0, 1.5]):
        for s in range(3):
            people.enroll("Ann", png_bytes(synthetic_photo([1], seed=10 * i + s)), source=f"a{i}{s}.png",
                          confirm=True)
        shas = _seed_stores(people, "Ann")
        if fraction is None:
            took = _forget_in_child(tmp_path, people, None)  # the whole run, to sweep over
            assert _nothing_left(_traces(people, "Ann", shas))
            continue
        _forget_in_child(tmp_path, people, fraction * took)
        half = bool(people.unfinished())
        outcomes.append(half)
        people.gallery.sync()  # as an identify in between would
        listed = "Ann" in [p.name for p in people.list()]
        assert not (half and listed)  # a half-forgotten person is never listed as enrolled
        if half or listed:
            people.forget("Ann")
        else:  # the forget had finished: "not found" is the truth
            with pytest.raises(PersonNotFoundError):
                people.forget("Ann")
        left = _traces(people, "Ann", shas)
        assert _nothing_left(left), (fraction, left)
        assert {r.path.name for r in people.photos("Bob")} == bob
    assert any(outcomes)  # some kills did land mid-forget


def test_look_alike_names_are_caught(people):
    _enrol(people, "Madonna", 1, seeds=(0,))
    for typed in ("Mаdonna", "madonna", "MADONNA", "Madonna ", " Madonna"):
        with pytest.raises(ConfirmationNeededError, match="Madonna"):
            people.enroll(typed, png_bytes(synthetic_photo([1], seed=5)), source="m.png")
    assert [p.name for p in people.list()] == ["Madonna"]
    people.enroll("Mаdonna", png_bytes(synthetic_photo([1], seed=5)), source="m.png", confirm=True)
    assert [(p.name, p.photos) for p in people.list()] == [("Madonna", 2)]  # added to her when asked
    _enrol(people, "Bob", 2, seeds=(0,))
    with pytest.raises(PersonExistsError, match="merge"):
        people.rename("Bob", "MАDONNA")  # Cyrillic А
    for bad in ("Jerry|Seinfeld", "AC/DC"):
        with pytest.raises(InvalidNameError, match="keywords"):
            people.enroll(bad, png_bytes(synthetic_photo([3], seed=0)), source="j.png")


def test_look_alike_names_on_the_cli(recognizer, settings, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_recognizer", lambda args: recognizer)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(png_bytes(synthetic_photo([1], seed=0)))
    b.write_bytes(png_bytes(synthetic_photo([1], seed=1)))
    assert cli.main(["enroll", "--name", "Madonna", str(a)]) == 0
    assert cli.main(["enroll", "--name", "mаdonna", str(b)]) == ConfirmationNeededError.exit_code
    assert "--yes" in capsys.readouterr().err
    assert [p.name for p in recognizer.gallery.people()] == ["Madonna"]
    assert cli.main(["enroll", "--yes", "--name", "mаdonna", str(b)]) == 0
    assert [(p.name, p.photos) for p in recognizer.gallery.people()] == [("Madonna", 2)]


def test_the_cli_catches_the_mistakes_the_app_catches(recognizer, tmp_path, monkeypatch, capsys):
    """A face like another enrolled person's, and a photo enrolled for someone else, wait for --yes."""
    monkeypatch.setattr(cli, "_recognizer", lambda args: recognizer)
    bob = tmp_path / "bob.png"
    bob.write_bytes(png_bytes(synthetic_photo([2], seed=0)))
    assert cli.main(["enroll", "--name", "Bob", str(bob)]) == 0
    looks_like_bob = tmp_path / "x.png"
    looks_like_bob.write_bytes(png_bytes(synthetic_photo([2], seed=7)))
    assert cli.main(["enroll", "--name", "Ann", str(looks_like_bob), str(bob)]) == ConfirmationNeededError.exit_code
    err = capsys.readouterr().err
    assert "looks like Bob" in err and "already enrolled for Bob" in err
    assert [p.name for p in recognizer.gallery.people()] == ["Bob"]
    assert cli.main(["enroll", "--yes", "--name", "Ann", str(looks_like_bob)]) == 0
    assert [p.name for p in recognizer.gallery.people()] == ["Ann", "Bob"]


def test_rename_onto_an_enrolled_name_offers_a_merge_and_merge_joins_a_split_person(people):
    _enrol(people, "Ann", 1, seeds=(0, 1))
    _enrol(people, "Anne", 1, seeds=(1, 2))  # the same person split in two, one photo in both
    with pytest.raises(PersonExistsError, match="merge"):
        people.rename("Anne", "Ann")
    assert people.rename("Anne", "Ann", merge=True) == "Ann"
    assert [(p.name, p.photos) for p in people.list()] == [("Ann", 3)]  # the shared photo kept once
    X, names, missing = people.gallery.vectors(people.rec.embedder.key)
    assert names == ["Ann"] * 3 and not missing
    assert not (people.gallery.root / "Anne").exists()


def test_a_photo_on_the_wrong_person_moves_with_its_face(people):
    _enrol(people, "Ann", 1, seeds=(0,))
    people.enroll("Ann", png_bytes(synthetic_photo([2], seed=0)), source="bob.png", confirm=True)
    wrong = people.photos("Ann")[-1]
    people.move_photo("Ann", wrong.path.name, "Bob")
    assert [(p.name, p.photos) for p in people.list()] == [("Ann", 1), ("Bob", 1)]
    moved = people.photos("Bob")[0]
    assert moved.sha == wrong.sha and moved.box == wrong.box and moved.path.is_file()
    assert people.rec.identify(synthetic_photo([2], seed=3))[0][1].name == "Bob"


def test_a_name_being_forgotten_is_refused_until_the_forget_finishes(people, monkeypatch):
    _enrol(people, "Ann", 1, seeds=(0,))
    def broken(gallery, name):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(history, "forget", broken)
    with pytest.raises(ForgetIncompleteError, match="history"):
        people.forget("Ann")
    with pytest.raises(Exception, match="being forgotten"):
        people.enroll("Ann", png_bytes(synthetic_photo([1], seed=1)), source="a.png", confirm=True)
    assert not (people.gallery.root / "Ann").exists()  # no empty person left by the refusal
    monkeypatch.undo()
    people.forget("Ann")
    people.enroll("Ann", png_bytes(synthetic_photo([1], seed=1)), source="a.png", confirm=True)
    assert [(p.name, p.photos) for p in people.list()] == [("Ann", 1)]


def test_a_photo_of_someone_else_among_a_persons_photos_is_flagged(people, monkeypatch, capsys):
    _enrol(people, "Ann", 1)
    assert people.outliers("Ann") == {}
    wrong = people.enroll("Ann", png_bytes(synthetic_photo([9], seed=5)), source="party.png", confirm=True)
    odd = people.outliers("Ann")
    assert list(odd) == [wrong.record.path.name] and odd[wrong.record.path.name] < people.rec.threshold
    monkeypatch.setattr(cli, "_recognizer", lambda args: people.rec)
    assert cli.main(["people", "photos", "Ann"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 4  # stdout stays a plain list of files
    assert err.startswith(f"facerec: {wrong.record.path.name} does not look like Ann's other photos")
    people.move_photo("Ann", wrong.record.path.name, "Cleo", confirm=True)
    assert people.outliers("Ann") == {} and people.outliers("Cleo") == {}  # one photo: nothing to compare
