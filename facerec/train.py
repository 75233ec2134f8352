"""Training a head on a frozen base: ``facerec train-head DATA_DIR``.

DATA_DIR holds one folder of photos per person. Faces are detected and
aligned once; base features are computed once per augmented view (original,
mirror, shifted + colour-jittered) and cached; then only the small head
(:func:`facerec.embed.build_head`) is fitted, by the backbone's ``head_method``:
``"cosface"`` trains it with a CosFace loss (softmax over identities with a
cosine margin); ``"lda"`` fits it in closed form (PCA whitening, then linear
discriminant analysis) and writes the projection into the same layers;
``"distill"`` fits, in closed form too, a ridge map from the base's features to
a face network's (the *teacher's*) vectors of the same faces, so that the base
learns what the face network sees (names are used only to measure it). The
head is measured, and its stranger curve (the recognition threshold for each
gallery's size) calibrated, on people it was not fitted on (cross-fitting over
groups of people, open-set protocol of :mod:`facerec.evaluate`); the saved head
is fitted on everyone.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from facerec.align import face_crop, template
from facerec.datasets import files_key
from facerec.embed import Backbone, HeadInfo, build_head, l2_normalize, save_head
from facerec.errors import FaceRecError
from facerec.evaluate import embed_views, evaluate_open_set, stranger_curve
from facerec.storage import write_atomic
from facerec.images import load_image
from facerec.types import Face

Progress = Callable[[Iterable], Iterable]


def augment(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random variant of a face crop: mirror, shift up to 6%, scale, brightness, contrast, saturation."""
    s = crop.shape[0]
    out = crop[:, ::-1] if rng.random() < 0.5 else crop
    dx, dy = rng.uniform(-0.06, 0.06, 2) * s
    z = rng.uniform(0.94, 1.06)
    m = np.array([[z, 0, (1 - z) * s / 2 + dx], [0, z, (1 - z) * s / 2 + dy]])
    out = cv2.warpAffine(np.ascontiguousarray(out), m, (s, s), borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    grey = out.mean(axis=2, keepdims=True)
    out = grey + (out - grey) * rng.uniform(0.7, 1.3)  # saturation
    out = (out - out.mean()) * rng.uniform(0.8, 1.2) + out.mean() + rng.uniform(-20, 20)
    return np.clip(out, 0, 255).astype(np.uint8)


def base_features(paths: Sequence[Path], faces: Sequence[Face | None], backbone: Backbone, base,
                  views: int, cache_dir: Path, batch_size: int = 32, seed: int = 0,
                  progress: Progress | None = None, weights_id: str | None = None) -> np.ndarray:
    """Base features of each face in ``views`` variants (view 0 unaugmented, 1 mirrored, rest random).

    ``weights_id``: the content digest of user-configured weights (part of the cache key,
    so features of another weights file are never reused); ``None`` for the built-in ones.

    Returns:
        ``(N, views, F)`` float32; rows of photos without a face are zeros. Cached on disk.
    """
    size = int(base.input_shape[1])
    pooling = (backbone.feature_layer, backbone.grid, backbone.power_norm)
    key = files_key(paths, views, seed, template(size, backbone.zoom).round(3).tolist(),
                     *([pooling] if pooling[1:] != (1, False) else []),  # keys of plain-GAP caches unchanged
                     *([weights_id] if weights_id else []))
    cache = cache_dir / "features" / f"{backbone.name}-{size}-{key}.npy"
    if cache.is_file():
        return np.load(cache)
    rng = np.random.default_rng(seed)
    dim = int(base.output_shape[-1])
    out = np.zeros((len(paths), views, dim), dtype=np.float32)
    todo = [i for i, f in enumerate(faces) if f is not None]
    chunks = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    for chunk in (progress(chunks) if progress else chunks):
        crops = []
        for i in chunk:
            f = faces[i]
            crop = face_crop(load_image(paths[i]), f.box, f.landmarks, size, backbone.zoom)
            crops.append([crop, crop[:, ::-1]][:views] + [augment(crop, rng) for _ in range(views - 2)])
        batch = np.stack([c for cs in crops for c in cs])
        feats = np.asarray(base.predict_on_batch(backbone.preprocess(batch.astype(np.float32))))
        out[chunk] = feats.reshape(len(chunk), views, dim)
    cache.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, out)
    write_atomic(cache, buf.getvalue())
    return out


