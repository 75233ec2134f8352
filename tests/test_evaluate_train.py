import numpy as np

from facerec.embed import BACKBONES, load_head
from facerec.evaluate import evaluate_open_set, split_protocol, verification_accuracy
from facerec.train import person_split, train_head


def test_split_protocol_known_answer():
    labels = ["a"] * 5 + ["b"] * 3 + ["c"]
    enrol, probe, known = split_protocol(labels, k=3)
    assert sorted(np.asarray(labels)[enrol]) == ["a"] * 3
    assert len(probe) == 2 + 3 + 1 and known.sum() == 2  # b has only k photos: a stranger


def test_perfect_vectors_score_perfectly():
    eye = np.eye(4, dtype=np.float32)
    X = np.concatenate([np.repeat(eye[:2], 5, axis=0), eye[2:]])  # two people x5, two strangers
    labels = ["a"] * 5 + ["b"] * 5 + ["s1", "s2"]
    r = evaluate_open_set(X, labels, k=3, threshold=0.5)
    assert (r.rank1, r.named_right, r.strangers_named, r.overall) == (1.0, 1.0, 0.0, 1.0)
    assert r.enrolled_probes == 4 and r.stranger_probes == 2


def test_failed_detections_count_as_wrong():
    X = np.repeat(np.eye(2, dtype=np.float32), 5, axis=0)
    labels = ["a"] * 5 + ["b"] * 5
    _, probe, _ = split_protocol(labels, k=3)
    valid = np.ones(10, bool)
    valid[probe[0]] = False  # a probe had no face
    r = evaluate_open_set(X, labels, k=3, threshold=0.5, valid=valid)
    assert r.named_right == 0.75 and r.detection_failures == 1


def test_verification_accuracy_ten_fold():
    rng = np.random.default_rng(0)
    same = np.arange(200) % 2 == 0
    sims = np.where(same, rng.uniform(0.6, 1.0, 200), rng.uniform(0.0, 0.4, 200))
    acc, std, th = verification_accuracy(sims, same)
    assert acc == 1.0 and 0.4 <= th <= 0.6
    assert verification_accuracy(rng.uniform(size=200), same)[0] < 0.7


def test_person_split_is_deterministic_halves():
    names = [f"person_{i}" for i in range(400)]
    train = [n for n in names if person_split(n) == "train"]
    assert 150 < len(train) < 250 and train == [n for n in names if person_split(n) == "train"]


def test_train_head_learns_identities_and_saves(tmp_path):
    """Features = identity signal in a few dimensions buried in nuisance noise; the head must find it."""
    rng = np.random.default_rng(0)
    n_people, per, dim = 60, 6, 48
    centres = rng.normal(size=(n_people, 8)) * 2
    labels, feats = [], []
    for p in range(n_people):
        for _ in range(per if p < 50 else 1):
            ident = centres[p] + rng.normal(scale=0.4, size=8)
            views = [np.concatenate([ident, rng.normal(scale=3.0, size=dim - 8)]) for _ in range(2)]
            feats.append(views)
            labels.append(f"p{p}")
    feats = np.array(feats, dtype=np.float32)
    report = train_head(feats, labels, np.ones(len(labels), bool), BACKBONES["resnet50"], tmp_path / "h",
                        epochs=30, dim=16)
    assert report.with_head["rank1"] > report.base_only["rank1"]
    head, info = load_head(tmp_path / "h")
    assert info.in_dim == dim and info.out_dim == 16 and 0 < info.threshold <= 1
