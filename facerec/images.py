"""Reading photos: any Pillow format, EXIF orientation applied, RGB uint8 out."""

from __future__ import annotations

import io
import re
import warnings
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


def decode_image(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode image bytes into an RGB uint8 array ``(H, W, 3)``, EXIF-rotated.

    Any Pillow format (HEIC with pillow-heif); the first frame of an animation;
    greyscale, palette, CMYK and alpha images converted to RGB (alpha dropped);
    16-bit and float images scaled to 8 bits.

    Args:
        data: the file's bytes.
        name: the photo's name for messages.
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
                img.seek(0)
                img = ImageOps.exif_transpose(img)
                img.load()
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
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def read_bytes(path: Path) -> bytes:
    """Read a file's bytes, turning OS errors into :class:`ImageError`."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file (or a broken link)") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not a photo") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None


def load_image(path: Path | str) -> np.ndarray:
    """Read a photo from disk as RGB uint8 ``(H, W, 3)`` with EXIF orientation applied."""
    path = Path(path)
    return decode_image(read_bytes(path), str(path))


def encode_jpeg(image: np.ndarray, quality: int = 92) -> bytes:
    """Encode an RGB uint8 array as JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
