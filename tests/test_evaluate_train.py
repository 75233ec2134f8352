import numpy as np
import pytest

from facerec.embed import BACKBONES, HeadInfo, load_head, save_head
from facerec.evaluate import evaluate_open_set, split_protocol, verification_accuracy
from facerec.datasets import person_split
from facerec.train import train_head


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
                        epochs=30, dim=16, method="lda")
    assert report.with_head["rank1"] > report.base_only["rank1"]
    head, info = load_head(tmp_path / "h")
    assert info.in_dim == dim and info.out_dim == 16 and 0 < info.threshold <= 1


def test_linear_head_is_exactly_the_lda_projection_and_round_trips(tmp_path):
    from facerec.train import fit_lda, linear_head

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(40), 4)
    X = rng.normal(size=(160, 30))
    X[:, :4] += 3 * rng.normal(size=(40, 4))[y]
    mean, W = fit_lda(X, y, pca_dim=20, out_dim=8)
    assert mean.shape == (30,) and W.shape == (30, 8)
    head = linear_head(mean, W)
    ref = (X - mean) @ W
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    v = np.asarray(head(X.astype("float32"), training=False))
    assert np.allclose(v, ref, atol=1e-5)
    save_head(head, HeadInfo("resnet50", 30, 8, 0.5), tmp_path / "lda")
    loaded, _ = load_head(tmp_path / "lda")
    # the saved projection matrix is float16: the same vectors to ~1e-3
    assert np.allclose(np.asarray(loaded(X.astype("float32"), training=False)), ref, atol=2e-3)


def test_lda_head_finds_identity_dimensions(tmp_path):
    """Identity in 8 of 48 dimensions under heavy nuisance noise: LDA must beat raw cosine.

    The nuisance dimensions have the larger variance, so PCA must keep all 48."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(60, 8)) * 2
    labels, feats = [], []
    for p in range(60):
        for _ in range(6 if p < 50 else 1):
            ident = centres[p] + rng.normal(scale=0.4, size=8)
            feats.append([np.concatenate([ident, rng.normal(scale=3.0, size=40)]) for _ in range(2)])
            labels.append(f"p{p}")
    feats = np.array(feats, dtype=np.float32)
    report = train_head(feats, labels, np.ones(len(labels), bool), BACKBONES["resnet50"], tmp_path / "h",
                        dim=16, method="lda", pca_dim=48)
    assert report.with_head["rank1"] > report.base_only["rank1"] + 0.2
    head, info = load_head(tmp_path / "h")
    assert info.metrics["method"] == "lda" and info.in_dim == 48 and 0 < info.threshold <= 1
    assert len(info.stranger_curve["survival"]) == 5  # every method's head carries its curve


def _identity_data(seed: int, people: int = 60, dim: int = 48):
    """Faces of ``people`` people (6 photos each, the last 10 one photo), 2 views each: identity in 8 of
    ``dim`` feature dimensions under heavy nuisance noise, and a teacher that sees the identity alone."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, 8)) * 2
    labels, feats, teacher = [], [], []
    for p in range(people):
        for _ in range(6 if p < people - 10 else 1):
            idents = [centres[p] + rng.normal(scale=0.4, size=8) for _ in range(2)]
            feats.append([np.concatenate([i, rng.normal(scale=3.0, size=dim - 8)]) for i in idents])
            teacher.append([i / np.linalg.norm(i) for i in idents])
            labels.append(f"p{p}")
    return np.array(feats, np.float32), np.array(teacher, np.float32), labels


