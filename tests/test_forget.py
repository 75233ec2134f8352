"""Forgetting forgets: after `people remove`, nothing of the person is left in any file
under the gallery or the cache folder (issue 12, item 2)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from facerec.errors import ForgetIncompleteError
from facerec.gallery import Gallery

from conftest import people_service, png_bytes, synthetic_photo

NAME = "Zoë Quimby"


def _all_files(*roots: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for root in roots for p in sorted(Path(root).rglob("*")) if p.is_file()}


def _where(needle: bytes, files: dict[Path, bytes]) -> list[str]:
    return [str(p) for p, data in files.items() if needle in data]


def _index_vectors(gallery: Gallery, shas: set[str]) -> list[bytes]:
    con = sqlite3.connect(gallery.db_path)
    rows = con.execute("SELECT sha, vector FROM vectors").fetchall()
    con.close()
    return [blob for sha, blob in rows if sha in shas]


def test_forgetting_a_person_leaves_nothing_of_them(recognizer, settings, tmp_path, monkeypatch):
    """Enrol (from a cluster of unknown faces), tag, forget through the CLI; then the name,
    every photo's bytes and every vector of theirs are in no file under gallery or cache."""
    from facerec import cli
    from facerec.cluster import (
        collect_unknown, default_clusters_file, enroll_cluster, group_unknown, load_clusters, save_clusters,
    )
    from facerec.tagcache import TagCache
    from facerec.tagging import tag_photos

    rec = recognizer
    rec.enroll("Bob", png_bytes(synthetic_photo([2], seed=0)), source="bob.png")
    folder = tmp_path / "photos"
    folder.mkdir()
    who = {"a": [1], "b": [1], "c": [1], "d": [1, 2], "e": [2], "f": [7], "g": [1]}  # 1 = the person to forget
    for i, (stem, people) in enumerate(who.items()):
        (folder / f"{stem}.png").write_bytes(png_bytes(synthetic_photo(people, seed=10 + i)))
    paths = sorted(folder.iterdir())
    cache_path = settings.cache_dir / "tags.sqlite"

    # 1. tag while they are a stranger, group the strangers, enrol their group by name
    with TagCache(cache_path) as cache:
        first = list(tag_photos(rec, paths, cache=cache))
        cache.set_model("cli-signature", rec.embedder.key, rec.threshold)  # as `facerec tag` remembers it
    members, X = collect_unknown(first)
    groups = group_unknown(members, X, rec.threshold)
    clusters = save_clusters(groups, default_clusters_file(settings.gallery), rec.threshold, rec.embedder.key)
    label = next(g.label for g in groups if any(m.photo.name == "a.png" for m in g.members))
    # g.png: their face, tagged while they were a stranger, then the photo moved away: never
    # enrolled nor named, but its vector is in the tag cache
    g_vector = next(f.vector for r in first if r.path.name == "g.png" for f, _ in r.faces)
    (folder / "g.png").unlink()
    paths.remove(folder / "g.png")
    done = enroll_cluster(rec, label, NAME)
    assert len(done.enrolled) == 4
    # 2. tag again: now their faces are named
    with TagCache(cache_path) as cache:
        second = list(tag_photos(rec, paths, cache=cache))
    named = [f for r in second for f, m in r.faces if m.name == NAME]
    assert len(named) == 4

    photos = rec.gallery.photos(NAME)
    shas = {p.sha for p in photos}
    needles = {"name": [NAME.encode("utf-8")]}
    needles["photo bytes"] = [p.path.read_bytes()[len(p.path.read_bytes()) // 2:][:64] for p in photos]
    group_vectors = load_clusters(clusters).group(label).vectors
    needles["vectors"] = (_index_vectors(rec.gallery, shas)
                          + [np.asarray(f.vector, np.float32).tobytes() for f in named]
                          + [v.astype(np.float32).tobytes() for v in group_vectors]
                          + [np.asarray(g_vector, np.float32).tobytes()])
    before = _all_files(settings.gallery, settings.cache_dir)
    for kind, items in needles.items():  # the search finds them before the forget: it is not vacuous
        assert all(_where(n, before) for n in items), kind
    assert _where(needles["vectors"][-1], {p: d for p, d in before.items() if p.suffix == ".npy"})

    # 3. forget, as `facerec people remove NAME` does
    monkeypatch.setenv("FACEREC_GALLERY", str(settings.gallery))
    monkeypatch.setenv("FACEREC_CACHE_DIR", str(settings.cache_dir))
    assert cli.main(["people", "remove", NAME]) == 0

    after = _all_files(settings.gallery, settings.cache_dir)
    for kind, items in needles.items():
        for n in items:
            assert not _where(n, after), f"{kind} of {NAME} still in {_where(n, after)}"
    assert not list((settings.gallery / ".facerec").glob("trash-*"))
    # everyone else is intact, and photos that named them are matched again next time
    assert [p.name for p in Gallery(settings.gallery).people()] == ["Bob"]
    with TagCache(cache_path) as cache:
        third = {r.path.name: r for r in tag_photos(rec, paths, cache=cache)}
    assert not third["a.png"].cached and third["e.png"].cached
    assert [m.name for _, m in third["e.png"].faces] == ["Bob"]
    assert all(m.name != NAME for r in third.values() for _, m in r.faces)


def test_removing_a_photo_removes_its_vector_unless_shared(tmp_path):
    g = Gallery(tmp_path / "g")
    data = png_bytes(synthetic_photo([3], seed=3))
    vec = np.arange(8, dtype=np.float32) + 0.5
    a = g.add_photo("Ann", data, (1, 2, 30, 30), vec, "m", ".png")
    g.add_photo("Ann2", data, (1, 2, 30, 30), vec, "m", ".png")  # the same photo for someone else
    g.remove_photo("Ann", a.path.name)
    assert len(g.vectors("m")[0]) == 1  # still used by Ann2's row
    g.remove_photo("Ann2", a.path.name)
    assert len(g.vectors("m")[0]) == 0
    files = _all_files(g.root)
    assert not _where(vec.tobytes(), files) and not _where(data[len(data) // 2:][:64], files)


def test_trash_that_cannot_be_deleted_is_reported(tmp_path, monkeypatch):
    import facerec.storage as gallery_mod  # shred lives in the storage floor

    g = Gallery(tmp_path / "g")
    g.add_photo("Ann", png_bytes(synthetic_photo([3], seed=3)), (1, 2, 30, 30), np.ones(8, np.float32), "m", ".png")
    real = gallery_mod.shred

    def stuck(path):
        if Path(path).suffix == ".png":
            raise PermissionError(13, "Permission denied", str(path))
        real(path)

    monkeypatch.setattr(gallery_mod, "shred", stuck)
    people = people_service(g.root, tmp_path / "cache")
    with pytest.raises(ForgetIncompleteError, match="Permission denied"):
        people.forget("Ann")
    assert g.people() == [] and len(g.vectors("m")[0]) == 0  # no longer enrolled all the same
    assert people.unfinished() == ["Ann"]
    monkeypatch.setattr(gallery_mod, "shred", real)
    assert people.forget("Ann").problems == ()  # forgetting again finishes the job
    assert people.unfinished() == [] and not list((g.root / ".facerec").glob("trash-*"))


def test_an_index_written_before_secure_delete_is_cleaned_at_the_next_forget(tmp_path):
    g = Gallery(tmp_path / "g")
    g.add_photo("Ann", png_bytes(synthetic_photo([3], seed=3)), (1, 2, 30, 30), np.ones(8, np.float32), "m", ".png")
    con = sqlite3.connect(g.db_path)  # as the old code did: no secure_delete, a row deleted long ago
    con.execute("PRAGMA secure_delete=OFF")
    con.execute("DELETE FROM meta WHERE key='secure'")
    con.execute("INSERT INTO photos VALUES ('Olga Oldrow', 'x.png', 'ab', NULL, 0)")
    con.commit()
    con.execute("DELETE FROM photos WHERE person='Olga Oldrow'")
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    assert _where(b"Olga Oldrow", _all_files(g.root))  # left in the file's free space
    people_service(g.root, tmp_path / "cache").forget("Ann")
    assert not _where(b"Olga Oldrow", _all_files(g.root))
