"""Recognition thresholds that follow the gallery: stranger curves (issue 13).

Light on purpose (numpy only): the tagger decides the threshold of a cached run without
importing scikit-learn or TensorFlow. The curves ship in ``facerec/calibration/<base>.json``,
made by ``python -m facerec.evaluate SHARED --write-curves facerec/calibration``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class StrangerCurve:
    """How often a stranger's face scores at or above a threshold against one enrolled
    person, by how many photos that person has: the calibration of a gallery-size-aware
    threshold (issue 13; ``facerec/calibration/<base>.json``, made by
    :func:`facerec.evaluate.stranger_curve`).

    With one fixed threshold, the share of strangers given *some* name grows with the number
    of people enrolled (each is one more chance of a chance match): on lfw_dev's test half,
    face-resnet named 0.1% of strangers with 10 people enrolled and 3.8% with 590. Treating
    the people as independent chances, a stranger stays unnamed with probability
    ``prod_p (1 - survival[k_p](t))``; :meth:`threshold` picks the lowest ``t`` on the grid
    keeping that at ``1 - strangers_named`` or more. Small galleries get a lower threshold
    (more of their people named), large ones a higher one.

    Attributes:
        grid: ``(G,)`` ascending thresholds (match scores in [0, 1]).
        survival: one ``(G,)`` row per photo count ``k = 1..K``: the fraction of (stranger
            photo, person enrolled with ``k`` photos) pairs scoring ``>= grid[j]``; a person
            with more than ``K`` photos uses row ``K``.
        strangers_named: the share of strangers the threshold may name, whatever the gallery.
    """

    grid: tuple[float, ...]
    survival: tuple[tuple[float, ...], ...]
    strangers_named: float = 0.02

    def threshold(self, photos_per_person: Sequence[int]) -> float:
        """The threshold for a gallery whose people have these photo counts (``>= 1`` each)."""
        counts = np.asarray([c for c in photos_per_person if c > 0], dtype=int)
        if len(counts) == 0:
            raise ValueError("need at least one enrolled person")
        rows = np.asarray(self.survival, dtype=np.float64)
        per_k = np.bincount(np.minimum(counts, len(rows)) - 1, minlength=len(rows))
        log_unnamed = per_k @ np.log1p(-np.clip(rows, 0.0, 1.0 - 1e-12))  # (G,)
        ok = np.flatnonzero(log_unnamed >= np.log1p(-self.strangers_named))
        return float(self.grid[ok[0]]) if len(ok) else 1.0

    def with_tail(self, quantile: float = 0.99) -> "StrangerCurve":
        """This curve with each row's far tail modelled instead of counted: above ``u``, the
        score that ``1 - quantile`` of the pairs reach, the survival is taken as
        exponential, ``p_u * exp(-(t - u) / m)``, with ``m`` the pairs' mean excess over ``u``
        (peaks over a threshold, read off the measured row: ``m = integral of the row
        from u, / p_u``). A gallery's threshold lives in that tail (2% of strangers over
        hundreds of people is 1e-4 a pair), which a small calibration set cannot count: a
        curve from celeba_dev's 29 people named 5.4% of LFW's strangers (k=3, 216 people) as
        counted and 0.9% with the tail modelled (mobilefacenet; benchmarks/README.md, "One
        enrolment photo"). Rows whose grid does not reach ``u`` stay as they are."""
        grid = np.asarray(self.grid, dtype=np.float64)
        rows = []
        for row in np.asarray(self.survival, dtype=np.float64):
            above = np.flatnonzero(row <= 1.0 - quantile)
            i = int(above[0]) if len(above) else len(grid)
            if i == 0 or i >= len(grid) - 1 or row[i] <= 0:
                rows.append(tuple(float(v) for v in row))
                continue
            excess = float(np.sum((row[i:-1] + row[i + 1:]) / 2 * np.diff(grid[i:]))) / row[i]
            tail = row[i] * np.exp(-(grid[i:] - grid[i]) / max(excess, 1e-9))
            rows.append(tuple(float(f"{v:.4g}") for v in np.concatenate([row[:i], tail])))
        return StrangerCurve(self.grid, tuple(rows), self.strangers_named)

    def to_dict(self) -> dict:
        return {"grid": list(self.grid), "survival": [list(r) for r in self.survival],
                "strangers_named": self.strangers_named}

    @classmethod
    def from_dict(cls, doc: dict) -> "StrangerCurve":
        grid = tuple(float(g) for g in doc["grid"])
        survival = tuple(tuple(float(v) for v in row) for row in doc["survival"])
        values = np.asarray(survival, dtype=np.float64) if survival else np.zeros(0)
        if (not grid or not survival or any(len(r) != len(grid) for r in survival) or list(grid) != sorted(grid)
                or not np.all((values >= 0) & (values <= 1)) or not all(0.0 <= g <= 1.0 for g in grid)):
            raise ValueError("a stranger curve needs an ascending grid in [0, 1] and one survival row of "
                             "fractions per photo count")
        return cls(grid, survival, float(doc.get("strangers_named", 0.02)))


CALIBRATION_DIR = Path(__file__).parent / "calibration"


@lru_cache(maxsize=8)
def stranger_curve(base: str) -> StrangerCurve | None:
    """The shipped :class:`StrangerCurve` of a base's own features (``None`` when there is none;
    read once per process)."""
    path = CALIBRATION_DIR / f"{base}.json"
    if not path.is_file():
        return None
    return StrangerCurve.from_dict(json.loads(path.read_text()))


_HEAD_CURVES: dict[tuple[str, int], StrangerCurve | None] = {}


def head_curve(stem: Path) -> StrangerCurve | None:
    """The :class:`StrangerCurve` a head's description carries (``None``: it has none); read
    again only when the file changes."""
    from facerec.embed import head_paths, read_head_info

    from facerec.errors import ModelUnavailableError

    info = head_paths(stem)[1]
    try:
        st = info.stat()
    except OSError:
        read_head_info(stem)  # raises its clear error
        raise
    key = (str(info), st.st_mtime_ns, st.st_size, st.st_ino)
    if key not in _HEAD_CURVES:
        doc = read_head_info(stem).stranger_curve
        try:
            _HEAD_CURVES[key] = StrangerCurve.from_dict(doc) if doc else None
        except (KeyError, TypeError, ValueError) as e:
            raise ModelUnavailableError(f"head description {info}: its stranger_curve is malformed ({e}); train "
                                        "the head again with `facerec train-head` or pick another with --head") from e
    return _HEAD_CURVES[key]


def curve_for(settings) -> StrangerCurve | None:
    """The stranger curve of the settings' base, or of its head where one is used."""
    from facerec.embed import head_stem

    stem = head_stem(settings)
    return stranger_curve(settings.backbone) if stem is None else head_curve(stem)


def recognition_threshold(settings, names: Sequence[str] | None = None, fixed: float | None = None) -> float:
    """The threshold for a gallery: ``settings.threshold`` when set; else, where the base (or
    the head on it) has a :class:`StrangerCurve`, the curve's threshold for the gallery's
    photos per person (``names``: one per enrolled vector); else the base and head's fixed
    calibrated threshold. Reads no model.

    Args:
        fixed: the loaded embedder's own threshold, when known: an embedder built with
            another threshold than its base's calibrated one keeps it (no curve applies).
    """
    from facerec.embed import calibrated_threshold

    if settings.threshold is not None:
        return float(settings.threshold)
    calibrated = calibrated_threshold(settings)
    if fixed is not None and fixed != calibrated:
        return float(fixed)
    curve = curve_for(settings)
    if curve is None or not names:
        return calibrated
    _, counts = np.unique(np.asarray(names), return_counts=True)
    return curve.threshold(counts)
