import threading

import numpy as np
import pytest

from facerec.errors import InvalidNameError, PersonExistsError, PersonNotFoundError
from facerec.gallery import Gallery, validate_name

from conftest import people_service

from conftest import png_bytes, synthetic_photo, tree_snapshot


@pytest.mark.parametrize("name", ["Zoë Martin", "Jean-Luc O'Neil", "李小龍", "a b c"])
def test_display_names_are_fine(name):
    assert validate_name(f"  {name} ") == name


@pytest.mark.parametrize("name", ["", "   ", "../etc", "a/b", "a\\b", "..", ".hidden", "x" * 65, "unknown",
                                  "Unknown", "tab\there"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(InvalidNameError):
        validate_name(name)


def _add(g: Gallery, name: str, seed: int, model: str = "m1") -> None:
    data = png_bytes(synthetic_photo([seed], seed=seed))
    g.add_photo(name, data, (1, 2, 30, 30), np.full(4, seed, np.float32), model, ".png")


def test_add_list_vectors_and_duplicates(tmp_path):
    g = Gallery(tmp_path / "g")
    v0 = g.version
    _add(g, "Ann", 1)
    _add(g, "Ann", 2)
    _add(g, "Ann", 2)  # same photo again: no new entry
    _add(g, "Bob", 3)
    assert [(p.name, p.photos) for p in g.people()] == [("Ann", 2), ("Bob", 1)]
    assert len(list((tmp_path / "g" / "Ann").iterdir())) == 2
    X, names, missing = g.vectors("m1")
    assert X.shape == (3, 4) and sorted(names) == ["Ann", "Ann", "Bob"] and not missing
    _, _, missing2 = g.vectors("other-model")
    assert len(missing2) == 3  # switching the base re-embeds rather than mixing vectors
    assert g.version > v0


def test_remove_and_rename(tmp_path):
    g = Gallery(tmp_path / "g")
    _add(g, "Ann", 1)
    _add(g, "Bob", 2)
    g.rename_person("Ann", "Anne Marie")
    assert [p.name for p in g.people()] == ["Anne Marie", "Bob"]
    with pytest.raises(PersonExistsError):
        g.rename_person("Bob", "Anne Marie")
    people = people_service(g.root)
    assert people.forget("Anne Marie").photos == 1
    assert not (tmp_path / "g" / "Anne Marie").exists()
    X, names, _ = g.vectors("m1")
    assert names == ["Bob"]
    with pytest.raises(PersonNotFoundError):
        people.forget("Ann")


def test_bad_name_leaves_gallery_untouched(tmp_path):
    g = Gallery(tmp_path / "g")
    _add(g, "Ann", 1)
    before = tree_snapshot(g.root)
    for bad in ["../evil", "..", "a/b"]:
        with pytest.raises(InvalidNameError):
            _add(g, bad, 5)
        with pytest.raises(InvalidNameError):
            g.rename_person("Ann", bad)
    assert tree_snapshot(g.root) == before
    assert not (tmp_path / "evil").exists()


def test_concurrent_writers_lose_nothing(tmp_path):
    root = tmp_path / "g"
    Gallery(root)

    def writer(tag: int) -> None:
        g = Gallery(root)  # its own connection, as a second app tab or the CLI would have
        for i in range(15):
            _add(g, f"P{tag}", 100 * tag + i)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {p.name: p.photos for p in Gallery(root).people()} == {f"P{t}": 15 for t in range(4)}


def test_sync_picks_up_photos_dropped_by_hand(tmp_path):
    g = Gallery(tmp_path / "g")
    (g.root / "Cleo").mkdir()
    (g.root / "Cleo" / "holiday.png").write_bytes(png_bytes(synthetic_photo([4])))
    added, dropped = g.sync()
    assert [r.person for r in added] == ["Cleo"] and not dropped
    (g.root / "Cleo" / "holiday.png").unlink()
    added, dropped = g.sync()
    assert not added and [r.path.name for r in dropped] == ["holiday.png"]
