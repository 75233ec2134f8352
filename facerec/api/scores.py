"""Scores clients can cut on: facerec's verdicts mapped onto CompreFace's and DeepStack's scale.

facerec decides with its own calibrated threshold ``t`` (a cosine similarity in [0, 1];
it differs per base network: 0.94 for face-resnet, about 0.4 for mobilefacenet). Clients
decide with fixed cut-offs instead: deepstack-python sends ``min_confidence=0.45``,
Double Take accepts a CompreFace similarity of 0.60 and treats under 0.40 as unknown.
So the API reports a *client score* ``c``, piecewise linear in the raw score ``s``:

- a stranger (``s < t``): ``c = 0.40 * s / t``, always below 0.40: never accepted;
- a match (``s >= t``): ``c = 0.60 + 0.40 * (s - t) / (1 - t)``: 0.60 at the threshold,
  1.0 for identical vectors: accepted at every default above.

The mapping is strictly increasing, so the scores keep their order.
"""

from __future__ import annotations

STRANGER_CEILING = 0.40
"""Client scores of faces below facerec's threshold stay under this."""

MATCH_FLOOR = 0.60
"""A face exactly at facerec's threshold gets this client score."""


def client_score(score: float, threshold: float) -> float:
    """Map a raw match score ``score`` (cosine similarity clipped to [0, 1]) judged against
    ``threshold`` onto the clients' scale (see the module docstring); result in [0, 1],
    rounded to 5 decimals."""
    s = min(1.0, max(0.0, float(score)))
    t = min(1.0, max(1e-6, float(threshold)))
    if s < t:
        c = STRANGER_CEILING * s / t
        return round(min(c, STRANGER_CEILING - 1e-5), 5)
    c = MATCH_FLOOR + (1.0 - MATCH_FLOOR) * ((s - t) / (1.0 - t) if t < 1.0 else 1.0)
    return round(min(1.0, c), 5)
