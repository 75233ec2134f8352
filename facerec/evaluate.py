"""Open-set identification and LFW-style verification benchmarks.

The open-set protocol treats the product as a user would: for each person
with more than ``k`` photos, ``k`` are enrolled and the rest are probes that
must be named; people with ``k`` photos or fewer are strangers whose every
photo must come back ``unknown``.
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
    enrol = enrol[valid[enrol]]
    matcher = CosineMatcher(threshold=0.0, rule=rule).fit(X[enrol], labels[enrol])
    ok = valid[probe]
    pred = np.full(len(probe), "", dtype=object)
    score = np.zeros(len(probe))
    if ok.any():
        matches = matcher.match(X[probe[ok]])
        pred[ok] = [m.name for m in matches]
        score[ok] = [m.score for m in matches]
    return pred, score, labels[probe], known


def open_set_metrics(pred, score, truth, known, threshold: float, detection_failures: int = 0,
                     enrolled_people: int = 0) -> OpenSetResult:
    """Metrics at one threshold from :func:`open_set_scores`' output.

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
        overall=float(np.mean(correct)) if len(correct) else 0.0, threshold=float(threshold),
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

    from facerec.align import face_crop
    from facerec.embed import load_embedder
    from facerec.images import load_image

    embedder = load_embedder(settings, use_head=use_head)
    X = np.zeros((len(paths), embedder.dim), dtype=np.float32)
    todo = [i for i, f in enumerate(faces) if f is not None]
    chunks = [todo[i:i + 64] for i in range(0, len(todo), 64)]
    t0 = time.perf_counter()
    for chunk in (progress(chunks) if progress else chunks):
        crops = np.stack([face_crop(load_image(paths[i]), faces[i].box, faces[i].landmarks,
                                    embedder.input_size, embedder.backbone.zoom) for i in chunk])
        X[chunk] = embedder.embed(crops, flip=settings.flip, batch_size=settings.batch_size)
    return X, embedder, time.perf_counter() - t0


def run_eval(settings, data_dir: Path, k: int = 3, pairs: Path | None = None, split: str = "all",
             use_head: bool | None = None, progress=None) -> tuple[str, dict]:
    """``facerec eval``: the open-set protocol (and optional pairs) on a labelled folder.

    Returns:
        ``(label, results)`` where ``label`` names the base and head.
    """
    from facerec.detect import make_detector
    from facerec.train import detect_dataset, labelled_photos

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


__all__ = [
    "OpenSetResult", "split_protocol", "open_set_scores", "open_set_metrics", "evaluate_open_set",
    "read_pairs", "verification_accuracy", "format_table", "run_eval", "embed_dataset", "UNKNOWN",
]