def teacher_views(paths: Sequence[Path], faces: Sequence[Face | None], settings,
                  progress: Progress | None = None) -> np.ndarray:
    """The vectors of ``settings.backbone`` (the teacher, without head) of each face, plain and mirrored.

    Each face is aligned as that network wants it (its own crop and template).

    Returns:
        ``(N, 2, D)`` float32 unit vectors, view 0 plain and view 1 mirrored as in
        :func:`base_features`; rows of photos without a face are zeros.
    """
    plain, mirror, _ = embed_views([settings.backbone], paths, faces, settings, progress=progress)[settings.backbone]
    return np.stack([plain, mirror], axis=1)


def _cosface_layer():
    import keras
    from keras import ops

    class CosFace(keras.layers.Layer):
        """Logits ``s * (cos(v, w_c) - m * [c == y])`` over identity weights ``w_c``."""

        def __init__(self, n_classes: int, s: float = 24.0, m: float = 0.25, **kw):
            super().__init__(**kw)
            self.n_classes, self.s, self.m = n_classes, s, m

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[0][-1], self.n_classes), initializer="glorot_uniform",
                                     name="identities")

        def call(self, inputs):
            v, y = inputs
            w = self.w / ops.maximum(ops.norm(self.w, axis=0, keepdims=True), 1e-12)
            cos = ops.matmul(v, w)
            onehot = ops.one_hot(ops.cast(ops.reshape(y, (-1,)), "int32"), self.n_classes)
            return self.s * (cos - self.m * onehot)

    return CosFace


