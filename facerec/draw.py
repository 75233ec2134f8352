"""Pure drawing helpers: boxes and labels on a copy of an image."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from facerec.types import Face, Match


def label_text(match: Match) -> str:
    """``"name 0.87"`` for a match."""
    return f"{match.name} {match.score:.2f}"


def draw_matches(image: np.ndarray, results: Sequence[tuple[Face, Match]]) -> np.ndarray:
    """A copy of an RGB uint8 image with each face boxed and labelled.

    Known people get green boxes, strangers red; line width scales with the image.
    """
    out = image.copy()
    thick = max(1, round(max(image.shape[:2]) / 400))
    for face, match in results:
        x, y, w, h = face.int_box()
        colour = (40, 200, 60) if match.known else (230, 50, 50)
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thick)
        text = label_text(match)
        scale = 0.5 * thick
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = y - 4 if y - th - 8 > 0 else y + h + th + 4
        cv2.rectangle(out, (x, ty - th - 4), (x + tw + 4, ty + base - 2), colour, -1)
        cv2.putText(out, text, (x + 2, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out
