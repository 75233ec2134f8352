"""Open-set identification and LFW-style verification benchmarks.

The open-set protocol treats the product as a user would: for each person
with more than ``k`` photos, ``k`` are enrolled and the rest are probes that
must be named; people with ``k`` photos or fewer are strangers whose every
photo must come back ``unknown``.

On a set where everyone has several photos (celeba_dev) strangers come from
folds over the people instead (:func:`evaluate_folds`): each fold's people are
strangers while everyone else is enrolled, and the folds rotate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from facerec.classify import CosineMatcher, calibrate_threshold
from facerec.types import UNKNOWN


@dataclass(frozen=True)
class OpenSetResult:
    """Open-set identification metrics (fractions in [0, 1])."""

    rank1: float
    named_right: float
    strangers_named: float
    overall: float
    threshold: float
    enrolled_people: int
    enrolled_probes: int
    stranger_probes: int
    detection_failures: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def split_protocol(labels: Sequence[str], k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Choose enrolment and probe photos.

    Args:
        labels: person of each photo.
        k: photos enrolled per person; people with ``<= k`` photos are strangers.
        seed: which ``k`` photos are enrolled (seeded shuffle).

    Returns:
        ``(enrol_idx, probe_idx, probe_known)``: indices into ``labels`` and,
        per probe, whether its person is enrolled.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    enrol, probe, known = [], [], []
    for person in np.unique(labels):
        idx = np.flatnonzero(labels == person)
        if len(idx) > k:
            idx = rng.permutation(idx)
            enrol += list(idx[:k])
            probe += list(idx[k:])
            known += [True] * (len(idx) - k)
        else:
            probe += list(idx)
            known += [False] * len(idx)
    return np.array(enrol, dtype=int), np.array(probe, dtype=int), np.array(known, dtype=bool)


def open_set_scores(X: np.ndarray, labels: Sequence[str], k: int = 3, seed: int = 0,
                    valid: np.ndarray | None = None,
                    rule: str = "centroid") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best match per probe under the protocol, before any threshold.

    Args:
        X: ``(N, D)`` vectors (rows for failed detections may be anything).
        labels: person of each row.
        valid: ``(N,)`` bool, False where detection failed: such enrol photos
            are skipped and such probes count as wrong.
        rule: the :class:`~facerec.classify.CosineMatcher` scoring rule.

    Returns:
        ``(pred, score, truth, known)`` per probe: predicted person (or ``""``
        for a failed probe), its score in [0, 1], the true person, and whether
        the true person is enrolled.
    """
    labels = np.asarray(labels)
    valid = np.ones(len(labels), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    enrol, probe, known = split_protocol(labels, k, seed)
    pred, score = _best_matches(X, labels, valid, enrol, probe, rule)
    return pred, score, labels[probe], known


def _best_matches(X: np.ndarray, labels: np.ndarray, valid: np.ndarray, enrol: np.ndarray, probe: np.ndarray,
                  rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Fit the matcher on the valid ``enrol`` rows; ``(pred, score)`` per ``probe`` row, before any
    threshold (``""`` and 0 for a probe whose detection failed)."""
    enrol = enrol[valid[enrol]]
    matcher = CosineMatcher(threshold=0.0, rule=rule).fit(X[enrol], labels[enrol])
    ok = valid[probe]
    pred = np.full(len(probe), "", dtype=object)
    score = np.zeros(len(probe))
    if ok.any():
        matches = matcher.match(X[probe[ok]])
        pred[ok] = [m.name for m in matches]
        score[ok] = [m.score for m in matches]
    return pred, score


def open_set_metrics(pred, score, truth, known, threshold, detection_failures: int = 0,
                     enrolled_people: int = 0) -> OpenSetResult:
    """Metrics at one threshold from :func:`open_set_scores`' output (``threshold``: a number,
    or one per probe, as a gallery-size-aware threshold gives; reported as their mean).

    A probe whose face was not found (``pred == ""``) is never named, and it
    counts as wrong in ``overall`` whether or not its person is enrolled.
    """
    named = (score >= threshold) & (pred != "")
    right_named = named & (pred == truth) & known
    rank1 = float(np.mean((pred == truth)[known])) if known.any() else 0.0
    named_right = float(np.mean(right_named[known])) if known.any() else 0.0
    strangers_named = float(np.mean(named[~known])) if (~known).any() else 0.0
    correct = right_named | (~known & ~named & (pred != ""))  # no face found: wrong for anyone
    return OpenSetResult(
        rank1=rank1, named_right=named_right, strangers_named=strangers_named,
        overall=float(np.mean(correct)) if len(correct) else 0.0, threshold=float(np.mean(threshold)),
        enrolled_people=enrolled_people, enrolled_probes=int(known.sum()),
        stranger_probes=int((~known).sum()), detection_failures=detection_failures,
    )


def evaluate_open_set(X, labels, k: int = 3, threshold: float | None = None, seed: int = 0,
                      valid=None, false_accept: float = 0.05, rule: str = "centroid") -> OpenSetResult:
    """Run the protocol; with ``threshold=None`` pick the one naming at most
    ``false_accept`` of strangers (an oracle: use it to calibrate, not to report).

    Calibrate on one half of the people (``facerec eval --split train``:
    ``oracle_threshold_5pct``) and report on the other (``--split test``).
    """
    pred, score, truth, known = open_set_scores(np.asarray(X), labels, k, seed, valid, rule)
    if threshold is None:
        threshold = calibrate_threshold(score[~known], false_accept) if (~known).any() else 0.0
    n_people = len({t for t, kn in zip(truth, known) if kn})
    failures = 0 if valid is None else int((~np.asarray(valid, dtype=bool)).sum())
    return open_set_metrics(pred, score, truth, known, threshold, failures, n_people)


def people_folds(labels: Sequence[str], folds: int = 4, seed: int = 0) -> list[np.ndarray]:
    """The people of ``labels`` shuffled (seeded) and cut into ``folds`` groups of near-equal size."""
    people = np.random.default_rng(seed).permutation(np.unique(np.asarray(labels)))
    return [people[f::folds] for f in range(folds)]


def fold_splits(labels: Sequence[str], k: int = 3, folds: int = 4, seeds: Sequence[int] = (0, 1, 2)):
    """The enrolments of the folds-over-people protocol, in order: ``(enrol, probe, known)``
    index arrays per (seed, fold). For each seed the people are cut into ``folds`` groups
    (:func:`people_folds`); for each group, its people are strangers (every photo a probe
    that must stay unknown) and every other person is enrolled with ``k`` photos (seeded
    choice), the rest of their photos being probes that must be named. Someone with ``k``
    photos or fewer is enrolled with all of them and has no probe in that fold (still a
    candidate that strangers and probes may be confused with)."""
    labels = np.asarray(labels)
    for seed in seeds:
        rng = np.random.default_rng(1000 + seed)
        for strangers in people_folds(labels, folds, seed):
            enrol, probe, known = [], [], []
            for person in np.unique(labels):
                idx = np.flatnonzero(labels == person)
                if person in strangers:
                    probe += list(idx)
                    known += [False] * len(idx)
                    continue
                idx = rng.permutation(idx)
                enrol += list(idx[:k])
                probe += list(idx[k:])
                known += [True] * len(idx[k:])
            yield np.array(enrol, dtype=int), np.array(probe, dtype=int), np.array(known, dtype=bool)


def gallery_threshold(curve, labels: np.ndarray, valid: np.ndarray, enrol: np.ndarray) -> float:
    """A :class:`~facerec.thresholds.StrangerCurve`'s threshold for the gallery that ``enrol``
    makes (photos whose face was not found are not enrolled)."""
    enrol = enrol[valid[enrol]]
    _, counts = np.unique(labels[enrol], return_counts=True)
    return curve.threshold(counts)


def folds_open_set_scores(X: np.ndarray, labels: Sequence[str], k: int = 3, folds: int = 4,
                          seeds: Sequence[int] = (0, 1, 2), valid: np.ndarray | None = None,
                          rule: str = "centroid", curve=None):
    """Best match per probe under the folds-over-people protocol (:func:`fold_splits`),
    pooled over folds and seeds. A photo whose face was not found is skipped for
    enrolment and counts as wrong as a probe.

    Returns:
        ``(pred, score, truth, known, enrolled_people)`` as :func:`open_set_scores`,
        pooled; ``enrolled_people`` is the mean number of people enrolled per fold. With a
        ``curve`` (:class:`~facerec.thresholds.StrangerCurve`), a sixth element: each
        probe's gallery-size-aware threshold (its fold's gallery).
    """
    labels = np.asarray(labels)
    valid = np.ones(len(labels), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    preds, scores, truths, knowns, enrolled, thresholds = [], [], [], [], [], []
    for enrol, probe, known in fold_splits(labels, k, folds, seeds):
        enrolled.append(len(set(labels[enrol[valid[enrol]]])))
        pred, score = _best_matches(X, labels, valid, enrol, probe, rule)
        preds.append(pred)
        scores.append(score)
        truths.append(labels[probe])
        knowns.append(known)
        if curve is not None:
            thresholds.append(np.full(len(probe), gallery_threshold(curve, labels, valid, enrol)))
    out = (np.concatenate(preds), np.concatenate(scores), np.concatenate(truths), np.concatenate(knowns),
           int(round(float(np.mean(enrolled)))))
    return out + (np.concatenate(thresholds),) if curve is not None else out


def evaluate_folds(X, labels, k: int = 3, threshold: float | None = None, folds: int = 4,
                   seeds: Sequence[int] = (0, 1, 2), valid=None, false_accept: float = 0.05,
                   rule: str = "centroid") -> OpenSetResult:
    """:func:`folds_open_set_scores` at one threshold (``None``: the oracle naming at most
    ``false_accept`` of strangers, for calibration only). Probe counts are pooled over
    folds and seeds; ``detection_failures`` counts photos, once."""
    pred, score, truth, known, people = folds_open_set_scores(np.asarray(X), labels, k, folds, seeds, valid, rule)
    if threshold is None:
        threshold = calibrate_threshold(score[~known], false_accept)
    failures = 0 if valid is None else int((~np.asarray(valid, dtype=bool)).sum())
    return open_set_metrics(pred, score, truth, known, threshold, failures, people)


def stranger_curve(X: np.ndarray, labels: Sequence[str], valid: np.ndarray, grid: np.ndarray, max_k: int = 5,
                   strangers_named: float = 0.02, seed: int = 0):
    """Calibrate a :class:`~facerec.thresholds.StrangerCurve` on labelled vectors (the shipped
    ones: lfw_dev's train half, so no benchmark person is in it).

    For each ``k`` in ``1..max_k``, everyone with at least ``k`` detected photos is enrolled
    with ``k`` of them (seeded choice; centroid rule, as :class:`CosineMatcher`), and every
    detected photo of *another* person is scored against them: ``survival[k - 1][j]`` is the
    fraction of those pairs scoring ``>= grid[j]``.
    """
    from facerec.classify import cosine_to_score
    from facerec.thresholds import StrangerCurve
    from facerec.embed import l2_normalize

    labels = np.asarray(labels)
    good = np.flatnonzero(np.asarray(valid, dtype=bool))
    rng = np.random.default_rng(seed)
    people, owner = np.unique(labels[good], return_inverse=True)
    photos = {p: good[owner == i] for i, p in enumerate(people)}
    grid = np.asarray(grid, dtype=np.float64)
    rows = []
    for k in range(1, max_k + 1):
        ids = [i for i, p in enumerate(people) if len(photos[p]) >= k]
        if not ids:  # nobody has k photos: the row for fewer stands in (more photos only raise scores' spread)
            rows.append(rows[-1] if rows else tuple(0.0 for _ in grid))
            continue
        C = l2_normalize(np.stack([X[rng.permutation(photos[people[i]])[:k]].sum(axis=0) for i in ids]))
        ids = np.asarray(ids)
        above = np.zeros(len(grid))
        pairs = 0
        for s in range(0, len(good), 512):
            scores = cosine_to_score(l2_normalize(X[good[s:s + 512]]) @ C.T)
            v = np.sort(scores[owner[s:s + 512, None] != ids[None, :]])
            pairs += v.size
            above += v.size - np.searchsorted(v, grid, side="left")
        rows.append(tuple(float(f"{a / pairs:.4g}") for a in above))
    return StrangerCurve(tuple(float(g) for g in grid), tuple(rows), strangers_named)


def best_overall(pred, score, truth, known) -> tuple[float, float]:
    """``(overall, threshold)`` at the threshold that maximises overall accuracy (an oracle)."""
    cands = np.unique(np.concatenate([score, [0.0, 1.0 + 1e-9]]))
    best = max(((open_set_metrics(pred, score, truth, known, t).overall, t) for t in cands), key=lambda r: r[0])
    return float(best[0]), float(best[1])


def read_pairs(path: Path) -> list[tuple[str, int, str, int, bool]]:
    """LFW-format pairs: ``name i j`` (same person) or ``name1 i name2 j`` (different).

    A first line with one or two numbers (LFW's header) is skipped.
    """
    out = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            out.append((parts[0], int(parts[1]), parts[0], int(parts[2]), True))
        elif len(parts) == 4:
            out.append((parts[0], int(parts[1]), parts[2], int(parts[3]), False))
    return out


def verification_accuracy(sims: np.ndarray, same: np.ndarray, folds: int = 10) -> tuple[float, float, float]:
    """LFW's 10-fold verification accuracy.

    The pairs are cut into ``folds`` contiguous blocks (as LFW's file is laid
    out); for each block, the threshold that maximises accuracy on the other
    blocks (the middle of the best range) is applied to it.

    Returns:
        ``(mean accuracy, std, mean threshold)``.
    """
    sims = np.asarray(sims, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    idx = np.arange(len(sims))
    fold_of = idx * folds // len(sims)
    u = np.unique(sims)
    cands = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2, [u[-1] + 1e-6]])
    accs, ths = [], []
    for f in range(folds):
        train = fold_of != f
        s, y = sims[train], same[train]
        acc = np.array([np.mean((s >= t) == y) for t in cands])
        t = float(np.median(cands[acc == acc.max()]))
        test = ~train
        accs.append(np.mean((sims[test] >= t) == same[test]))
        ths.append(t)
    return float(np.mean(accs)), float(np.std(accs)), float(np.mean(ths))


def format_table(rows: Iterable[tuple[str, dict]]) -> str:
    """A short plain-text table of eval results, one row per backbone."""
    cols = [("rank1", "rank-1"), ("named_right", "named right"), ("strangers_named", "strangers named"),
            ("overall", "overall"), ("threshold", "threshold"), ("detection_failures", "no face"),
            ("verification", "LFW pairs")]
    rows = list(rows)
    width = max([len("backbone")] + [len(name) for name, _ in rows]) + 2
    head = f"{'backbone':<{width}}" + "".join(f"{c[1]:>16}" for c in cols)
    lines = [head]
    for name, r in rows:
        cells = []
        for key, _ in cols:
            v = r.get(key)
            if v is None:
                cells.append(f"{'-':>16}")
            elif key in ("threshold",):
                cells.append(f"{v:>16.4f}")
            elif isinstance(v, int):
                cells.append(f"{v:>16d}")
            else:
                cells.append(f"{100 * v:>15.1f}%")
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)


def embed_dataset(settings, paths, faces, use_head: bool | None = None, progress=None):
    """Identity vectors for each photo's detected face (zeros where none).

    Returns:
        ``(X, embedder, seconds)``: ``(N, D)`` float32 vectors, the embedder, and
        the time spent aligning and embedding.
    """
    import time

    from facerec.embed import load_embedder
    from facerec.facepath import FacePath, Models
    from facerec.images import load_image

    embedder = load_embedder(settings, use_head=use_head)
    path = FacePath(settings, Models(settings, embedder=embedder))
    X = np.zeros((len(paths), embedder.dim), dtype=np.float32)
    todo = [i for i, f in enumerate(faces) if f is not None]
    chunks = [todo[i:i + 64] for i in range(0, len(todo), 64)]
    t0 = time.perf_counter()
    for chunk in (progress(chunks) if progress else chunks):
        crops = np.concatenate([path.crops(load_image(paths[i]), [faces[i]]) for i in chunk])
        X[chunk] = path.embed_crops(crops)
    return X, embedder, time.perf_counter() - t0


def run_eval(settings, data_dir: Path, k: int = 3, pairs: Path | None = None, split: str = "all",
             use_head: bool | None = None, progress=None) -> tuple[str, dict]:
    """``facerec eval``: the open-set protocol (and optional pairs) on a labelled folder.

    Returns:
        ``(label, results)`` where ``label`` names the base and head.
    """
    from facerec.detect import make_detector
    from facerec.datasets import detect_dataset, labelled_photos

    photos = labelled_photos(Path(data_dir), split=split)
    paths = [p for p, _ in photos]
    labels = np.array([n for _, n in photos])
    wrap = progress or (lambda desc: None)
    faces = detect_dataset(paths, make_detector(settings), settings.cache_dir, wrap("detecting"))
    valid = np.array([f is not None for f in faces])
    X, embedder, secs = embed_dataset(settings, paths, faces, use_head, wrap("embedding"))
    threshold = embedder.threshold if settings.threshold is None else settings.threshold
    res = evaluate_open_set(X, labels, k=k, threshold=threshold, valid=valid).to_dict()
    best = evaluate_open_set(X, labels, k=k, threshold=None, valid=valid)
    res["oracle_threshold_5pct"] = best.threshold
    res["photos"] = len(paths)
    res["faces_per_second_embedding"] = round(float(valid.sum()) / max(secs, 1e-9), 1)
    if pairs:
        index = {(lab, int(p.stem.rsplit("_", 1)[-1])): i for i, (p, lab) in enumerate(zip(paths, labels))
                 if p.stem.rsplit("_", 1)[-1].isdigit()}
        sims, same = [], []
        for a, i, b, j, is_same in read_pairs(Path(pairs)):
            ia, ib = index.get((a, i)), index.get((b, j))
            if ia is None or ib is None:
                continue
            ok = valid[ia] and valid[ib]
            sims.append(float(X[ia] @ X[ib]) if ok else -1.0)
            same.append(is_same)
        if sims:
            acc, std, th = verification_accuracy(np.array(sims), np.array(same))
            res.update(verification=acc, verification_std=std, verification_pairs=len(sims))
    label = f"{settings.backbone}+{'head ' + embedder.head_id if embedder.head_id != 'none' else 'no head'}"
    return label, res


def embed_views(bases: Sequence[str], paths, faces, settings=None, chunk: int = 128, progress=None):
    """Each face's vector from several bases, plain and of its mirror image, each photo
    decoded once. ``"name"`` is the base alone, ``"name+head"`` the base with its shipped head.

    Returns:
        ``{base: (plain, mirror, seconds)}``: ``(N, D)`` unit vectors (zeros where no face
        was found) and the seconds spent aligning and embedding for that base (both passes).
        ``l2_normalize(plain + mirror)`` is the base's ``--flip`` vector.
    """
    import time

    from facerec.embed import load_embedder
    from facerec.facepath import FacePath, Models
    from facerec.images import load_image
    from facerec.settings import Settings

    settings = settings or Settings()
    embedders = {b: load_embedder(settings.replace(backbone=b.split("+")[0]), use_head=b.endswith("+head"))
                 for b in bases}
    paths_of = {b: FacePath(settings, Models(settings, embedder=e)) for b, e in embedders.items()}
    out = {b: [np.zeros((len(paths), e.dim), np.float32), np.zeros((len(paths), e.dim), np.float32), 0.0]
           for b, e in embedders.items()}
    todo = [i for i, f in enumerate(faces) if f is not None]
    chunks = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
    for part in (progress(chunks) if progress else chunks):
        images = {i: load_image(paths[i]) for i in part}
        for b, e in embedders.items():
            t0 = time.perf_counter()
            crops = np.concatenate([paths_of[b].crops(images[i], [faces[i]]) for i in part])
            out[b][0][part] = e.embed(crops, flip=False)
            out[b][1][part] = e.embed(np.ascontiguousarray(crops[:, :, ::-1]), flip=False)
            out[b][2] += time.perf_counter() - t0
    return {b: tuple(v) for b, v in out.items()}


def _protocol_report(pred, score, truth, known, threshold: float, failures: int, people: int,
                     threshold_3pct: float | None = None) -> dict:
    """Metrics at ``threshold`` plus the threshold-free and oracle figures beside them
    (and the main ones at ``threshold_3pct``, when given)."""
    from facerec.classify import calibrate_threshold

    res = open_set_metrics(pred, score, truth, known, threshold, failures, people).to_dict()
    if threshold_3pct is not None:
        r3 = open_set_metrics(pred, score, truth, known, threshold_3pct, failures, people).to_dict()
        res["at_3pct_calibration"] = {key: r3[key]
                                      for key in ("threshold", "named_right", "strangers_named", "overall")}
    res["best_overall"], res["best_overall_threshold"] = best_overall(pred, score, truth, known)
    t1 = calibrate_threshold(score[~known], 0.01)
    res["named_right_at_1pct_strangers"] = open_set_metrics(pred, score, truth, known, t1).named_right
    res["oracle_threshold_5pct"] = calibrate_threshold(score[~known], 0.05)
    res["oracle_threshold_3pct"] = calibrate_threshold(score[~known], 0.03)
    return res


def compare_bases(shared: Path, bases: Sequence[str] = ("face-resnet", "mobilefacenet"), ks: Sequence[int] = (1, 3, 5),
                  folds: int = 4, seeds: Sequence[int] = (0, 1, 2), settings=None, progress=None) -> dict:
    """Each base, plain and mirror-averaged, at its calibrated threshold, on lfw_dev's test half
    (:func:`evaluate_open_set`) and celeba_dev (:func:`evaluate_folds`), for each ``k``.

    The threshold of each (base, flip) is calibrated as the shipped ones are: the score naming
    5% of strangers on lfw_dev's *train* half at k=3, rounded up to 4 decimals. The registry's
    own value for the base's default flip setting is reported beside it (``registry_threshold``),
    and each protocol also at the threshold calibrated the same way for 3% of strangers
    (``at_3pct_calibration``) and, for a base's default flip setting with a shipped stranger
    curve, at the gallery-size-aware threshold the product uses (``at_gallery_threshold``:
    each fold's own, from its enrolled people's photo counts). ``"name+head"`` entries use the
    base's shipped head (trained on lfw_dev's train half) at the head's own threshold and, where
    the head carries one, its stranger curve, mirror-averaged where the base is by default.
    """
    import math

    from facerec.detect import make_detector
    from facerec.embed import get_backbone, l2_normalize, read_head_info, shipped_head
    from facerec.settings import Settings
    from facerec.thresholds import head_curve, stranger_curve as stranger_curve_of
    from facerec.datasets import detect_dataset, labelled_photos, person_split

    settings = settings or Settings()
    wrap = progress or (lambda desc: None)
    detector = make_detector(settings)
    data = {}
    for name in ("lfw_dev", "celeba_dev"):
        photos = labelled_photos(Path(shared) / name)
        paths = [p for p, _ in photos]
        faces = detect_dataset(paths, detector, settings.cache_dir, wrap(f"detecting {name}"))
        data[name] = (paths, np.array([n for _, n in photos]), faces, np.array([f is not None for f in faces]),
                      embed_views(bases, paths, faces, settings, progress=wrap(f"embedding {name}")))
    lfw_paths, lfw_labels, _, lfw_valid, lfw_vecs = data["lfw_dev"]
    train = np.array([person_split(n) == "train" for n in lfw_labels])
    results: dict = {}
    for base in bases:
        head = base.endswith("+head")
        backbone = get_backbone(base.split("+")[0])
        for flip in ((backbone.flip,) if head else (False, True)):
            label = base + ("+flip" if flip else "")

            def vectors(views):
                return l2_normalize(views[0] + views[1]) if flip else views[0]

            X = vectors(lfw_vecs[base])
            cal = evaluate_open_set(X[train], lfw_labels[train], k=3, valid=lfw_valid[train])
            cal3 = evaluate_open_set(X[train], lfw_labels[train], k=3, valid=lfw_valid[train], false_accept=0.03)
            calibrated = math.ceil(cal.threshold * 1e4) / 1e4
            calibrated3 = math.ceil(cal3.threshold * 1e4) / 1e4
            registry = backbone.threshold if flip == backbone.flip and not head else None
            threshold = calibrated
            if head:  # trained on the calibration half: the head's own (cross-fitted) threshold
                threshold = float(read_head_info(shipped_head(backbone.name)).threshold)
            n_faces = int(lfw_valid.sum() + data["celeba_dev"][3].sum())
            secs = lfw_vecs[base][2] + data["celeba_dev"][4][base][2]  # both passes, plain and mirrored
            row = {"threshold": threshold, "calibrated_threshold": calibrated, "registry_threshold": registry,
                   "calibrated_threshold_3pct": calibrated3,
                   "calibration": {"set": "lfw_dev train half", "k": 3, "strangers_named": 0.05,
                                   "oracle_threshold": cal.threshold, "oracle_threshold_3pct": cal3.threshold},
                   "faces_per_second": round(n_faces * (1 if flip else 2) / secs, 1)}
            Xt, yt, vt = X[~train], lfw_labels[~train], lfw_valid[~train]
            _, cy, _, cv, cvecs = data["celeba_dev"]
            Xc = vectors(cvecs[base])
            curve = stranger_curve_of(backbone.name) if registry is not None else None
            if head:  # the head's own curve, from the people it was not fitted on
                curve = head_curve(shipped_head(backbone.name))

            def at_gallery(report: dict, pred, score, truth, known, thresholds, failures, people) -> None:
                r = open_set_metrics(pred, score, truth, known, thresholds, failures, people).to_dict()
                report["at_gallery_threshold"] = {key: r[key] for key in
                                                  ("threshold", "named_right", "strangers_named", "overall")}

            for k in ks:
                pred, score, truth, known = open_set_scores(Xt, yt, k, 0, vt)
                people = len({t for t, kn in zip(truth, known) if kn})
                row[f"lfw_test_k{k}"] = _protocol_report(pred, score, truth, known, threshold, int((~vt).sum()),
                                                         people, calibrated3)
                if curve is not None:
                    t = gallery_threshold(curve, yt, vt, split_protocol(yt, k, 0)[0])
                    at_gallery(row[f"lfw_test_k{k}"], pred, score, truth, known, t, int((~vt).sum()), people)
            for k in ks:
                pred, score, truth, known, people, *t = folds_open_set_scores(Xc, cy, k, folds, seeds, cv, curve=curve)
                row[f"celeba_folds_k{k}"] = _protocol_report(pred, score, truth, known, threshold,
                                                             int((~cv).sum()), people, calibrated3)
                if curve is not None:
                    at_gallery(row[f"celeba_folds_k{k}"], pred, score, truth, known, t[0], int((~cv).sum()), people)
            results[label] = row
    return {"protocol": {"lfw_dev": "test half (person_split), open set: people with <= k photos are strangers, "
                                    "k enrolled per other person (seed 0), nearest centroid",
                         "celeba_dev": f"folds over people: {folds} folds x seeds {list(seeds)}; each fold's people "
                                       "are strangers, everyone else enrolled with k photos (all if <= k), "
                                       "probes pooled over folds and seeds, nearest centroid",
                         "detector": settings.detector, "photos": {n: len(d[0]) for n, d in data.items()},
                         "no_face": {n: int((~d[3]).sum()) for n, d in data.items()}},
            "results": results}


CURVE_GRIDS = {"face-resnet": (0.80, 1.0), "mobilefacenet": (0.20, 1.0)}
"""Where each base's match scores of strangers spread (lfw_dev), for its curve's grid."""


def _write_curves(shared: Path, bases: Sequence[str], out_dir: Path, argv, tail: float | None = None) -> int:
    """``--write-curves``: :func:`stranger_curve` of each base on lfw_dev's train half (with
    ``tail``, its far tail modelled: :meth:`facerec.thresholds.StrangerCurve.with_tail`)."""
    import json
    import sys

    from facerec.detect import make_detector
    from facerec.embed import get_backbone, l2_normalize
    from facerec.settings import Settings
    from facerec.datasets import detect_dataset, labelled_photos

    photos = labelled_photos(shared / "lfw_dev", split="train")
    paths, labels = [p for p, _ in photos], [n for _, n in photos]
    settings = Settings()
    faces = detect_dataset(paths, make_detector(settings), settings.cache_dir)
    valid = np.array([f is not None for f in faces])
    views = embed_views(bases, paths, faces, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    for base in bases:
        plain, mirror, _ = views[base]
        X = l2_normalize(plain + mirror) if get_backbone(base).flip else plain
        lo, hi = CURVE_GRIDS.get(base, (0.0, 1.0))
        curve = stranger_curve(X, labels, valid, np.round(np.arange(lo, hi, 0.0005), 4))
        curve = curve.with_tail(tail) if tail else curve
        doc = {"base": base, "data": "lfw_dev train half (facerec.datasets.person_split)",
               "photos": len(paths), "faces": int(valid.sum()),
               "command": "python -m facerec.evaluate " + " ".join(sys.argv[1:] if argv is None else argv),
               **curve.to_dict()}
        (out_dir / f"{base}.json").write_text(json.dumps(doc) + "\n")
        print(f"{base}: {out_dir / (base + '.json')}", file=sys.stderr)
    return 0


def _main(argv: Sequence[str] | None = None) -> int:
    """``python -m facerec.evaluate SHARED_FACES --json OUT``: :func:`compare_bases`."""
    import argparse
    import json
    import sys
    import time

    ap = argparse.ArgumentParser(prog="python -m facerec.evaluate", description=compare_bases.__doc__)
    ap.add_argument("shared", type=Path, help="folder holding lfw_dev/ and celeba_dev/")
    ap.add_argument("--bases", nargs="+", default=["face-resnet", "mobilefacenet"])
    ap.add_argument("-k", nargs="+", type=int, default=[1, 3, 5])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--json", type=Path, help="where to write the comparison")
    ap.add_argument("--detector", help="face detector (default: the product's)")
    ap.add_argument("--write-curves", type=Path, metavar="DIR",
                    help="instead, calibrate each base's stranger curve on lfw_dev's train half and write "
                         "DIR/<base>.json (the shipped ones: facerec/calibration)")
    ap.add_argument("--tail", type=float, metavar="Q",
                    help="with --write-curves: model each curve's tail above its Q quantile (e.g. 0.99) instead "
                         "of counting it, for calibration sets too small to count it (the shipped curves count)")
    args = ap.parse_args(argv)
    if args.tail is not None and not (0.0 < args.tail < 1.0 and args.write_curves):
        ap.error("--tail Q needs --write-curves and 0 < Q < 1")
    if args.write_curves:
        return _write_curves(args.shared, args.bases, args.write_curves, argv, args.tail)
    if args.json is None:
        ap.error("--json is required")
    t0 = time.time()
    from facerec.settings import Settings

    out = compare_bases(args.shared, args.bases, args.k, args.folds, args.seeds,
                        settings=Settings().replace(detector=args.detector))
    import facerec

    out["command"] = "python -m facerec.evaluate " + " ".join(sys.argv[1:] if argv is None else argv)
    out["facerec_version"] = facerec.__version__
    out["seconds"] = round(time.time() - t0, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    for label, row in out["results"].items():
        for key, r in row.items():
            if isinstance(r, dict) and "rank1" in r:
                print(f"{label:22s} {key:16s} rank-1 {100 * r['rank1']:5.1f}  overall {100 * r['overall']:5.1f}  "
                      f"strangers named {100 * r['strangers_named']:5.1f}  named {100 * r['named_right']:5.1f}  "
                      f"best overall {100 * r['best_overall']:5.1f}  @t={row['threshold']}", file=sys.stderr)
                g = r.get("at_gallery_threshold")
                if g:
                    print(f"{'':22s} {'':16s} gallery-size threshold (mean {g['threshold']:.4f}): overall "
                          f"{100 * g['overall']:5.1f}  strangers named {100 * g['strangers_named']:5.1f}  named "
                          f"{100 * g['named_right']:5.1f}", file=sys.stderr)
    return 0


__all__ = [
    "OpenSetResult", "split_protocol", "open_set_scores", "open_set_metrics", "evaluate_open_set",
    "people_folds", "folds_open_set_scores", "evaluate_folds", "best_overall",
    "read_pairs", "verification_accuracy", "format_table", "run_eval", "embed_dataset", "UNKNOWN",
]


if __name__ == "__main__":
    raise SystemExit(_main())
