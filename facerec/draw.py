"""Pure drawing helpers: boxes and labels on a copy of an image."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from facerec.types import Face, Match

PENDING = "..."
"""Label of a live face whose name is not confirmed yet."""

_KNOWN, _STRANGER, _UNSURE = (40, 200, 60), (230, 50, 50), (150, 150, 150)


def label_text(match: Match) -> str:
    """``"name 0.87"`` for a match."""
    return f"{match.name} {match.score:.2f}"


def draw_labels(image: np.ndarray,
                items: Sequence[tuple[tuple[float, float, float, float], str, bool | None]]) -> np.ndarray:
    """A copy of an RGB uint8 image with labelled boxes.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        items: ``(box, text, known)`` with ``box`` as ``(x, y, w, h)`` pixels;
            ``known`` picks the colour: green (a person), red (a stranger), grey (``None``, not sure yet).
    """
    out = image.copy()
    thick = max(1, round(max(image.shape[:2]) / 400))
    for box, text, known in items:
        x, y, w, h = (int(round(v)) for v in box)
        colour = _UNSURE if known is None else _KNOWN if known else _STRANGER
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thick)
        scale = 0.5 * thick
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = y - 4 if y - th - 8 > 0 else y + h + th + 4
        cv2.rectangle(out, (x, ty - th - 4), (x + tw + 4, ty + base - 2), colour, -1)
        cv2.putText(out, text, (x + 2, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def draw_matches(image: np.ndarray, results: Sequence[tuple[Face, Match]]) -> np.ndarray:
    """A copy of an RGB uint8 image with each face boxed and labelled.

    Known people get green boxes, strangers red; line width scales with the image.
    """
    return draw_labels(image, [(face.box, label_text(match), match.known) for face, match in results])