def test_distilled_map_is_exact_in_the_head_and_recovers_a_linear_teacher(tmp_path):
    """The ridge map from features to the teacher's vectors: a teacher that is a linear function of the
    features is recovered, and the Keras head computes l2((x - mx) W + my) as fitted."""
    from facerec.train import fit_distill, linear_head

    rng = np.random.default_rng(3)
    R = rng.normal(size=(300, 2, 40)).astype(np.float32)
    T = rng.normal(size=(40, 6))
    M = R @ T
    maps = fit_distill(R, M, strengths=[1e-6, 1.0])
    mx, W, my = maps[(0, 1e-6)]
    x = rng.normal(size=(50, 40)).astype(np.float32)
    assert np.allclose((x - mx) @ W + my, x @ T, atol=1e-3)
    mx1, W1, my1 = maps[(0, 1.0)]  # a strong ridge shrinks the map
    assert np.linalg.norm(W1) < 0.9 * np.linalg.norm(W)
    ref = (x - mx) @ W + my
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    got = np.asarray(linear_head(mx, W, shift=my)(x, training=False))
    assert np.allclose(got, ref, atol=1e-5)


def test_distilled_head_learns_what_the_teacher_sees_from_every_face(tmp_path):
    feats, teacher, labels = _identity_data(2)
    report = train_head(feats, labels, np.ones(len(labels), bool), BACKBONES["resnet50"], tmp_path / "h",
                        teacher=teacher, teacher_name="ideal")
    assert report.with_head["rank1"] > report.base_only["rank1"] + 0.2
    head, info = load_head(tmp_path / "h")
    m = info.metrics
    assert m["method"] == "distill" and m["teacher"] == "ideal" and info.out_dim == 8 and info.in_dim == 48
    assert m["faces_fitted"] == len(labels)  # the one-photo people's faces too: names are not needed to fit
    assert m["ridge_strength"] in (0.1, 0.3, 1.0) and 0 < info.threshold <= 1
    # its stranger curve, from the held-out people: a larger gallery needs a higher threshold
    from facerec.thresholds import StrangerCurve

    curve = StrangerCurve.from_dict(info.stranger_curve)
    assert len(curve.survival) == 5 and curve.threshold([1] * 5) < curve.threshold([1] * 500)


def test_distilled_head_without_a_teacher_is_refused_and_writes_nothing(tmp_path):
    from facerec.errors import FaceRecError

    feats, _, labels = _identity_data(4)
    with pytest.raises(FaceRecError, match="teacher"):
        train_head(feats, labels, np.ones(len(labels), bool), BACKBONES["resnet50"], tmp_path / "h")
    assert not list(tmp_path.iterdir())


def test_train_head_refuses_too_few_people_and_writes_nothing(tmp_path):
    from facerec.errors import FaceRecError

    feats = np.random.default_rng(0).normal(size=(6, 2, 8)).astype(np.float32)
    with pytest.raises(FaceRecError, match="too little training data"):
        train_head(feats, ["a", "a", "b", "b", "c", "c"], np.ones(6, bool), BACKBONES["resnet50"], tmp_path / "h",
                   method="lda")
    assert not list(tmp_path.iterdir())


def test_a_detection_cache_write_cut_short_leaves_no_broken_cache(tmp_path):
    """train-head's caches are written whole or not at all: a write that fails half-way
    (here the file-size limit; a kill or a full disk alike) must not leave a partial file
    that breaks the next run (it was written in place before)."""
    import resource
    import signal

    from conftest import BlobDetector, png_bytes, synthetic_photo
    from facerec.datasets import detect_dataset

    paths = []
    for i in range(40):
        p = tmp_path / f"p{i}.png"
        p.write_bytes(png_bytes(synthetic_photo([1 + i % 3], seed=i)))
        paths.append(p)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (512, hard))  # the cache is a few kB
        with pytest.raises(OSError):
            detect_dataset(paths, BlobDetector(), tmp_path / "cache")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    faces = detect_dataset(paths, BlobDetector(), tmp_path / "cache")  # must not read a broken cache
    assert len(faces) == 40 and all(f is not None for f in faces)
    again = detect_dataset(paths, BlobDetector(), tmp_path / "cache")  # now from the cache
    assert [f.box for f in again] == [f.box for f in faces]