def fit_lda(X: np.ndarray, y: Sequence, pca_dim: int = 512, out_dim: int = 128,
            shrink: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """PCA whitening, then linear discriminant analysis, in closed form.

    Fitted on the people with 2+ rows: centre, project on the top ``pca_dim``
    principal axes scaled to unit variance, whiten the within-person scatter
    (shrunk by ``shrink`` toward its mean eigenvalue), and keep the
    ``out_dim`` directions along which the people's means spread most.

    Args:
        X: ``(N, F)`` features.
        y: ``(N,)`` person per row.

    Returns:
        ``(mean, W)``: ``(F,)`` and ``(F, out_dim)`` float32; project with ``(x - mean) @ W``.
    """
    _, inv, counts = np.unique(np.asarray(y), return_inverse=True, return_counts=True)
    keep = counts[inv] >= 2
    X = np.asarray(X, dtype=np.float64)[keep]
    inv = np.unique(inv[keep], return_inverse=True)[1]
    if len(X) < 4 or inv.max() < 1:
        raise FaceRecError("too little training data: need at least 2 people with 2+ photos each with a face")
    mu = X.mean(0)
    Xc = X - mu
    pca_dim = min(pca_dim, Xc.shape[1], len(Xc) - 1)
    if Xc.shape[1] <= Xc.shape[0]:
        evals, evecs = np.linalg.eigh(Xc.T @ Xc / len(Xc))
        order = np.argsort(evals)[::-1][:pca_dim]
        P = evecs[:, order] / np.sqrt(np.maximum(evals[order], 1e-12))
    else:
        _, sv, vt = np.linalg.svd(Xc, full_matrices=False)
        P = vt[:pca_dim].T / np.maximum(sv[:pca_dim] / np.sqrt(len(Xc)), 1e-6)
    Z = Xc @ P
    n = np.bincount(inv).astype(np.float64)
    means = np.zeros((len(n), Z.shape[1]))
    np.add.at(means, inv, Z)
    means /= n[:, None]
    within = Z - means[inv]
    Sw = within.T @ within / len(Z)
    Sw = (1 - shrink) * Sw + shrink * np.trace(Sw) / len(Sw) * np.eye(len(Sw))
    ew, vw = np.linalg.eigh(Sw)
    Wh = vw / np.sqrt(np.maximum(ew, 1e-12))
    Mb = means @ Wh
    Sb = (Mb * n[:, None]).T @ Mb / n.sum()
    eb, vb = np.linalg.eigh(Sb)
    W = P @ Wh @ vb[:, np.argsort(eb)[::-1][:out_dim]]
    return mu.astype(np.float32), W.astype(np.float32)


CURVE_GRID = np.round(np.arange(0.0, 1.0005, 0.001), 3)
"""The thresholds at which a head's stranger curve is measured."""

DISTILL_FOLDS = 10
"""Groups of people a distilled head is measured and calibrated over. It is fitted on every face
(names are not needed), so everyone, one-photo people too, is split into the groups, and each
measured head sees 90% of the faces, close to the saved one. With fewer, the measured heads are
weaker than the saved one and the curve stricter than it aims to be (resnet50 on lfw_dev's test half,
k=3, 2% aimed at: 1.4% of strangers named with 2 groups, 1.5% with 5, 1.9% with 10;
benchmarks/results/resnet50_distill_groups.json). Two groups of the multi-photo people only, as the
other heads are measured, named 0.2%."""

DISTILL_STRENGTHS = (0.1, 0.3, 1.0)
"""Ridge strengths tried by ``"distill"`` heads, as multiples of the mean eigenvalue of the features'
Gram matrix (resnet50 on lfw_dev's train half: 0.3 won both the study's 2-fold cross-validation,
benchmarks/results/resnet50_distill.json, and the shipped head's 10 groups)."""


def fit_distill(R: np.ndarray, M: np.ndarray, strengths: Sequence[float] = DISTILL_STRENGTHS,
                dims: Sequence[int] = (0,)) -> dict[tuple[int, float], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Ridge maps from base features to a teacher's vectors of the same faces, in closed form.

    Centre; take the principal axes of the view-averaged rows (from their Gram matrix, so
    ``F`` may far exceed ``N``), keep the top ``d`` (0: all, the rank); regress every view's
    teacher vector on its features in that basis with strength ``a * trace(Z'Z) / d``.

    Args:
        R: ``(N, V, F)`` base features of N faces in V views (view v of a face in R and M
            is the same picture: plain, mirrored, ...).
        M: ``(N, V, D)`` the teacher's unit vectors of the same views.
        strengths: the ``a`` values tried.
        dims: the ``d`` values tried.

    Returns:
        ``{(d, a): (mx, W, my)}``: ``(F,)``, ``(F, D)``, ``(D,)`` float32; a view's vector is
        ``l2((x - mx) @ W + my)`` (:func:`linear_head` with ``shift=my``).
    """
    mx = R.reshape(-1, R.shape[2]).mean(0)
    my = M.reshape(-1, M.shape[2]).mean(0)
    A = (R.mean(1) - mx).astype(np.float64)
    lam, U = np.linalg.eigh(A @ A.T)
    order = np.argsort(lam)[::-1]
    lam, U = lam[order], U[:, order]
    rank = int((lam > lam[0] * 1e-9).sum())
    X = (R - mx).reshape(-1, R.shape[2]).astype(np.float32)
    Y = (M - my).reshape(-1, M.shape[2]).astype(np.float64)
    out = {}
    for req in dims:
        d = rank if req <= 0 else min(req, rank)
        V = (A.T @ (U[:, :d] / np.sqrt(lam[:d]))).astype(np.float32)  # (F, d) orthonormal axes
        Z = (X @ V).astype(np.float64)
        g, Q = np.linalg.eigh(Z.T @ Z)
        ZtY = Q.T @ (Z.T @ Y)
        for a in strengths:
            Wz = Q @ (ZtY / (g + a * g.sum() / d)[:, None])
            out[(req, a)] = (mx.astype(np.float32), (V @ Wz).astype(np.float32), my.astype(np.float32))
    return out


def linear_head(mean: np.ndarray, W: np.ndarray, shift: np.ndarray | None = None):
    """A :func:`facerec.embed.build_head` model computing ``l2((x - mean) @ W + shift)`` exactly.

    The projection goes into the dense layer; the BatchNorm layer is set to
    subtract ``mean @ W - shift`` and divide by 1 (moving variance ``1 - epsilon``).
    """
    head = build_head(W.shape[0], W.shape[1])
    head.get_layer("head_dense").set_weights([W.astype(np.float32)])
    bn = head.get_layer("head_bn")
    var = np.full(W.shape[1], 1.0 - bn.epsilon, dtype=np.float32)
    centre = mean @ W - (0 if shift is None else shift)
    bn.set_weights([np.ones(W.shape[1], np.float32), np.zeros(W.shape[1], np.float32),
                    centre.astype(np.float32), var])
    return head


@dataclass(frozen=True)
class TrainReport:
    """What training measured on held-out people (k=3 open-set protocol, mean over folds)."""

    people: int
    photos: int
    base_only: dict
    with_head: dict
    threshold: float
    base_threshold: float
    folds: int


def _mean_result(results: Sequence) -> dict:
    """Field-wise mean of several :class:`facerec.evaluate.OpenSetResult` (counts summed)."""
    dicts = [r.to_dict() for r in results]
    return {k: (sum(d[k] for d in dicts) if isinstance(dicts[0][k], int) else
                float(np.mean([d[k] for d in dicts]))) for k in dicts[0]}


def train_head(feats: np.ndarray, labels: Sequence[str], valid: np.ndarray, backbone: Backbone, out_stem: Path,
               epochs: int = 40, dim: int | None = None, lr: float = 1e-2, folds: int | None = None, seed: int = 0,
               trained_on: str = "", command: str = "", verbose: int = 0, method: str | None = None,
               pca_dim: int | None = None, teacher: np.ndarray | None = None,
               teacher_name: str = "") -> TrainReport:
    """Train, measure and save a head.

    The people with 2+ photos are split into ``folds`` groups. For each group a head is
    fitted on the others and measured on that group plus everyone with one photo (k=3
    open set; ``"distill"``, fitted on every face: everyone is split into the groups, see
    :data:`DISTILL_FOLDS`). Each group needs someone with 4+ photos to enrol.
    Where a method has options (``"distill"``: :data:`DISTILL_STRENGTHS`), the one with
    the best mean held-out overall is kept. The head's stranger curve (its threshold for
    a gallery of any size, :class:`facerec.thresholds.StrangerCurve`) is the mean of the
    groups' curves, its fixed threshold the curve's for this data's people
    (:func:`_reference_threshold`). The saved head is then fitted on everyone.

    Args:
        feats: ``(N, V, F)`` base features (view 0 unaugmented, view 1 mirrored).
        labels: person per photo.
        valid: ``(N,)`` bool, False where no face was found.
        backbone: the base the features came from.
        out_stem: the head is written to ``out_stem.weights.h5`` + ``out_stem.json``.
        epochs: passes over the training features (at least 800 steps are run).
        dim: identity vector length (default: the backbone's ``head_dim``; ``"distill"``:
            the teacher's, always).
        folds: groups of people for measuring and calibrating (>= 2; default 2, and
            :data:`DISTILL_FOLDS` for ``"distill"``, fewer with under 20 people with 2+ photos).
        method: ``"cosface"`` (trained, ``epochs``/``lr`` apply), ``"lda"`` (closed
            form over every view) or ``"distill"`` (closed form, needs ``teacher``);
            default: the backbone's ``head_method``.
        pca_dim: PCA dimensions kept before LDA (default: the backbone's ``lda_pca``).
        teacher: ``"distill"`` only: ``(N, V', D)`` the teacher's unit vectors of the
            same faces, view for view (views past ``min(V, V')`` are not used).
        teacher_name: the teacher's name, recorded with the head.
    """
    labels, valid = np.asarray(labels), np.asarray(valid, dtype=bool)
    method = method or backbone.head_method
    people, counts = np.unique(labels[valid], return_counts=True)
    multi = people[counts >= 2]
    folds = folds or (min(DISTILL_FOLDS, max(2, len(multi) // 2)) if method == "distill" else 2)
    if len(multi) < 2 * max(folds, 2):
        raise FaceRecError(f"too little training data: need at least {2 * max(folds, 2)} people with 2+ photos "
                           "each with a face")
    if method not in ("lda", "cosface", "distill"):
        raise FaceRecError(f"unknown head method {method!r}; choose cosface, lda or distill")
    if method == "distill":
        if teacher is None or teacher.shape[0] != feats.shape[0]:
            raise FaceRecError("a distilled head needs the teacher's vectors of the same faces")
        n_views = min(feats.shape[1], teacher.shape[1])
        feats, teacher = feats[:, :n_views], teacher[:, :n_views]
        dim = teacher.shape[2]
    dim = dim or backbone.head_dim
    group = _groups(people if method == "distill" else multi, people[counts > 3], folds, seed)
    n_views = feats.shape[1]

    def fit(mask: np.ndarray, strengths: Sequence[float] = DISTILL_STRENGTHS) -> dict:
        """The heads fitted on the rows in ``mask``, one per option of the method."""
        if method == "distill":
            return {a: linear_head(*m) for (_, a), m in fit_distill(feats[mask], teacher[mask], strengths).items()}
        classes, y = np.unique(labels[mask], return_inverse=True)
        X, ys = feats[mask].reshape(-1, feats.shape[2]), np.repeat(y, n_views)
        if method == "lda":
            return {None: linear_head(*fit_lda(X, ys, pca_dim or backbone.lda_pca, dim, backbone.lda_shrink))}
        import keras

        keras.utils.set_random_seed(seed)
        return {None: _train_cosface(X, ys, len(classes), dim, epochs, lr, verbose)}

    # measured as the product embeds: mirror-averaged where the backbone flips by default
    views = [0, 1] if backbone.flip and n_views >= 2 else [0]

    def vectors(project, mask: np.ndarray) -> np.ndarray:
        return l2_normalize(sum(l2_normalize(project(feats[mask, v])) for v in views))

    base_runs, head_runs, held_out = [], {}, {}
    for g in range(folds):
        tr = valid & np.array([group.get(lab, g) != g for lab in labels])
        va = valid & ~tr
        base_runs.append(evaluate_open_set(vectors(lambda x: x, va), labels[va], k=3))
        for option, head in fit(tr).items():
            X = vectors(lambda x: _project(head, x), va)
            head_runs.setdefault(option, []).append(evaluate_open_set(X, labels[va], k=3))
            held_out.setdefault(option, []).append((X, labels[va]))
    option = max(head_runs, key=lambda o: np.mean([r.overall for r in head_runs[o]]))
    base_res, head_res = _mean_result(base_runs), _mean_result(head_runs[option])
    everyone = valid if method == "distill" else valid & np.isin(labels, multi)
    head = fit(everyone, [option])[option]
    metrics = {"method": method, "folds": folds, "base_only": base_res, "with_head": head_res}
    if method == "distill":
        metrics.update(teacher=teacher_name, ridge_strength=option, faces_fitted=int(everyone.sum()),
                       views=n_views, options={str(o): round(float(np.mean([r.overall for r in rs])), 4)
                                               for o, rs in head_runs.items()})
    curve = _mean_curve(held_out[option])
    threshold = _reference_threshold(curve, labels[valid])
    info = HeadInfo(backbone=backbone.name, in_dim=int(feats.shape[2]), out_dim=int(head.output_shape[-1]),
                    threshold=threshold, trained_on=trained_on, command=command, metrics=metrics,
                    stranger_curve=curve)
    save_head(head, info, out_stem)
    return TrainReport(len(multi), int(everyone.sum()), base_res, head_res, threshold, base_res["threshold"], folds)


def _groups(grouped: np.ndarray, enrollable: np.ndarray, folds: int, seed: int) -> dict:
    """Each of the ``grouped`` people's cross-fitting group (a seeded deal into ``folds``).

    Raises:
        FaceRecError: a group has none of the ``enrollable`` people (4+ photos: 3 to enrol, 1 to find).
    """
    group = dict(zip(np.random.default_rng(seed).permutation(grouped), np.arange(len(grouped)) % folds))
    if len({group[p] for p in enrollable if p in group}) < folds:
        raise FaceRecError(f"too little training data: each of the {folds} groups of people the head is measured "
                           f"on needs someone with 4+ photos with a face (3 to enrol, 1 to find); this data has "
                           f"{len(enrollable)} such people")
    return group


def _reference_threshold(curve: dict, labels: np.ndarray) -> float:
    """A head's fixed threshold, defined as a base's own is: the score naming 5% of strangers with
    the training people enrolled k=3 (everyone with more than 3 photos, with 3), here read off
    the head's stranger curve. (The held-out groups' own 5% points, in the metrics, belong to
    galleries a tenth or half that size.)"""
    from facerec.thresholds import StrangerCurve

    _, counts = np.unique(labels, return_counts=True)
    gallery = [3] * max(int((counts > 3).sum()), 1)
    return StrangerCurve.from_dict({**curve, "strangers_named": 0.05}).threshold(gallery)


def _project(head, X: np.ndarray, batch: int = 1024) -> np.ndarray:
    """A head's vectors of ``(N, F)`` features, ``(N, D)`` float32: called directly, batch by batch
    (``predict`` traces a function per head, and TensorFlow warns of it after a few heads)."""
    return np.concatenate([np.asarray(head(X[i:i + batch], training=False)) for i in range(0, len(X), batch)])


def _mean_curve(held_out: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict:
    """The mean of the :func:`facerec.evaluate.stranger_curve` of each ``(vectors, labels)`` group
    of held-out people, as a :class:`facerec.thresholds.StrangerCurve` dict."""
    curves = [stranger_curve(X, y, np.ones(len(y), bool), CURVE_GRID) for X, y in held_out]
    survival = np.mean([c.survival for c in curves], axis=0)
    return curves[0].to_dict() | {"survival": [[float(f"{v:.4g}") for v in row] for row in survival]}


def _train_cosface(Xtr: np.ndarray, ytr: np.ndarray, n_classes: int, dim: int, epochs: int, lr: float,
                   verbose: int):
    """A :func:`facerec.embed.build_head` trained with a CosFace loss on ``(M, F)`` features."""
    import keras

    head = build_head(Xtr.shape[1], dim)
    CosFace = _cosface_layer()
    f_in = keras.Input((Xtr.shape[1],))
    y_in = keras.Input((1,), dtype="int32")
    logits = CosFace(n_classes, name="cosface")([head(f_in), y_in])
    model = keras.Model([f_in, y_in], logits)
    batch = 128
    per_epoch = int(np.ceil(len(Xtr) / batch))
    epochs = max(epochs, int(np.ceil(800 / per_epoch)))
    sched = keras.optimizers.schedules.CosineDecay(lr, per_epoch * epochs)
    model.compile(optimizer=keras.optimizers.AdamW(sched, weight_decay=1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit([Xtr, ytr], ytr, batch_size=batch, epochs=epochs, shuffle=True, verbose=verbose)
    return head
