import joblib
import numpy as np
import pytest
from sklearn.base import clone

from facerec.classify import CosineMatcher, calibrate_threshold
from facerec.types import UNKNOWN


def test_estimator_contract(clustered_vectors, tmp_path):
    X, y = clustered_vectors
    m = CosineMatcher(threshold=0.3)
    assert m.fit(X, y) is m
    assert list(m.classes_) == sorted(set(y))
    p = m.predict_proba(X)
    assert p.shape == (len(X), len(m.classes_)) and np.allclose(p.sum(axis=1), 1)
    c = clone(m)
    assert c.get_params() == m.get_params() and not hasattr(c, "classes_")
    joblib.dump(m, tmp_path / "m.joblib")
    assert list(joblib.load(tmp_path / "m.joblib").predict(X[:5])) == list(m.predict(X[:5]))


def test_names_enrolled_and_rejects_strangers(clustered_vectors):
    X, y = clustered_vectors
    enrolled = np.isin(y, [f"p{i:02d}" for i in range(20)])
    train = enrolled & (np.arange(len(y)) % 6 < 3)
    m = CosineMatcher(threshold=0.6).fit(X[train], y[train])
    probes = enrolled & ~train
    assert np.mean(m.predict(X[probes]) == y[probes]) > 0.9
    assert np.mean(m.predict(X[~enrolled]) == UNKNOWN) > 0.9
    assert all(0.0 <= mt.score <= 1.0 for mt in m.match(X))


def test_single_enrolled_person_still_matches():
    rng = np.random.default_rng(1)
    centre = rng.normal(size=32)
    X = centre + rng.normal(scale=0.3, size=(3, 32))
    m = CosineMatcher(threshold=0.5).fit(X, ["solo"] * 3)
    assert m.match(centre + rng.normal(scale=0.3, size=32))[0].name == "solo"
    assert m.match(rng.normal(size=32))[0].name == UNKNOWN


def test_calibrate_threshold_names_at_most_the_rate():
    s = np.linspace(0, 1, 101)
    t = calibrate_threshold(s, 0.05)
    assert np.mean(s >= t) <= 0.05 and np.mean(s >= t - 0.011) > 0.05
    with pytest.raises(ValueError):
        calibrate_threshold(np.array([]))


def test_centroid_rule_known_answer():
    e = np.eye(4, dtype=np.float32)
    X, y = np.stack([e[0], e[1], e[2]]), ["a", "a", "b"]
    between = (e[0] + e[1]) / np.sqrt(2)
    centroid = CosineMatcher(threshold=0.9).fit(X, y)
    nearest = CosineMatcher(threshold=0.9, rule="top_k", top_k=1).fit(X, y)
    # halfway between a's two photos: exactly a's centroid, but only 0.707 from either photo
    m = centroid.match(between)[0]
    assert m.name == "a" and np.isclose(m.score, 1.0)
    assert nearest.match(between)[0].name == UNKNOWN and np.isclose(nearest.match(between)[0].score, np.sqrt(0.5))
    # on one of a's photos: 0.707 from a's centroid (unknown at 0.9), 1.0 for the nearest-photo rule
    assert centroid.match(e[0])[0].name == UNKNOWN and np.isclose(centroid.match(e[0])[0].score, np.sqrt(0.5))
    assert nearest.match(e[0])[0].name == "a"
    assert np.isclose(centroid.similarities(e[2])[0, 1], 1.0)


def test_top_k_rule_averages_best_photos():
    e = np.eye(3, dtype=np.float32)
    p = np.array([0.8, 0.6, 0.0], dtype=np.float32)  # cosines 0.8, 0.6, 0 to a's three photos
    m = CosineMatcher(rule="top_k", top_k=2).fit(e, ["a"] * 3)
    assert np.isclose(m.similarities(p)[0, 0], 0.7)


def test_score_does_not_depend_on_other_people(clustered_vectors):
    X, y = clustered_vectors
    a = y == "p00"
    alone = CosineMatcher().fit(X[a], y[a]).similarities(X[~a])[:, 0]
    full = CosineMatcher().fit(X, y)
    col = list(full.classes_).index("p00")
    assert np.allclose(full.similarities(X[~a])[:, col], alone, atol=1e-6)


def test_bad_rule_is_a_clear_error(clustered_vectors):
    X, y = clustered_vectors
    with pytest.raises(ValueError, match="rule"):
        CosineMatcher(rule="svm").fit(X, y)
    with pytest.raises(ValueError, match="top_k"):
        CosineMatcher(rule="top_k", top_k=0).fit(X, y)


def test_scores_stay_in_unit_interval():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(12, 8))
    m = CosineMatcher(threshold=0.0).fit(X, np.repeat(["a", "b", "c"], 4))
    scores = [mt.score for mt in m.match(-X)]  # opposite vectors: negative cosines clip to 0
    assert min(scores) >= 0.0 and max(scores) <= 1.0 and 0.0 in scores
