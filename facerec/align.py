"""Pure functions that cut a face out of a photo at a backbone's input size."""

from __future__ import annotations

import cv2
import numpy as np

# Canonical 5-point positions as fractions of the crop side, (x, y): left eye,
# right eye, nose tip, left mouth corner, right mouth corner (symmetric). Chosen
# by measurement: the framing under which the face-resnet base names people best
# on the train half of lfw_dev (eyes 38% of the side apart, at 30% height; see
# README, "Alignment").
_TEMPLATE = np.array(
    [[0.3110, 0.3022], [0.6890, 0.3022], [0.5000, 0.5234], [0.3336, 0.7185], [0.6664, 0.7185]],
    dtype=np.float32,
)

# The standard 112x112 ArcFace / InsightFace template (same point order), as fractions of
# the side: the framing that margin-loss face networks (MobileFaceNet, ArcFace) were
# trained on; they collapse on any other framing.
_ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
) / 112.0

TEMPLATES: dict[str, np.ndarray] = {"facerec": _TEMPLATE, "arcface": _ARCFACE_TEMPLATE}
"""Canonical 5-point templates by name (fractions of the crop side)."""


class Framing(float):
    """An alignment zoom that also names its landmark template.

    It is a ``float`` (the zoom), so every caller that passes a backbone's ``zoom``
    to :func:`template`, :func:`align_face` or :func:`face_crop` gets the backbone's
    template too, without a new argument: ``Framing(1.0, "arcface")``. A plain float
    means the ``"facerec"`` template.
    """

    template_name: str

    def __new__(cls, zoom: float = 1.0, template_name: str = "facerec") -> "Framing":
        if template_name not in TEMPLATES:
            raise ValueError(f"unknown face template {template_name!r}; choose one of {', '.join(TEMPLATES)}")
        obj = super().__new__(cls, zoom)
        obj.template_name = template_name
        return obj

    def __getnewargs__(self):  # pickling (worker processes, Ray actors)
        return float(self), self.template_name

    def __repr__(self) -> str:
        return f"Framing({float(self)!r}, {self.template_name!r})"


def template_name_of(zoom: float) -> str:
    """The template a zoom value names: a :class:`Framing`'s, else ``"facerec"``."""
    return getattr(zoom, "template_name", "facerec")


def template(size: int, zoom: float = 1.0) -> np.ndarray:
    """The canonical landmarks for a ``size`` x ``size`` crop.

    Args:
        size: crop side in pixels.
        zoom: < 1 shows more context around the face (the face gets smaller),
            scaling about the crop's centre. A :class:`Framing` also picks the
            template (default: facerec's own).

    Returns:
        ``(5, 2)`` float32 ``(x, y)`` points.
    """
    pts = (TEMPLATES[template_name_of(zoom)] - 0.5) * float(zoom) + 0.5
    return (pts * size).astype(np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) mapping ``src`` to ``dst``.

    Args:
        src, dst: ``(N, 2)`` float points, ``N >= 2``.

    Returns:
        ``(2, 3)`` float64 affine matrix (Umeyama's method).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = d_c.T @ s_c / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    var = (s_c ** 2).sum() / len(src)
    scale = (sig * d).sum() / var if var > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int, zoom: float = 1.0) -> np.ndarray:
    """Warp a face so its 5 landmarks sit on the canonical template.

    Args:
        image: RGB uint8 ``(H, W, 3)``.
        landmarks: ``(5, 2)`` ``(x, y)`` points in ``image`` pixels.
        size: output side in pixels.
        zoom: see :func:`template`.

    Returns:
        ``(size, size, 3)`` uint8 RGB crop.
    """
    m = similarity_transform(landmarks, template(size, zoom))
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_box(image: np.ndarray, box: tuple[float, float, float, float], size: int, margin: float = 0.2) -> np.ndarray:
    """Square crop around a box with a margin, for faces without landmarks.

    Args:
        image: RGB uint8 ``(H, W, 3)``.
        box: ``(x, y, w, h)`` in ``image`` pixels.
        size: output side in pixels.
        margin: extra context on each side, as a fraction of the box's longer side.

    Returns:
        ``(size, size, 3)`` uint8 RGB crop (edges replicated where the square leaves the photo).
    """
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    s = size / side
    m = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], dtype=np.float64)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def face_crop(image: np.ndarray, box, landmarks: np.ndarray | None, size: int, zoom: float = 1.0) -> np.ndarray:
    """Aligned crop when landmarks exist, else a margin crop of the box."""
    if landmarks is not None:
        return align_face(image, landmarks, size, zoom)
    return crop_box(image, box, size, margin=0.5 * (1 / zoom - 1))
