"""The open-set protocol on synthetic vectors whose answer is worked out by hand."""

import numpy as np
import pytest

from facerec.evaluate import evaluate_open_set, format_table, read_pairs, split_protocol
from facerec.settings import Settings

# amy (5 photos) and bob (6) are enrolled with k=3; cat (2), dan (1) and eve (exactly k=3) are strangers
LABELS = np.array(["amy"] * 5 + ["bob"] * 6 + ["cat"] * 2 + ["dan"] + ["eve"] * 3)
AXIS = {"amy": 0, "bob": 1, "cat": 2, "dan": 3, "eve": 4}


def _unit(*pairs: tuple[int, float]) -> np.ndarray:
    v = np.zeros(8, dtype=np.float32)
    for axis, value in pairs:
        v[axis] = value
    return v / np.linalg.norm(v)


def _scene():
    """Vectors for LABELS (enrolled photos on their person's axis) and the valid mask."""
    enrol, probe, known = split_protocol(LABELS, k=3, seed=0)
    X = np.stack([_unit((AXIS[n], 1.0)) for n in LABELS])
    valid = np.ones(len(LABELS), dtype=bool)
    by_person = {n: [i for i in probe if LABELS[i] == n] for n in AXIS}
    a1, a2 = by_person["amy"]
    X[a2] = _unit((0, 0.8), (5, 0.6))  # amy, but only 0.8 from her centroid: rank-1 right, unknown at 0.9
    b3 = by_person["bob"][2]
    X[b3] = _unit((0, 0.95), (1, 0.3122))  # bob, nearer amy (0.95): wrongly named amy
    c1 = by_person["cat"][0]
    X[c1] = _unit((0, 0.96), (6, 0.28))  # stranger 0.96 from amy: wrongly named
    valid[by_person["eve"][0]] = False  # a stranger photo with no face found
    return X, valid, enrol, known


def test_protocol_split_is_the_expected_one():
    enrol, probe, known = split_protocol(LABELS, k=3, seed=0)
    assert sorted(LABELS[enrol]) == ["amy"] * 3 + ["bob"] * 3
    assert len(probe) == 11 and known.sum() == 5
    assert set(LABELS[probe][~known]) == {"cat", "dan", "eve"}
    assert not set(enrol) & set(probe)
    assert np.array_equal(split_protocol(LABELS, k=3, seed=0)[0], enrol)  # seeded: repeatable


def test_known_answer_at_a_fixed_threshold():
    X, valid, _, _ = _scene()
    r = evaluate_open_set(X, LABELS, k=3, threshold=0.9, valid=valid)
    assert r.rank1 == pytest.approx(4 / 5)  # bob's third probe goes to amy
    assert r.named_right == pytest.approx(3 / 5)  # ... and amy's 0.8 probe is unknown
    assert r.strangers_named == pytest.approx(1 / 6)  # cat's first photo is named amy
    # right: 3 enrolled + 4 strangers detected and unknown (eve's no-face photo counts as wrong)
    assert r.overall == pytest.approx(7 / 11)
    assert (r.enrolled_people, r.enrolled_probes, r.stranger_probes, r.detection_failures) == (2, 5, 6, 1)


def test_oracle_threshold_names_at_most_the_rate():
    X, valid, _, _ = _scene()
    r = evaluate_open_set(X, LABELS, k=3, threshold=None, valid=valid, false_accept=0.05)
    assert 0.96 < r.threshold < 0.961  # just above the worst stranger's score
    assert r.strangers_named == 0.0 and r.named_right == pytest.approx(3 / 5) and r.overall == pytest.approx(8 / 11)


def test_a_failed_enrolment_photo_is_skipped():
    X, valid, enrol, _ = _scene()
    valid[enrol[0]] = False  # one of amy's enrolment photos had no face: she stays enrolled with two
    r = evaluate_open_set(X, LABELS, k=3, threshold=0.9, valid=valid)
    assert r.enrolled_people == 2 and r.rank1 == pytest.approx(4 / 5) and r.detection_failures == 2


