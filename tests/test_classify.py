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
