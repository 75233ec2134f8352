"""Small pictures for the People page, made once and kept on disk.

- :func:`face_thumb`: the enrolled face (the photo's stored face box, not the whole photo)
  as a small square JPEG (the app rounds it with CSS, as photo managers show people; a few
  KB, so a page of 120 faces can carry them inline).
- :func:`photo_thumb`: the whole photo, reduced, with the enrolled face boxed.

Each is named by the photo's content hash, the face box and the size, under
``<cache_dir>/thumbs/`` (folder 0700, files 0600: they are faces), so a page showing
500 people reads 500 small files instead of decoding 500 photos, and a changed face box
makes a new picture. :func:`forget` deletes those of given photos (a person forgotten).
Nothing here touches Streamlit.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from PIL import Image

from facerec.align import crop_box
from facerec.errors import FaceRecError
from facerec.storage import private_dir, shred, write_atomic
from facerec.images import load_photo

THUMBS_DIR = "thumbs"


def _name(sha: str, box, size: int, kind: str, ext: str = "png") -> str:
    b = "none" if box is None else "-".join(str(int(round(v))) for v in box)
    return f"{sha[:32]}_{b}_{size}_{kind}.{ext}"


def _store(path: Path, image: Image.Image) -> Path:
    buf = io.BytesIO()
    if path.suffix == ".jpg":
        image.save(buf, format="JPEG", quality=85)
    else:
        image.save(buf, format="PNG", optimize=True)
    private_dir(path.parent)
    write_atomic(path, buf.getvalue(), mode=0o600)
    return path


def face_thumb(photo_path: Path, sha: str, box, cache_dir: Path, size: int = 128) -> Path | None:
    """The cached face picture (square JPEG) of an enrolled photo (made now if missing); ``None`` when
    the photo cannot be read. ``box`` is the enrolled face in displayed-photo pixels
    (``None``: the middle of the photo)."""
    out = Path(cache_dir) / THUMBS_DIR / _name(sha, box, size, "face", "jpg")
    if out.is_file():
        return out
    try:
        photo = load_photo(photo_path, 4 * size)
    except (FaceRecError, OSError):
        return None
    h, w = photo.pixels.shape[:2]
    if box is None:
        side = min(w, h)
        region = ((w - side) / 2, (h - side) / 2, side, side)
        tile = crop_box(photo.pixels, region, size, margin=0.0)
    else:
        s = photo.scale
        tile = crop_box(photo.pixels, tuple(v * s for v in box), size, margin=0.25)
    return _store(out, Image.fromarray(tile))


def photo_thumb(photo_path: Path, sha: str, box, cache_dir: Path, size: int = 240) -> Path | None:
    """The cached reduced photo (longer side ``size``) with the enrolled face boxed; ``None`` when
    the photo cannot be read."""
    out = Path(cache_dir) / THUMBS_DIR / _name(sha, box, size, "photo")
    if out.is_file():
        return out
    try:
        photo = load_photo(photo_path, size)
    except (FaceRecError, OSError):
        return None
    pixels = photo.pixels
    h, w = pixels.shape[:2]
    f = size / max(h, w)
    if f < 1:
        pixels = cv2.resize(pixels, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    else:
        f = 1.0
    pixels = np.ascontiguousarray(pixels)
    if box is not None:
        s = photo.scale * f
        x, y, bw, bh = (int(round(v * s)) for v in box)
        thick = max(2, round(max(pixels.shape[:2]) / 120))
        cv2.rectangle(pixels, (x, y), (x + bw, y + bh), (40, 200, 60), thick)
    return _store(out, Image.fromarray(pixels))


def forget(cache_dir: Path, shas: Iterable[str]) -> int:
    """Delete every cached picture of these photos (overwritten first, as the gallery's own
    files are: they are crops of a person's face); returns how many files."""
    folder = Path(cache_dir) / THUMBS_DIR
    if not folder.is_dir():
        return 0
    prefixes = {s[:32] for s in shas if s}
    n = 0
    for p in folder.iterdir():
        if p.name.split("_", 1)[0] in prefixes:
            shred(p)
            n += 1
    return n