def test_rules_differ_where_they_should():
    # amy enrolled with photos e0, e1, e1; her probes sit exactly on her centroid, (e0 + 2 e1) / sqrt(5),
    # which is only 2 / sqrt(5) = 0.894 from her two best photos
    e = np.eye(4, dtype=np.float32)
    labels = ["amy"] * 5
    enrol, probe, _ = split_protocol(labels, k=3, seed=0)
    X = np.zeros((5, 4), dtype=np.float32)
    X[enrol] = np.stack([e[0], e[1], e[1]])
    X[probe] = (e[0] + 2 * e[1]) / np.sqrt(5)
    centroid = evaluate_open_set(X, labels, k=3, threshold=0.99, rule="centroid")
    best_two = evaluate_open_set(X, labels, k=3, threshold=0.99, rule="top_k")
    assert centroid.named_right == 1.0 and best_two.named_right == 0.0 and best_two.rank1 == 1.0


def test_read_pairs_lfw_format(tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_text("10\t300\nAmy_Adams\t1\t3\nAmy_Adams\t2\tBob_Brown\t4\n\n")
    assert read_pairs(f) == [("Amy_Adams", 1, "Amy_Adams", 3, True), ("Amy_Adams", 2, "Bob_Brown", 4, False)]


def test_table_lists_every_metric():
    r = {"rank1": 0.991, "named_right": 0.97, "strangers_named": 0.05, "overall": 0.96, "threshold": 0.942,
         "detection_failures": 5}
    text = format_table([("face-resnet+no head", r)])
    head, row = text.splitlines()
    for col in ("rank-1", "named right", "strangers named", "overall", "threshold", "no face", "LFW pairs"):
        assert col in head
    assert "99.1%" in row and "0.942" in row and row.rstrip().endswith("-")  # no pairs run: a dash


def test_table_columns_line_up_for_long_names():
    r = {"rank1": 0.5, "overall": 0.5}
    lines = format_table([("face-resnet+head 01be1b68fa", r), ("x", r)]).splitlines()
    assert len({len(line) for line in lines}) == 1
    assert len({line.index("50.0%") for line in lines[1:]}) == 1


@pytest.mark.realdata
@pytest.mark.weights
@pytest.mark.slow
def test_eval_command_on_real_faces(tmp_path, capsys):
    """`facerec eval` with the default base and threshold on a slice of lfw_dev's test half."""
    import json

    from conftest import LFW

    if not LFW.is_dir():
        pytest.skip("../shared/faces/lfw_dev is absent")
    from facerec import cli
    from facerec.datasets import person_split

    people = sorted(p for p in LFW.iterdir() if p.is_dir() and person_split(p.name) == "test")
    many = [p for p in people if len(list(p.iterdir())) >= 6][:8]
    few = [p for p in people if len(list(p.iterdir())) == 1][:30]
    data = tmp_path / "faces"
    data.mkdir()
    for p in many + few:
        (data / p.name).symlink_to(p, target_is_directory=True)
    pairs = tmp_path / "pairs.txt"
    lines = [f"{p.name}\t1\t{i}" for p in many for i in (2, 3, 4)]
    lines += [f"{a.name}\t1\t{b.name}\t1" for a, b in zip(many + few[:16], few[8:] + many)]
    pairs.write_text("\n".join(lines) + "\n")
    out = tmp_path / "eval.json"
    assert cli.main(["eval", str(data), "--pairs", str(pairs), "--json", str(out), "-q"]) == 0
    table = capsys.readouterr().err
    assert "rank-1" in table and "strangers named" in table and "LFW pairs" in table
    (label, r), = json.loads(out.read_text()).items()
    assert label.startswith(Settings().backbone)  # the default base
    assert r["enrolled_people"] == 8 and r["stranger_probes"] == 30
    assert r["rank1"] >= 0.95 and r["named_right"] >= 0.85
    assert r["strangers_named"] <= 0.1 and r["overall"] >= 0.85
    assert r["verification_pairs"] == len(lines) and r["verification"] >= 0.9
