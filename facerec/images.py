"""Reading photos: any Pillow format, EXIF orientation applied, RGB uint8 out."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facerec.errors import ImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".pgm", ".ppm", ".heic", ".heif"})
MAX_PIXELS = 250_000_000

try:  # optional HEIC support
    from pillow_heif import register_heif_opener  # type: ignore

    register_heif_opener()
except ImportError:  # pragma: no cover - optional
    pass


def is_image_path(path: Path) -> bool:
    """True when the file name has a photo suffix we read."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decode image bytes into an RGB uint8 array ``(H, W, 3)``, EXIF-rotated.

    Raises:
        ImageError: empty, truncated, too large or not an image.
    """
    if not data:
        raise ImageError(f"{name}: file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageError(f"{name}: image too large ({img.width}x{img.height} pixels)")
                img.seek(0)
                img = ImageOps.exif_transpose(img)
                img.load()
                if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                    arr = np.asarray(img, dtype=np.float64)
                    arr = (arr / max(float(arr.max()), 1.0) * 255.0).astype(np.uint8)
                    img = Image.fromarray(arr)
                rgb = img.convert("RGB")
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: image too large to decode safely") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (or an unsupported format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
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
