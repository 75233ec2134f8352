"""The two values that cross module boundaries: a detected face and a match.

Coordinates everywhere in facerec are pixels of the *original* photo after its
EXIF rotation, ``x`` to the right and ``y`` down. Boxes are ``(x, y, w, h)``.
Images are ``uint8`` arrays of shape ``(H, W, 3)`` in RGB order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

UNKNOWN = "unknown"


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    Attributes:
        box: ``(x, y, w, h)`` in original-photo pixels (floats).
        score: detector confidence in [0, 1].
        landmarks: ``(5, 2)`` float32 ``(x, y)`` points in original-photo pixels,
            ordered left eye, right eye, nose, left mouth corner, right mouth
            corner (left/right as seen in the image), or ``None`` (Haar).
        crop: aligned face, ``(S, S, 3)`` uint8 RGB at the backbone's input size,
            or ``None`` until aligned.
        vector: L2-normalised identity vector ``(D,)`` float32, or ``None``
            until embedded.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None
    crop: np.ndarray | None = None
    vector: np.ndarray | None = None

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return float(self.box[2] * self.box[3])

    def int_box(self) -> tuple[int, int, int, int]:
        """The box rounded to whole pixels, ``(x, y, w, h)``."""
        x, y, w, h = self.box
        return int(round(x)), int(round(y)), int(round(w)), int(round(h))

    def replace(self, **changes: object) -> "Face":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Match:
    """Who a face is.

    Attributes:
        name: an enrolled person's name, or ``"unknown"``.
        score: similarity to that person in [0, 1] (1 = identical vectors);
            for ``unknown`` the best similarity found, which was below the threshold.
    """

    name: str
    score: float

    @property
    def known(self) -> bool:
        """True when the face was matched to an enrolled person."""
        return self.name != UNKNOWN


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes (0 when they do not meet)."""
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0