def test_the_detection_cache_is_not_shared_by_detectors_with_other_settings(tmp_path):
    """train-head's and evaluate's detection cache was keyed by the detector's name alone, so a
    run at another confidence (or minimum face size, or YuNet's parameters) read the faces an
    earlier run had found with different settings."""
    from conftest import png_bytes, synthetic_photo
    from facerec.detect import _ScalingDetector
    from facerec.settings import Settings
    from facerec.datasets import detect_dataset
    from facerec.types import Face

    class Sure(_ScalingDetector):
        name = "sure"

        def _detect_small(self, image, min_size):
            return [Face((10.0, 10.0, 40.0, 40.0), 0.95)]

    paths = []
    for i in range(3):
        p = tmp_path / f"p{i}.png"
        p.write_bytes(png_bytes(synthetic_photo([1], seed=i)))
        paths.append(p)
    lenient = detect_dataset(paths, Sure(Settings(detection_confidence=0.9)), tmp_path / "cache")
    strict = detect_dataset(paths, Sure(Settings(detection_confidence=0.99)), tmp_path / "cache")
    assert all(f is not None for f in lenient) and strict == [None, None, None]
    again = detect_dataset(paths, Sure(Settings(detection_confidence=0.9)), tmp_path / "cache")
    assert [f.box for f in again] == [f.box for f in lenient]


def test_base_features_are_computed_then_read_from_their_cache(tmp_path, tiny_embedder):
    """train-head's feature cache (keyed by the photos and every setting, facerec.datasets.files_key):
    the second call reads what the first wrote, another number of views is another key."""
    from conftest import png_bytes, synthetic_photo
    from facerec.train import base_features
    from facerec.types import Face

    paths = []
    for i in range(3):
        p = tmp_path / f"p{i}.png"
        p.write_bytes(png_bytes(synthetic_photo([i], seed=i)))
        paths.append(p)
    faces = [Face((30.0, 20.0, 48.0, 48.0), 0.9), None, Face((30.0, 20.0, 48.0, 48.0), 0.9)]
    e, base = tiny_embedder, tiny_embedder._model  # the tiny Keras base (no head)
    first = base_features(paths, faces, e.backbone, base, views=2, cache_dir=tmp_path / "c")
    assert first.shape == (3, 2, 64) and not first[1].any() and first[0].any()
    assert len(list((tmp_path / "c" / "features").glob("*.npy"))) == 1
    np.testing.assert_array_equal(base_features(paths, faces, e.backbone, base, views=2,
                                                cache_dir=tmp_path / "c"), first)
    base_features(paths, faces, e.backbone, base, views=3, cache_dir=tmp_path / "c")
    assert len(list((tmp_path / "c" / "features").glob("*.npy"))) == 2


def test_small_data_trains_when_nobody_has_five_photos(tmp_path):
    """12 people with 4 photos each: the head's stranger curve has rows for 1..5 photos, and
    nobody has 5 (a crash in train-head once, ValueError from an empty stack)."""
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(12, 8)) * 2
    labels = [f"p{p}" for p in range(12) for _ in range(4)]
    feats = np.array([[np.concatenate([centres[int(n[1:])] + rng.normal(scale=0.3, size=8), rng.normal(size=8)])
                       for _ in range(2)] for n in labels], np.float32)
    train_head(feats, labels, np.ones(len(labels), bool), BACKBONES["resnet50"], tmp_path / "h", method="lda",
               pca_dim=16, dim=4)
    _, info = load_head(tmp_path / "h")
    rows = info.stranger_curve["survival"]
    assert len(rows) == 5 and rows[4] == rows[3]  # nobody with 5 photos: the 4-photo row stands in


def test_distillation_refuses_groups_with_nobody_to_enrol_and_writes_nothing(tmp_path):
    """20 people with 6 photos among 1,150 with one: some of the 10 groups has nobody with 4+
    photos to enrol; a clear error instead of a crash in the matcher."""
    from facerec.errors import FaceRecError

    feats, teacher, labels = _identity_data(6, people=220)
    labels = [f"s{i}" if i >= 120 else n for i, n in enumerate(labels)]  # 20 people x 6 photos, then singles
    with pytest.raises(FaceRecError, match="4\\+ photos"):
        train_head(feats, labels, np.ones(len(labels), bool), BACKBONES["resnet50"], tmp_path / "h",
                   teacher=teacher)
    assert not list(tmp_path.iterdir())
