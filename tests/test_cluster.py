import json
import os

import numpy as np
import pytest
from PIL import Image

from facerec.align import crop_box
from facerec.cluster import (
    Member, UnknownGroup, cluster_unknown, collect_unknown, default_clusters_file, enroll_cluster, group_unknown,
    load_clusters, save_clusters, write_contact_sheet,
)
from facerec.errors import ClusterError, ConfigError, InvalidNameError
from facerec.tagging import identify_files
from facerec.types import UNKNOWN

from conftest import png_bytes, synthetic_photo, tree_snapshot


def same_partition(a, b) -> bool:
    """True when two labelings group the items identically (label names aside)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


# -- clustering ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["average", "graph", "auto"])
def test_clusters_recover_the_people(clustered_vectors, method):
    X, y = clustered_vectors
    labels = cluster_unknown(X, threshold=0.5, method=method)
    assert labels.shape == (len(X),) and labels.dtype == np.int64
    assert same_partition(labels, y)
    sizes = np.bincount(labels)
    assert list(sizes) == [6] * 20 + [1] * 15  # label 0 is the biggest; singletons last
    assert labels[0] == 0  # ties broken by first member


def test_clusters_do_not_depend_on_input_order(clustered_vectors):
    X, y = clustered_vectors
    perm = np.random.default_rng(1).permutation(len(X))
    labels = cluster_unknown(X[perm], threshold=0.5)
    assert same_partition(labels, y[perm])
    assert list(np.bincount(labels)) == [6] * 20 + [1] * 15


def test_strict_threshold_splits_and_loose_merges(clustered_vectors):
    X, _ = clustered_vectors
    assert len(set(cluster_unknown(X, threshold=0.99).tolist())) == len(X)
    assert len(set(cluster_unknown(X, threshold=0.0, method="graph").tolist())) < 35


def test_clustering_edge_cases(clustered_vectors):
    X, _ = clustered_vectors
    assert cluster_unknown(np.zeros((0, 64), np.float32), 0.5).shape == (0,)
    assert cluster_unknown(X[:1], 0.5).tolist() == [0]
    with pytest.raises(ConfigError):
        cluster_unknown(X, 1.5)
    with pytest.raises(ConfigError):
        cluster_unknown(X[0], 0.5)
    with pytest.raises(ConfigError):
        cluster_unknown(X, 0.5, method="kmeans")
    bad = X.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        cluster_unknown(bad, 0.5)


def test_group_unknown_labels_biggest_first(clustered_vectors, tmp_path):
    X, y = clustered_vectors
    members = [Member(tmp_path / f"{i}.jpg", (0.0, 0.0, 10.0, 10.0)) for i in range(len(X))]
    groups = group_unknown(members, X, threshold=0.5)
    assert [g.label for g in groups[:3]] == ["unknown_1", "unknown_2", "unknown_3"]
    assert [len(g) for g in groups] == [6] * 20 + [1] * 15
    for g in groups:
        idx = [int(m.photo.stem) for m in g.members]
        assert len(set(y[idx])) == 1
        assert np.allclose(g.vectors, X[idx])
    assert group_unknown([], np.zeros((0, 0), np.float32), 0.5) == []


# -- contact sheets ---------------------------------------------------------------------------


def test_contact_sheet_has_one_tile_per_readable_member(tmp_path):
    image = synthetic_photo([1, 2, 3], seed=0)
    photo = tmp_path / "group.png"
    photo.write_bytes(png_bytes(image))
    boxes = [(30.0, 20.0, 48.0, 48.0), (108.0, 20.0, 48.0, 48.0), (186.0, 20.0, 48.0, 48.0)]
    members = [Member(photo, b) for b in boxes] * 3 + [Member(tmp_path / "gone.png", boxes[0])]
    group = UnknownGroup("unknown_2", tuple(members))
    out = tmp_path / "sheets" / "unknown_2.jpg"
    n = write_contact_sheet(group, out, tile=64, columns=4)
    assert n == 9  # the missing photo is left out
    sheet = np.asarray(Image.open(out).convert("RGB"))
    header = sheet.shape[0] - 3 * 64
    assert sheet.shape[1] == 4 * 64 and header > 0  # 9 tiles: 3 rows of 4
    for i in range(9):
        r, c = divmod(i, 4)
        tile = sheet[header + r * 64:header + (r + 1) * 64, c * 64:(c + 1) * 64].astype(float)
        want = crop_box(image, boxes[i % 3], 64, margin=0.2).astype(float)
        assert np.abs(tile - want).mean() < 8  # the right face in the right place (JPEG aside)
    empty = UnknownGroup("unknown_9", (Member(tmp_path / "gone.png", boxes[0]),))
    assert write_contact_sheet(empty, tmp_path / "x.jpg") == 0 and not (tmp_path / "x.jpg").exists()


# -- a run: tag, group, save, enrol a group ----------------------------------------------------


@pytest.fixture
def run(recognizer, tmp_path):
    """Ann enrolled; a folder with 3 photos of stranger 5, 2 of stranger 6 and one of Ann; clusters saved."""
    recognizer.enroll("Ann", png_bytes(synthetic_photo([1], seed=0)), source="ann.png")
    folder = tmp_path / "photos"
    folder.mkdir()
    people = {"a": [5], "b": [5, 1], "c": [6], "d": [5], "e": [6], "f": [1]}
    for i, (stem, who) in enumerate(people.items()):
        (folder / f"{stem}.png").write_bytes(png_bytes(synthetic_photo(who, seed=10 + i)))
    results = list(identify_files(recognizer, sorted(folder.iterdir())))
    members, X = collect_unknown(results)
    assert len(members) == 5 and X.shape[0] == 5
    groups = group_unknown(members, X, threshold=recognizer.threshold)
    path = save_clusters(groups, default_clusters_file(recognizer.gallery.root), recognizer.threshold,
                         recognizer.embedder.key)
    return folder, groups, path


def test_unknown_faces_are_grouped_and_saved(run):
    folder, groups, path = run
    assert [(g.label, sorted(m.photo.name for m in g.members)) for g in groups] == [
        ("unknown_1", ["a.png", "b.png", "d.png"]), ("unknown_2", ["c.png", "e.png"])]
    doc = json.loads(path.read_text())
    assert [g["sheet"] for g in doc["groups"]] == ["unknown_1.jpg", "unknown_2.jpg"]
    assert (path.parent / "unknown_1.jpg").is_file() and (path.parent / doc["vectors"]).is_file()
    loaded = load_clusters(path)
    assert [g.label for g in loaded.groups] == ["unknown_1", "unknown_2"]
    for a, b in zip(loaded.groups, groups):
        assert a.members == b.members and np.allclose(a.vectors, b.vectors)
    # a new run replaces the old one's files
    save_clusters(groups[1:], path, 0.5, "m")
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        ["clusters.json", "unknown_2.jpg", json.loads(path.read_text())["vectors"]])


def test_enroll_cluster_enrols_every_member(recognizer, run):
    folder, _, _ = run
    result = enroll_cluster(recognizer, "unknown_1", "Carl")
    assert sorted(p.name for p in result.enrolled) == ["a.png", "b.png", "d.png"]
    assert not result.skipped and not result.duplicates
    assert {(p.name, p.photos) for p in recognizer.gallery.people()} == {("Ann", 1), ("Carl", 3)}
    # the face enrolled from the two-person photo is the stranger's, not Ann's
    carl_b = [r for r in recognizer.gallery.photos("Carl") if r.path.read_bytes() == (folder / "b.png").read_bytes()]
    assert carl_b[0].box[0] == 30
    names = [m.name for _, m in recognizer.identify(synthetic_photo([5, 6], seed=99))]
    assert names == ["Carl", UNKNOWN]
    again = enroll_cluster(recognizer, "unknown_1", "Carl")
    assert not again.enrolled and len(again.duplicates) == 3


def test_enroll_cluster_reports_gone_and_changed_photos(recognizer, run):
    folder, _, _ = run
    (folder / "a.png").unlink()
    (folder / "d.png").write_bytes(png_bytes(synthetic_photo([5], seed=77)))  # edited: face found again
    (folder / "b.png").write_bytes(png_bytes(synthetic_photo([1], seed=78)))  # edited: Ann where the stranger was
    os.utime(folder / "d.png", ns=(1, 1))
    result = enroll_cluster(recognizer, "unknown_1", "Carl")
    assert [p.name for p in result.enrolled] == ["d.png"]
    reasons = dict((p.name, r) for p, r in result.skipped)
    assert set(reasons) == {"a.png", "b.png"}
    assert "no such file" in reasons["a.png"] and "no longer looks like" in reasons["b.png"]
    moved = np.pad(synthetic_photo([5], seed=79), ((0, 0), (200, 0), (0, 0)))
    (folder / "b.png").write_bytes(png_bytes(moved))  # the stranger moved away (cropped photo)
    result = enroll_cluster(recognizer, "unknown_1", "Carl")
    assert [p.name for p in result.duplicates] == ["d.png"]
    assert "no longer found" in dict((p.name, r) for p, r in result.skipped)["b.png"]
    assert {(p.name, p.photos) for p in recognizer.gallery.people()} == {("Ann", 1), ("Carl", 1)}


def test_bad_label_name_or_file_leave_gallery_unchanged(recognizer, run, tmp_path):
    before = tree_snapshot(recognizer.gallery.root)
    with pytest.raises(ClusterError, match="unknown_1, unknown_2"):
        enroll_cluster(recognizer, "unknown_7", "Carl")
    with pytest.raises(InvalidNameError):
        enroll_cluster(recognizer, "unknown_1", "../Carl")
    with pytest.raises(ClusterError, match="cluster-unknown"):
        enroll_cluster(recognizer, "unknown_1", "Carl", clusters_file=tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 1, "groups": [{"label": "unknown_1"}]}')
    with pytest.raises(ClusterError, match="malformed"):
        enroll_cluster(recognizer, "unknown_1", "Carl", clusters_file=bad)
    assert tree_snapshot(recognizer.gallery.root) == before


def test_graph_links_a_little_above_the_threshold():
    """Single linkage chains look-alikes: the graph method links faces only a tenth of the way
    from the threshold to 1 (mobilefacenet at its 0.502 mixed people), average linkage at it."""
    a = np.array([1.0, 0.0], np.float32)
    b = np.array([0.52, np.sqrt(1 - 0.52 ** 2)], np.float32)  # cosine 0.52 to a
    X = np.stack([a, b])
    assert list(cluster_unknown(X, threshold=0.502, method="average")) == [0, 0]
    assert sorted(cluster_unknown(X, threshold=0.502, method="graph")) == [0, 1]
    assert list(cluster_unknown(X, threshold=0.45, method="graph")) == [0, 0]  # 0.505 link


def test_big_sets_are_grouped_by_average_linkage_in_parts_not_chained(clustered_vectors, monkeypatch):
    """Above MAX_AVERAGE_LINKAGE faces the graph method chained look-alikes into one giant group
    (47% of a 12,580-face library); now average linkage runs inside connected parts."""
    from facerec import cluster

    X, _ = clustered_vectors
    exact = cluster.cluster_unknown(X, 0.5, "average")
    monkeypatch.setattr(cluster, "MAX_AVERAGE_LINKAGE", 40)  # the parts at the threshold fit: the same groups
    assert (cluster.cluster_unknown(X, 0.5) == exact).all()
    angles = np.linspace(0, np.pi / 2, 60)  # a chain of faces, each like its neighbours only (0.9997)
    chain = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    assert cluster.cluster_unknown(chain, 0.9, "graph").max() == 0  # single linkage: one group
    monkeypatch.setattr(cluster, "MAX_AVERAGE_LINKAGE", 10)
    labels = cluster.cluster_unknown(chain, 0.9)
    assert labels.max() >= 5 and np.bincount(labels).max() <= 10
