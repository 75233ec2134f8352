"""Reading photos: any Pillow format, EXIF orientation applied, RGB uint8 out."""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facerec.errors import ImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".pgm", ".ppm", ".heic", ".heif"})
MAX_PIXELS = 100_000_000
"""Largest photo decoded, in pixels (100 megapixels: 300 MB as RGB). Checked from the
file header, before any pixel is decoded, so a 20000x20000 file costs nothing."""

try:  # optional HEIC support
    from pillow_heif import register_heif_opener  # type: ignore

    register_heif_opener()
    _HEIF = True
except ImportError:  # pragma: no cover - optional
    _HEIF = False


def is_image_path(path: Path) -> bool:
    """True when the file name has a photo suffix we read."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def _too_large(name: str, width: int, height: int, max_pixels: int) -> ImageError:
    return ImageError(f"{name}: image too large ({width}x{height} pixels = {width * height / 1e6:g} megapixels; "
                      f"the limit is {max_pixels / 1e6:g} megapixels)")


@dataclass(frozen=True, eq=False)
class Photo:
    """A decoded photo, possibly reduced while decoding.

    Attributes:
        pixels: RGB uint8 ``(H, W, 3)``, EXIF-rotated; for a large JPEG decoded with a
            size limit, a reduced copy (Pillow's draft mode: DCT scaling by 1/2, 1/4 or 1/8).
        size: ``(width, height)`` of the whole photo as displayed (EXIF-rotated), in
            the pixels every box and landmark is reported in.
    """

    pixels: np.ndarray
    size: tuple[int, int]

    @property
    def scale(self) -> float:
        """``pixels`` width / displayed width (1.0 when decoded at full size)."""
        return self.pixels.shape[1] / float(self.size[0])


def decode_photo(data: bytes, name: str = "image", min_side: int | None = None,
                 max_pixels: int = MAX_PIXELS) -> Photo:
    """Decode image bytes into a :class:`Photo`, EXIF-rotated.

    Args:
        data: the file's bytes.
        name: the photo's name for messages.
        min_side: decode a JPEG reduced by the largest DCT factor (1/2, 1/4, 1/8)
            that keeps its longer side at least this many pixels; ``None``: full size.
            Other formats are decoded at full size.
        max_pixels: refuse larger images, judged from the header before decoding.

    Raises:
        ImageError: empty, truncated, too large or not an image (message starts with ``name``).
    """
    if not data:
        raise ImageError(f"{name}: file is empty")
    try:
        with warnings.catch_warnings():
            # the size is checked against max_pixels below, before decoding
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > max_pixels:
                    raise _too_large(name, img.width, img.height, max_pixels)
                full = img.size
                img.seek(0)
                if min_side and img.format == "JPEG" and max(full) > min_side:
                    k = max(full) / float(min_side)  # draft keeps at least the requested size
                    img.draft("RGB", (max(1, int(full[0] / k)), max(1, int(full[1] / k))))
                reduced = img.size
                try:
                    img = ImageOps.exif_transpose(img)
                except (SyntaxError, ValueError, TypeError, IndexError, KeyError, struct.error):
                    pass  # unreadable EXIF: the pixels as stored
                img.load()
                if img.size != reduced:  # rotated by 90 degrees
                    full = (full[1], full[0])
                if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
                    arr = np.asarray(img, dtype=np.float64)
                    arr = (np.clip(arr, 0, None) / max(float(arr.max()), 1.0) * 255.0).astype(np.uint8)
                    img = Image.fromarray(arr)
                rgb = img.convert("RGB")
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own hard limit, raised from the header
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)) / 1e6:g} megapixels" if found else "too many pixels"
        raise ImageError(f"{name}: image too large ({size}; the limit is {max_pixels / 1e6:g} megapixels)") from None
    except UnidentifiedImageError:
        if Path(name).suffix.lower() in (".heic", ".heif") and not _HEIF:
            raise ImageError(f"{name}: HEIC photos need pillow-heif (pip install 'facerec[heic]')") from None
        raise ImageError(f"{name}: not an image file (or an unsupported format)") from None
    except MemoryError:
        raise ImageError(f"{name}: image too large for memory") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name}: cannot decode image ({exc})") from None
    pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    return Photo(pixels, (int(full[0]), int(full[1])))


def decode_image(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode image bytes into a full-size RGB uint8 array ``(H, W, 3)``, EXIF-rotated.

    Any Pillow format (HEIC with pillow-heif); the first frame of an animation;
    greyscale, palette, CMYK and alpha images converted to RGB (alpha dropped);
    16-bit and float images scaled to 8 bits. See :func:`decode_photo` for a
    reduced decode of large JPEGs.

    Raises:
        ImageError: empty, truncated, too large or not an image (message starts with ``name``).
    """
    return decode_photo(data, name, max_pixels=max_pixels).pixels


MAX_FILE_BYTES = 200_000_000
"""Largest photo file read, in bytes (200 MB), so one file cannot exhaust memory."""


def read_bytes(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """Read a photo file's bytes, turning OS errors into :class:`ImageError`.

    Only regular files are read (a link to ``/dev/zero`` or a FIFO named ``photo.jpg`` is
    refused), and at most ``max_bytes``: a larger file is refused without reading it all.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ImageError(f"{path}: not a regular file")
            data = f.read(max_bytes + 1)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file (or a broken link)") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not a photo") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise ImageError(f"{path}: file too large (over {max_bytes / 1e6:g} MB)")
    return data


def load_image(path: Path | str) -> np.ndarray:
    """Read a photo from disk as RGB uint8 ``(H, W, 3)`` with EXIF orientation applied."""
    path = Path(path)
    return decode_image(read_bytes(path), str(path))


def load_photo(path: Path | str, min_side: int | None = None) -> Photo:
    """Read a photo from disk as a :class:`Photo` (see :func:`decode_photo`)."""
    path = Path(path)
    return decode_photo(read_bytes(path), str(path), min_side)


def encode_jpeg(image: np.ndarray, quality: int = 92) -> bytes:
    """Encode an RGB uint8 array as JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
