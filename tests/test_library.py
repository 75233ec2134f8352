"""The photo library (issue 24): folders scanned, unknown faces grouped and named once, photos by
people, "Is this Ann?" suggestions, and answers that stick across rescans, another detector and a
new threshold. Fake detector and tiny embedder: no model is downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BlobDetector, png_bytes, synthetic_photo

from facerec.errors import ConfirmationNeededError, FaceRecError
from facerec.library import CONFIRMED, Library
from facerec.librarystore import LibraryStore
from facerec.people import People
from facerec.pipeline import FaceRecognizer
from facerec.tagcache import TagCache


def _photo(d: Path, name: str, people: list[int], seed: int) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(png_bytes(synthetic_photo(people, seed=seed)))
    return d / name


@pytest.fixture
def lib(recognizer, tmp_path):
    """Ann (pattern 1) enrolled; a folder with Cleo (pattern 9) in 4 photos, one with Ann, and Dan (7) in 2."""
    for seed in range(2):
        recognizer.enroll("Ann", png_bytes(synthetic_photo([1], seed=seed)), source=f"ann{seed}.png")
    d = tmp_path / "photos"
    for i in range(3):
        _photo(d, f"cleo{i}.png", [9], 10 + i)
    _photo(d, "ann_and_cleo.png", [1, 9], 13)
    for i in range(2):
        _photo(d / "sub", f"dan{i}.png", [7], 20 + i)
    library = Library(recognizer)
    cache = TagCache(tmp_path / "cache" / "tags.sqlite")
    yield library, d, cache, tmp_path
    cache.close()
    library.close()


def _names(library: Library) -> dict[str, list[str]]:
    return {p.name: [f.name for f in library.photo_faces(p)] for p in sorted({f.path for f in library.faces()})}


def test_add_folder_only_within_the_photo_roots(lib, tmp_path):
    library, d, _, _ = lib
    with pytest.raises(FaceRecError):
        library.add_folder("/etc", [tmp_path])
    assert library.add_folder(d, [tmp_path]) == d.resolve()
    assert library.folders() == [d.resolve()]


def test_scan_groups_unknown_faces_biggest_first_and_naming_a_group_tags_every_photo(lib, tmp_path):
    library, d, cache, _ = lib
    library.add_folder(d, [tmp_path])
    report = library.scan(cache)
    assert (report.photos, report.processed, report.failed) == (6, 6, ())
    groups = library.groups()
    assert [len(g) for g in groups] == [4, 2]
    assert {f.path.name for f in groups[0].faces} == {"cleo0.png", "cleo1.png", "cleo2.png", "ann_and_cleo.png"}
    assert library.groups(min_size=3) == [groups[0]]
    with pytest.raises(ConfirmationNeededError):  # a look-alike of an enrolled name asks first
        library.name_group(groups[0].faces, "ANN")
    result = library.name_group(groups[0].faces, "Cleo")
    assert len(result.enrolled) == 4
    assert [p.name for p in People(library.rec).list()] == ["Ann", "Cleo"]
    names = _names(library)
    assert names["ann_and_cleo.png"] == ["Ann", "Cleo"]  # numbered left to right
    assert names["dan0.png"] == ["unknown"]
    assert library.people_counts() == {"Cleo": 4, "Ann": 1}
    assert [p.name for p in library.photos_with(["Cleo"])] == ["ann_and_cleo.png", "cleo0.png", "cleo1.png",
                                                               "cleo2.png"]
    assert [p.name for p in library.photos_with(["Cleo"], alone=True)] == ["cleo0.png", "cleo1.png", "cleo2.png"]
    assert [p.name for p in library.photos_with(["Ann", "Cleo"])] == ["ann_and_cleo.png"]
    assert [len(g) for g in library.groups()] == [2]  # Dan's faces are left to name


def test_merge_a_group_into_an_enrolled_person(lib, tmp_path):
    library, d, cache, _ = lib
    library.add_folder(d, [tmp_path])
    library.scan(cache)
    dan = library.groups()[1]
    library.name_group(dan.faces, "Ann", confirm=True)  # "add to Ann" (a wrong merge, but asked for)
    assert _names(library)["dan0.png"] == ["Ann"]
    assert {r.path.suffix for r in People(library.rec).photos("Ann")} == {".png"}


def test_rejections_and_names_stick_across_rescans_another_detector_and_a_new_threshold(
        lib, recognizer, settings, tiny_embedder, tmp_path):
    library, d, cache, _ = lib
    library.add_folder(d, [tmp_path])
    library.scan(cache)
    library.name_group(library.groups()[0].faces, "Cleo")
    wrong = next(f for f in library.faces() if f.path.name == "cleo2.png")
    enrolled_before = len(People(library.rec).photos("Cleo"))
    library.reject(wrong, "Cleo")
    assert _names(library)["cleo2.png"] == ["unknown"]
    assert len(People(library.rec).photos("Cleo")) == enrolled_before - 1  # out of their enrolment too
    assert all(s.face.path.name != "cleo2.png" for s in library.suggestions("Cleo"))

    # a rescan: unchanged photos are skipped, the name and the rejection are kept
    report = library.scan(cache)
    assert report.unchanged == 6 and report.processed == 0
    names = _names(library)
    assert names["cleo0.png"] == ["Cleo"] and names["cleo2.png"] == ["unknown"]

    class Shifted(BlobDetector):  # another detector: every box 2 px larger on each side
        name = "shifted"

        def detect(self, image):
            return [f.replace(box=(f.box[0] - 2, f.box[1] - 2, f.box[2] + 4, f.box[3] + 4))
                    for f in super().detect(image)]

    other = FaceRecognizer(settings.replace(detector="opencv", threshold=0.99), detector=Shifted(), embedder=tiny_embedder)
    again = Library(other, LibraryStore(settings.gallery))
    try:
        report = again.scan(TagCache(tmp_path / "cache2.sqlite"))
        assert report.processed == 6  # new detector settings: every photo tagged again
        faces = {f.path.name: f for f in again.faces() if f.path.name.startswith("cleo")}
        assert faces["cleo0.png"].name == "Cleo" and faces["cleo0.png"].kind == CONFIRMED  # kept at 0.99
        assert faces["cleo2.png"].name == "unknown" and "Cleo" in faces["cleo2.png"].rejected
    finally:
        again.close()


def test_suggestions_confirm_and_reject(lib, recognizer, settings, tiny_embedder, tmp_path):
    """Faces just under the threshold for Ann are offered as "Is this Ann?"; a confirmed one is
    named (and enrolled), a rejected one is never offered again."""
    library, d, cache, _ = lib
    _photo(d, "ann2.png", [1], 30)
    _photo(d, "ann3.png", [1], 31)
    library.add_folder(d, [tmp_path])
    library.scan(cache)
    scores = {f.path.name: f.score for f in library.faces() if f.path.name.startswith("ann")}
    # a threshold just above both Ann photos' scores: neither is a match, both are close
    strict = FaceRecognizer(settings.replace(threshold=min(1.0, max(scores["ann2.png"], scores["ann3.png"]) + 0.001)),
                            detector=recognizer.detector, embedder=tiny_embedder)
    strict_lib = Library(strict, LibraryStore(settings.gallery))
    try:
        strict_lib.rematch()
        offered = {s.face.path.name: s for s in strict_lib.suggestions("Ann")}
        assert {"ann2.png", "ann3.png"} <= set(offered)
        assert _names(strict_lib)["ann2.png"] == ["unknown"]
        before = len(People(strict).photos("Ann"))
        # under the threshold, so unlike Ann's photos by definition: the user's "yes" enrols it all the same
        assert strict_lib.confirm(offered["ann2.png"].face, "Ann") is None
        assert len(People(strict).photos("Ann")) == before + 1
        strict_lib.reject(offered["ann3.png"].face, "Ann")
        names = _names(strict_lib)
        assert names["ann2.png"] == ["Ann"] and names["ann3.png"] == ["unknown"]
        left = {s.face.path.name for s in strict_lib.suggestions("Ann")}
        assert "ann2.png" not in left and "ann3.png" not in left
    finally:
        strict_lib.close()


def test_deleted_and_changed_photos_are_picked_up_and_a_forgotten_person_leaves_the_library(lib, tmp_path):
    library, d, cache, _ = lib
    library.add_folder(d, [tmp_path])
    library.scan(cache)
    library.name_group(library.groups()[0].faces, "Cleo")
    (d / "cleo1.png").unlink()
    _photo(d / "sub", "dan1.png", [9], 40)  # changed: now Cleo
    report = library.scan(cache)
    assert report.removed == 1 and report.processed == 1
    names = _names(library)
    assert "cleo1.png" not in names and names["dan1.png"] == ["Cleo"]
    People(library.rec).forget("Cleo")
    assert "Cleo" not in library.people_counts()
    assert all(a.name != "Cleo" for answers in library.store.answers().values() for a in answers)


def test_merged_groups_hidden_groups_and_faces_taken_out_stay_so_across_a_rescan(lib, tmp_path):
    library, d, cache, _ = lib
    library.add_folder(d, [tmp_path])
    library.scan(cache)
    cleo, dan = library.groups()
    library.merge_groups([cleo, dan])  # the user says these are one person
    assert [len(g) for g in library.groups()] == [6]
    odd = next(f for f in library.faces() if f.path.name == "dan0.png")
    library.take_out(odd)
    assert sorted(len(g) for g in library.groups()) == [1, 5]
    assert all(odd.key not in {f.key for f in g.faces} or len(g) == 1 for g in library.groups())
    alone = next(g for g in library.groups() if len(g) == 1)
    library.hide(alone.faces)
    assert [len(g) for g in library.groups()] == [5]
    assert [[f.key for f in g.faces] for g in library.groups(hidden=True)] == [[odd.key]]

    assert library.scan(cache).unchanged == 6  # kept across a rescan and in a new Library over the same file
    again = Library(library.rec)
    try:
        assert [len(g) for g in again.groups()] == [5] and len(again.groups(hidden=True)) == 1
        again.hide(again.groups(hidden=True)[0].faces, hidden=False)
        assert sorted(len(g) for g in again.groups()) == [1, 5]
        named = again.groups()[0]
        again.name_group(named.faces, "Cleo")  # named faces leave the groups, marks or not
        assert [len(g) for g in again.groups()] == [1]
    finally:
        again.close()


def test_merging_a_merged_group_with_another_keeps_all_of_them_together(lib, tmp_path):
    from facerec.library import arrange

    # clusters 0 and 1 merged as token "a"; cluster 2 merged with cluster 3 as "b"; then "a" and "b" merged
    assert arrange([0, 0, 1, 1, 2, 3], ["a", None, "a", None, "b", "b"]) == [[0, 1, 2, 3], [4, 5]]
    assert arrange([0, 0, 0], [None, "alone:x", None]) == [[0, 2], [1]]  # a face taken out stands alone
    library, d, cache, _ = lib
    library.add_folder(d, [tmp_path])
    library.scan(cache)
    cleo, dan = library.groups()
    split = next(f for f in cleo.faces if f.path.name == "cleo0.png")
    library.take_out(split)
    rest = next(g for g in library.groups() if len(g) == 3)
    library.merge_groups([rest, dan])
    alone = next(g for g in library.groups() if len(g) == 1)
    library.merge_groups([alone, next(g for g in library.groups() if len(g) == 5)])
    assert [len(g) for g in library.groups()] == [6]


def test_write_sidecars_names_sure_and_confirmed_faces_only_and_never_touches_a_photo(lib, tmp_path):
    from facerec.xmp import read_regions

    library, d, cache, _ = lib
    library.add_folder(d, [tmp_path])
    library.scan(cache)
    library.name_group(library.groups()[0].faces, "Cleo")
    before = {p: p.read_bytes() for p in d.rglob("*.png")}
    report = library.write_sidecars()
    assert report.failed == ()
    written = {p.name for p in report.written}
    assert written == {"cleo0.png.xmp", "cleo1.png.xmp", "cleo2.png.xmp", "ann_and_cleo.png.xmp"}
    assert report.nothing == 2  # Dan is nobody yet: no sidecar is made for his photos
    regions, _ = read_regions(d / "ann_and_cleo.png")
    assert sorted(r.name for r in regions) == ["Ann", "Cleo"]
    assert {p: p.read_bytes() for p in d.rglob("*.png")} == before
    bad = d / "cleo0.png.xmp"
    bad.write_text("<not xmp")
    report = library.write_sidecars()
    assert [Path(p).name for p, _ in report.failed] == ["cleo0.png"] and bad.read_text() == "<not xmp"


def test_an_older_library_file_gains_the_marks_table(lib, tmp_path):
    import sqlite3

    library, d, cache, _ = lib
    library.add_folder(d, [tmp_path])
    library.scan(cache)
    path = library.store.path
    library.close()
    with sqlite3.connect(path) as con:  # as 0.8 wrote it
        con.execute("DROP TABLE marks")
    again = Library(library.rec)
    try:
        again.merge_groups(again.groups())
        assert [len(g) for g in again.groups()] == [6]
    finally:
        again.close()


def test_a_confirmed_face_turned_away_is_named_but_not_enrolled(lib, settings, tiny_embedder, tmp_path):
    """The enrolment's quality check sees the face as detected again (its landmarks), not a bare box."""
    import numpy as np

    class Turned(BlobDetector):  # five landmarks with the nose far to the right: a head turned away
        def detect(self, image):
            return [f.replace(landmarks=np.array([[f.box[0] + a * f.box[2], f.box[1] + b * f.box[3]] for a, b in
                                                  ((.3, .35), (.7, .35), (.98, .55), (.35, .75), (.65, .75))],
                                                 dtype=np.float32)) for f in super().detect(image)]

    _, d, cache, _ = lib
    library = Library(FaceRecognizer(settings, detector=Turned(), embedder=tiny_embedder))
    try:
        _photo(d, "ann_turned.png", [1], 40)
        library.add_folder(d, [tmp_path])
        library.scan(cache)
        face = library.photo_faces(d / "ann_turned.png")[0]
        before = len(People(library.rec).photos("Ann"))
        why = library.confirm(face, "Ann")
        assert why is not None and "head turned away" in why
        assert len(People(library.rec).photos("Ann")) == before  # quality permitting only
        assert _names(library)["ann_turned.png"] == ["Ann"]  # named all the same: the user said so
    finally:
        library.close()


