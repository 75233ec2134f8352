"""How usable a detected face is for recognition: size, sharpness and pose.

A face that is tiny, blurred or turned far away gives a vector that sits near
everyone's, so its best match is a guess. :func:`face_quality` measures the three
from what detection and alignment already give (the box, the five landmarks and the
aligned crop), without another network:

- **size**: the distance between the eyes in original-photo pixels (the box width
  depends on the detector; the eyes do not);
- **sharpness**: the variance of the Laplacian of the aligned crop's grey levels,
  resized to 64x64 so that the number does not depend on the backbone's input size;
- **yaw**: how far the nose tip lies from the middle of the eyes, across the face,
  as a fraction of the eye distance (0 frontal, about 0.5 in three-quarter view, more
  in profile).

Each has a limit past which the face is *poor* and the reason is named
(``benchmarks/face_quality.py``, results in ``benchmarks/README.md``):

- eyes under 12 px apart, or sharpness under 50: the face's vector moves as far from
  the same face's sharp, large vector as a Gaussian blur of sigma 2-3 crop pixels moves
  it (face-resnet: cosine 0.96-0.97 to itself, its threshold being 0.94; mobilefacenet:
  0.83-0.89);
- yaw over 0.5: on celeba_dev (k=3 folds) the 2% most turned faces are left unknown
  31.6% of the time against 5.3% for all.

What quality is used for: enrolment warns about a poor photo (the CLI on stderr, the app
asks for confirmation), and the app says why a face may be unknown. It does not gate
matching: calling poor faces "unknown" was measured on both sets and only lost right
names, because wrong names are rare at the calibrated threshold and are not
concentrated in poor faces (celeba_dev: 0.12% of enrolled probes got a wrong name;
lfw_dev: gating the 5% most turned faces cut strangers named from 4.98% to 4.62% and
right names from 97.4% to 92.7%).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facerec.types import Face

MIN_EYE_DISTANCE = 12.0
"""Eyes closer than this many original pixels: too small a face to recognise."""

MIN_SHARPNESS = 50.0
"""Laplacian variance of the 64x64 grey crop below this: blurred (sharp web faces: 400-1400)."""

MAX_YAW = 0.5
"""Nose offset across the face, in eye distances, above this: turned too far."""


@dataclass(frozen=True)
class Quality:
    """What :func:`face_quality` measured.

    Attributes:
        eye_distance: between the eye landmarks, original-photo pixels (``nan`` without landmarks).
        sharpness: Laplacian variance of the 64x64 grey aligned crop (``nan`` without a crop).
        yaw: nose offset from the eyes' middle across the face, in eye distances (``nan``
            without landmarks); sign: positive when the nose is right of the middle in the image.
        problems: short reasons the face is poor (empty when it is not).
    """

    eye_distance: float
    sharpness: float
    yaw: float
    problems: tuple[str, ...]

    @property
    def poor(self) -> bool:
        """True when any measure is past its limit."""
        return bool(self.problems)

    def describe(self) -> str:
        """``"good"`` or the problems joined, for a table or a warning."""
        return "; ".join(self.problems) if self.problems else "good"


def yaw_of(landmarks: np.ndarray) -> tuple[float, float]:
    """``(yaw, eye_distance)`` from five ``(x, y)`` landmarks (see the module docstring)."""
    pts = np.asarray(landmarks, dtype=np.float64)
    left, right, nose = pts[0], pts[1], pts[2]
    axis = right - left
    dist = float(np.hypot(*axis))
    if dist <= 1e-6:
        return float("inf"), 0.0
    along = float(np.dot(nose - (left + right) / 2, axis / dist))
    return along / dist, dist


def sharpness_of(crop: np.ndarray) -> float:
    """Laplacian variance of an RGB uint8 crop's grey levels, resized to 64x64."""
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def face_quality(face: Face, crop: np.ndarray | None = None) -> Quality:
    """Measure a face (its landmarks, and ``crop`` or ``face.crop`` when there is one).

    Args:
        face: a detected face; without landmarks (Haar) only sharpness is measured.
        crop: the aligned ``(S, S, 3)`` uint8 RGB crop; defaults to ``face.crop``.
    """
    crop = face.crop if crop is None else crop
    problems = []
    yaw = dist = float("nan")
    if face.landmarks is not None:
        yaw, dist = yaw_of(face.landmarks)
        if dist < MIN_EYE_DISTANCE:
            problems.append(f"small face ({dist:.0f} px between the eyes)")
        if abs(yaw) > MAX_YAW:
            problems.append("head turned away")
    sharp = float("nan") if crop is None else sharpness_of(crop)
    if sharp < MIN_SHARPNESS:
        problems.append("blurred")
    return Quality(dist, sharp, yaw, tuple(problems))
