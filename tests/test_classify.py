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


def _people(rng, n_people, photos, dim=24, noise=0.9):
    """Synthetic identities: a random unit direction per person plus noise per photo."""
    centres = rng.normal(size=(n_people, dim))
    X = np.repeat(centres, photos, axis=0) + noise * rng.normal(size=(n_people * photos, dim))
    labels = np.repeat([f"p{i}" for i in range(n_people)], photos)
    return X.astype(np.float32), labels


def _strangers_named(threshold, rng, n_enrolled, k=1):
    X, labels = _people(rng, n_enrolled + 400, k + 1)
    enrolled = np.isin(labels, [f"p{i}" for i in range(n_enrolled)])
    first = np.zeros(len(labels), bool)
    first[np.unique(labels, return_index=True)[1]] = True
    m = CosineMatcher(threshold=threshold).fit(X[enrolled & first], labels[enrolled & first])
    names = m.predict(X[~enrolled])
    return float(np.mean(names != "unknown"))


def test_the_stranger_curve_keeps_strangers_named_bounded_as_the_gallery_grows():
    """A fixed threshold names more strangers the more people are enrolled; the curve's
    threshold (calibrated once, on other people) rises with the gallery and keeps the share
    near its target."""
    from facerec.evaluate import stranger_curve

    X, labels = _people(np.random.default_rng(0), 600, 3)
    curve = stranger_curve(X, labels, np.ones(len(X), bool), np.round(np.arange(0.0, 1.0, 0.002), 3),
                           max_k=3, strangers_named=0.03)
    t10, t300 = curve.threshold([1] * 10), curve.threshold([1] * 300)
    assert t10 < t300
    rng = np.random.default_rng(1)
    fixed = curve.threshold([1] * 10)
    assert _strangers_named(fixed, rng, 300) > 0.10  # the small gallery's threshold, on a large one
    for n in (10, 300):
        assert _strangers_named(curve.threshold([1] * n), np.random.default_rng(2 + n), n) <= 0.05
    assert len(curve.survival) == 3  # one row per photo count, 1..max_k


def test_stranger_curve_round_trips_and_refuses_bad_documents():
    from facerec.thresholds import StrangerCurve

    c = StrangerCurve((0.1, 0.5, 0.9), ((0.5, 0.01, 0.0),), 0.02)
    assert StrangerCurve.from_dict(c.to_dict()) == c
    assert c.threshold([1]) == 0.5 and c.threshold([1] * 3) == 0.9  # 1 - 0.99**3 > 0.02
    assert c.threshold([7, 2]) == c.threshold([1, 1])  # more photos than rows: the last row
    with pytest.raises(ValueError):
        StrangerCurve.from_dict({"grid": [0.9, 0.1], "survival": [[0.5, 0.0]]})
    with pytest.raises(ValueError):
        c.threshold([])


def test_recognition_threshold_follows_the_gallery_unless_set():
    from facerec.thresholds import recognition_threshold, stranger_curve
    from facerec.embed import calibrated_threshold
    from facerec.settings import Settings

    s = Settings(backbone="face-resnet")
    small = recognition_threshold(s, ["a", "b"])
    large = recognition_threshold(s, [f"p{i}" for i in range(500)])
    assert small < calibrated_threshold(s) < large  # the shipped curve, lfw_dev's train half
    assert small == stranger_curve("face-resnet").threshold([1, 1])
    assert recognition_threshold(s, []) == calibrated_threshold(s)  # nobody enrolled yet
    assert recognition_threshold(s.replace(threshold=0.5), ["a"]) == 0.5  # a chosen threshold wins
    one = stranger_curve("face-resnet").threshold([1])
    assert recognition_threshold(s, ["a"], fixed=calibrated_threshold(s)) == one  # the base's own: the curve
    assert recognition_threshold(s, ["a"], fixed=0.8) == 0.8  # an embedder built with its own threshold
    r50 = Settings(backbone="resnet50")  # a base used with its head: the head's own curve
    assert recognition_threshold(r50, ["a"]) < recognition_threshold(r50, [f"p{i}" for i in range(500)])