def test_a_change_made_through_another_library_is_seen_at_once(lib, tmp_path):
    """faces() and groups() are remembered between page runs, but never past a change by anyone."""
    library, d, cache, _ = lib
    library.add_folder(d, [tmp_path])
    library.scan(cache)
    assert [len(g) for g in library.groups()] == [4, 2]
    other = Library(library.rec)
    try:
        other.merge_groups(other.groups())
        assert [len(g) for g in library.groups()] == [6]
        other.name_group(other.groups()[0].faces[:1], "Cleo")
        assert "Cleo" in [f.name for f in library.faces()]
    finally:
        other.close()


def test_naming_a_group_of_linked_photos_remembers_the_names(lib, tmp_path):
    """Photos reached through a symbolic link: the answers were lost (the group file keeps real paths)."""
    library, d, cache, _ = lib
    linked = tmp_path / "linked"
    linked.mkdir()
    for p in sorted(d.glob("cleo*.png")):
        (linked / p.name).symlink_to(p)
    library.add_folder(linked, [tmp_path, d])
    library.scan(cache)
    library.name_group(library.groups()[0].faces, "Cleo")
    assert [f.kind for f in library.faces()] == ["confirmed"] * 3


def test_groups_do_not_loosen_as_people_are_enrolled(lib, tmp_path):
    library, d, cache, _ = lib
    library.add_folder(d, [tmp_path])
    library.scan(cache)
    assert [len(g) for g in library.groups()] == [4, 2]
    library.store.set_meta("threshold", "0.05")  # the naming threshold of a gallery of few people (exaggerated)
    assert [len(g) for g in library.groups()] == [4, 2]  # grouping keeps the base's own


def test_a_rescan_after_a_detection_setting_changed_looks_at_every_photo_again(lib, settings, tiny_embedder,
                                                                             tmp_path):
    """The scan's signature is the tag cache's key: a new pixel budget (or flip, or second look) re-tags."""
    library, d, cache, _ = lib
    library.add_folder(d, [tmp_path])
    library.scan(cache)
    assert library.scan(cache).unchanged == 6
    other = FaceRecognizer(settings.replace(detect_pixels=250_000), detector=BlobDetector(), embedder=tiny_embedder)
    again = Library(other, LibraryStore(settings.gallery))
    try:
        report = again.scan(cache)
        assert report.unchanged == 0 and report.processed == 6
    finally:
        again.close()
