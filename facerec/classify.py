"""Matching identity vectors against enrolled people, with an open-set rule.

:class:`CosineMatcher` is a scikit-learn estimator (its API: ``get_params``/``set_params``,
``fit``, ``predict``, ``score``; ``sklearn.base.clone`` works) written without importing
scikit-learn, whose import (SciPy and pandas with it) took longer than the rest of a cold
``facerec identify`` (issue 22). It stores the unit
vectors of every enrolled photo and, by default, scores a probe against each
person by the cosine similarity to that person's *centroid* (the normalised
mean of their unit vectors). Why a nearest-neighbour rule and not SVC or
logistic regression: galleries are tiny (often 1 to 5 photos per person) and
change all the time; a nearest-neighbour rule needs no retraining, works with
a single enrolled person, and its score is a similarity that can be
thresholded for "unknown", which discriminative classifiers' probabilities
cannot give when there is no negative class.

Why the centroid: measured on lfw_dev with the k=3 open-set protocol
(face-resnet, threshold calibrated on the train half to name 5% of strangers,
applied to the test half), it names 97.2% of enrolled probes against 96.0%
for the mean of a person's two best photos (the previous rule), 94.5% for the
single best photo and 95.2% for the mean of all of them, at the same rank-1.
Normalising the score against the rest of the gallery (margin to the second
person, z-norm against the probe's other scores, t-/s-norm with the enrolled
people as cohort) made it worse or changed it by less than the noise, and it
would make a face's score depend on who else is enrolled; so the score is the
plain cosine, clipped to [0, 1]. The per-photo rule (``rule="top_k"``) stays
available.
"""

from __future__ import annotations

import inspect

import numpy as np

from facerec.embed import l2_normalize
from facerec.types import UNKNOWN, Match

RULES = ("centroid", "top_k")


def cosine_to_score(cos: np.ndarray) -> np.ndarray:
    """Cosine similarity in [-1, 1] to a match score in [0, 1] (negatives clip to 0)."""
    return np.clip(cos, 0.0, 1.0)


class NotFittedError(ValueError, AttributeError):
    """A matcher used before :meth:`CosineMatcher.fit` (the same bases as scikit-learn's)."""


class CosineMatcher:
    """Open-set nearest-neighbour matcher on L2-normalised vectors.

    Args:
        threshold: match score in [0, 1] below which a face is ``unknown``.
        rule: how a probe is scored against one person: ``"centroid"`` (cosine
            to the normalised mean of the person's unit vectors) or ``"top_k"``
            (mean cosine to the person's ``top_k`` most similar photos).
        top_k: photos averaged by the ``"top_k"`` rule (1 = nearest photo).
        temperature: softmax sharpness for :meth:`predict_proba`.
    """

    _estimator_type = "classifier"

    def __init__(self, threshold: float = 0.5, rule: str = "centroid", top_k: int = 2,
                 temperature: float = 20.0) -> None:
        self.threshold = threshold
        self.rule = rule
        self.top_k = top_k
        self.temperature = temperature

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's arguments (scikit-learn's estimator API; ``deep`` has nothing to add)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "CosineMatcher":
        """Change constructor arguments (scikit-learn's estimator API)."""
        for name, value in params.items():
            if name not in self._param_names():
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def fit(self, X: np.ndarray, y) -> "CosineMatcher":
        """Store the gallery. ``X``: ``(N, D)`` vectors; ``y``: ``N`` names."""
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r}; choose one of {', '.join(RULES)}")
        if self.rule == "top_k" and int(self.top_k) < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        if X.ndim != 2 or len(X) != len(y) or len(X) == 0:
            raise ValueError(f"need (N, D) vectors and N labels with N > 0, got {X.shape} and {len(y)}")
        self.classes_, self.y_index_ = np.unique(y, return_inverse=True)
        self.X_ = l2_normalize(X)
        sums = np.zeros((len(self.classes_), X.shape[1]), dtype=np.float32)
        np.add.at(sums, self.y_index_, self.X_)
        self.centroids_ = l2_normalize(sums)
        self.n_features_in_ = X.shape[1]
        return self

    def similarities(self, X: np.ndarray) -> np.ndarray:
        """Per-person cosine similarity in [-1, 1], ``(M, n_classes)`` float32."""
        if not hasattr(self, "X_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 1:
            X = X[None]
        X = l2_normalize(X)
        if self.rule == "centroid":
            return (X @ self.centroids_.T).astype(np.float32)
        sims = X @ self.X_.T  # (M, N)
        out = np.full((len(X), len(self.classes_)), -1.0, dtype=np.float32)
        for c in range(len(self.classes_)):
            s = sims[:, self.y_index_ == c]
            k = min(int(self.top_k), s.shape[1])
            out[:, c] = np.sort(s, axis=1)[:, -k:].mean(axis=1)
        return out

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Softmax over people of the scaled similarities, ``(M, n_classes)``; rows sum to 1.

        These compare enrolled people with each other only; use :meth:`match`
        for the open-set decision.
        """
        z = self.similarities(X) * self.temperature
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def match(self, X: np.ndarray) -> list[Match]:
        """The best person for each vector, or ``unknown`` below the threshold.

        The score (also given for ``unknown``) is the best person's cosine
        similarity clipped to [0, 1]: higher means more confident.
        """
        sims = self.similarities(X)
        best = sims.argmax(axis=1)
        scores = cosine_to_score(sims[np.arange(len(sims)), best])
        return [
            Match(str(self.classes_[b]), float(s)) if s >= self.threshold else Match(UNKNOWN, float(s))
            for b, s in zip(best, scores)
        ]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Names (``"unknown"`` below the threshold), ``(M,)`` object array."""
        return np.array([m.name for m in self.match(X)], dtype=object)

    def score(self, X: np.ndarray, y) -> float:
        """Fraction of ``X``'s rows whose :meth:`predict` is ``y`` (scikit-learn's classifier score)."""
        return float(np.mean(self.predict(X) == np.asarray(y, dtype=object)))


def calibrate_threshold(stranger_scores: np.ndarray, false_accept: float = 0.05) -> float:
    """The smallest threshold that names at most ``false_accept`` of strangers.

    Args:
        stranger_scores: best match score of each probe whose person is not enrolled.
        false_accept: tolerated fraction of strangers given a name.
    """
    s = np.sort(np.asarray(stranger_scores, dtype=np.float64))
    if len(s) == 0:
        raise ValueError("need stranger scores to calibrate")
    idx = int(np.ceil((1 - false_accept) * len(s))) - 1
    return float(min(1.0, s[max(idx, 0)] + 1e-6))


def threshold_range(calibrated: float) -> tuple[float, float]:
    """Bounds for choosing a recognition threshold by hand, around a base's calibrated one.

    Match scores are cosine similarities, and where they spread depends on the base. Best
    matches on lfw_dev's test half (``facerec eval`` protocol, 1st to 99th percentile):
    face-resnet (calibrated 0.94): strangers 0.90-0.95, enrolled people 0.94-0.985;
    resnet50 with its distilled head (0.624): strangers 0.34-0.68, enrolled people 0.41-0.84.
    The range is the calibrated value plus or minus its distance to 1, at least 0.05 and at
    most 0.35, within [0, 1]: 0.88-1.0 for face-resnet, 0.274-0.974 for resnet50, each
    covering its base's spread.
    """
    if not 0.0 <= calibrated <= 1.0:
        raise ValueError(f"calibrated threshold must be in [0, 1], got {calibrated}")
    half = min(max(1.0 - calibrated, 0.05), 0.35)
    return max(0.0, calibrated - half), min(1.0, calibrated + half)