def test_a_head_without_a_stranger_curve_keeps_its_fixed_threshold(tmp_path):
    """Heads written before 0.10 carry no curve: their calibrated threshold applies to every gallery;
    once the description gains a curve (the file changes), the threshold follows the gallery."""
    import json

    from facerec.embed import HeadInfo, calibrated_threshold, head_paths
    from facerec.settings import Settings
    from facerec.thresholds import StrangerCurve, recognition_threshold

    stem = tmp_path / "old"
    info = head_paths(stem)[1]
    info.write_text(json.dumps(HeadInfo("resnet50", 8, 4, 0.4).__dict__))
    s = Settings(backbone="resnet50", head=stem)
    assert calibrated_threshold(s) == 0.4
    assert recognition_threshold(s, ["a"]) == recognition_threshold(s, [f"p{i}" for i in range(500)]) == 0.4
    curve = StrangerCurve((0.3, 0.5, 0.7), ((0.1, 0.001, 0.0),), 0.02)
    info.write_text(json.dumps(HeadInfo("resnet50", 8, 4, 0.4, stranger_curve=curve.to_dict()).__dict__) + " ")
    assert recognition_threshold(s, ["a"]) == 0.5 and recognition_threshold(s, [f"p{i}" for i in range(500)]) == 0.7



def test_a_curve_with_its_tail_modelled_reaches_past_what_few_pairs_counted():
    """Stranger scores with an exponential tail: counted from few pairs, the curve's far tail is
    empty (a big gallery's threshold falls to where those pairs stop); modelled above the 99th
    percentile, it follows the true tail, and a curve already exponential there is kept."""
    from facerec.thresholds import StrangerCurve

    grid = np.round(np.arange(0.0, 1.0, 0.001), 3)
    true = np.minimum(1.0, np.exp(-(grid - 0.3) / 0.05))  # P(score >= t)
    rng = np.random.default_rng(0)
    few = 0.3 + rng.exponential(0.05, 3000)
    counted = (few[None, :] >= grid[:, None]).mean(axis=1)
    exact = StrangerCurve(tuple(grid), (tuple(true),), 0.02)
    small = StrangerCurve(tuple(grid), (tuple(counted),), 0.02)
    people = [1] * 500  # 2% over 500 people: 4e-5 a pair, past what 3,000 pairs can count
    want = exact.threshold(people)
    assert small.threshold(people) < want - 0.05
    assert abs(small.with_tail(0.99).threshold(people) - want) < 0.02
    assert abs(exact.with_tail(0.99).threshold(people) - want) < 0.005
    assert small.with_tail(0.99).survival[0][:100] == small.survival[0][:100]  # below the tail: as counted


def test_a_malformed_curve_in_a_head_is_a_clear_error(tmp_path):
    import json

    from facerec.embed import HeadInfo, head_paths
    from facerec.errors import ModelUnavailableError
    from facerec.settings import Settings
    from facerec.thresholds import recognition_threshold

    stem = tmp_path / "bad"
    s = Settings(backbone="resnet50", head=stem)
    for bad in ({"grid": [0.1, 0.2]}, "curve", {"grid": [0.1, 0.2], "survival": [[0.5]]},
                {"grid": [0.1, 0.2], "survival": [[0.5, float("nan")]]}):
        head_paths(stem)[1].write_text(json.dumps(HeadInfo("resnet50", 8, 4, 0.4, stranger_curve=bad).__dict__))
        with pytest.raises(ModelUnavailableError, match="stranger_curve is malformed"):
            recognition_threshold(s, ["a"])
    head_paths(stem)[1].unlink()
    with pytest.raises(ModelUnavailableError, match="train-head"):
        recognition_threshold(s, ["a"])
