"""Reading photos: any Pillow format, EXIF orientation applied, RGB uint8 out."""

from __future__ import annotations

import contextvars
import io
import os
import re
import stat
import struct
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from facerec.errors import ImageError

# Broken EXIF is tolerated (the photo is read as if it had none), so Pillow's warning per
# bad tag is noise: one malformed EXIF block printed 2,000 lines on stderr.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".pgm", ".ppm", ".heic", ".heif"})
MAX_PIXELS = 100_000_000
"""Largest photo decoded, in pixels (100 megapixels: 300 MB as RGB). Checked from the
file header, before any pixel is decoded, so a 20000x20000 file costs nothing."""

MAX_PIXELS_DECODING = 150_000_000
"""Pixels being decoded at once in this process, all threads together: a decode that would
pass it waits for others to finish (a 100-megapixel photo holds at most ~7 bytes a pixel
while it decodes), so many large photos at once cannot exhaust memory."""

MAX_REQUEST_PIXELS = 20_000_000_000
"""Default budget of one request (:class:`PixelBudget`): 20 gigapixels decoded, e.g. 200
photos of 100 megapixels, or over 25,000 12-megapixel JPEGs decoded reduced for detection."""

_STRIP_BYTES = 4 << 20  # rows converted to RGB at a time, at most about this many bytes

_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}

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


class PixelBudget:
    """Pixels that one request (a tagging run, an uploaded zip...) may decode, all photos
    together; thread-safe. Each photo is charged its decoded size, read from its header,
    before a pixel is decoded; a photo past the budget fails with its reason, alone.

    Pass one to :func:`decode_photo`, or make it the current one with :func:`pixel_budget`.
    """

    def __init__(self, limit: int = MAX_REQUEST_PIXELS) -> None:
        if limit < 0:
            raise ValueError(f"pixel budget must be >= 0, got {limit}")
        self.limit = int(limit)
        self.spent = 0
        self._lock = threading.Lock()

    @property
    def left(self) -> int:
        """Pixels still to spend."""
        return self.limit - self.spent

    def charge(self, name: str, pixels: int) -> None:
        """Spend ``pixels`` on photo ``name``.

        Raises:
            ImageError: the budget cannot pay for them (nothing is spent then).
        """
        with self._lock:
            if self.spent + pixels > self.limit:
                raise ImageError(f"{name}: not decoded: this request has decoded its limit of "
                                 f"{self.limit / 1e6:g} megapixels ({pixels / 1e6:g} more asked)")
            self.spent += pixels


_BUDGET: contextvars.ContextVar[PixelBudget | None] = contextvars.ContextVar("facerec_pixel_budget", default=None)


@contextmanager
def pixel_budget(limit: int | PixelBudget = MAX_REQUEST_PIXELS) -> Iterator[PixelBudget]:
    """Make a :class:`PixelBudget` the current one (this thread or task, and code it runs with
    ``contextvars.copy_context()``) for the block: :func:`decode_photo` charges it."""
    budget = limit if isinstance(limit, PixelBudget) else PixelBudget(limit)
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


class _PixelGate:
    """At most ``limit`` pixels decoding at once in the process (one larger photo alone)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self.busy == 0 or self.busy + pixels <= self.limit)
            self.busy += pixels
        try:
            yield
        finally:
            with self._cond:
                self.busy -= pixels
                self._cond.notify_all()


_DECODING = _PixelGate(MAX_PIXELS_DECODING)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 when absent or unreadable)."""
    try:
        value = img.getexif().get(0x0112, 1)
        return int(value) if value in _ORIENTATION else 1
    except (SyntaxError, ValueError, TypeError, IndexError, KeyError, struct.error, OSError):
        return 1  # unreadable EXIF: the pixels as stored


def _stored_view(shown: np.ndarray, orientation: int) -> np.ndarray:
    """A view of ``shown`` (the photo the way EXIF ``orientation`` shows it) laid out as the
    pixels are stored, so that writing stored rows into it fills ``shown``."""
    if orientation == 2:
        return shown[:, ::-1]
    if orientation == 3:
        return shown[::-1, ::-1]
    if orientation == 4:
        return shown[::-1]
    if orientation == 5:
        return shown.transpose(1, 0, 2)
    if orientation == 6:  # shown = stored turned 90 degrees clockwise
        return shown.transpose(1, 0, 2)[::-1]
    if orientation == 7:
        return shown.transpose(1, 0, 2)[::-1, ::-1]
    if orientation == 8:  # shown = stored turned 90 degrees counter-clockwise
        return shown.transpose(1, 0, 2)[:, ::-1]
    return shown


def _to_rgb(img: Image.Image, factor: int = 1, orientation: int = 1) -> np.ndarray:
    """The loaded ``img`` as a new RGB uint8 array, reduced by ``factor`` (box filter) and shown
    the way EXIF ``orientation`` says, made a strip of rows at a time: besides the decoder's
    own buffer, only the result is full-size."""
    w, h = img.size
    scale = None
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        scale = max(float(img.getextrema()[1]), 1.0)  # the image's maximum becomes 255
    hs, ws = -(-h // factor), -(-w // factor)
    shown = np.empty((ws, hs, 3) if orientation >= 5 else (hs, ws, 3), dtype=np.uint8)
    stored = _stored_view(shown, orientation)
    rows = max(factor, _STRIP_BYTES // max(1, 4 * w) // factor * factor)
    for top in range(0, h, rows):
        strip = img if rows >= h else img.crop((0, top, w, min(top + rows, h)))
        if scale is not None:
            grey = np.asarray(strip, dtype=np.float64)
            strip = Image.fromarray((np.clip(grey, 0, None) / scale * 255.0).astype(np.uint8))
        if strip.mode != "RGB":
            strip = strip.convert("RGB")
        if factor > 1:
            strip = strip.reduce(factor)
        part = np.asarray(strip)
        stored[top // factor:top // factor + part.shape[0]] = part
    return shown


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
                 max_pixels: int = MAX_PIXELS, budget: PixelBudget | None = None) -> Photo:
    """Decode image bytes into a :class:`Photo`, EXIF-rotated.

    Args:
        data: the file's bytes.
        name: the photo's name for messages.
        min_side: decode reduced, keeping the longer side at least this many pixels: a
            JPEG by the largest DCT factor (1/2, 1/4, 1/8), in the decoder; another format
            over twice this size by an integer factor (box filter) right after decoding,
            a strip at a time, so its full size never exists as RGB. ``None``: full size.
        max_pixels: refuse larger images, judged from the header before decoding.
        budget: charged the decoded pixels before decoding (default: the current
            :func:`pixel_budget`, if any); a photo it cannot pay for is refused.

    Memory: besides the decoder's own buffer, only the returned pixels are full-size (a
    100-megapixel PNG peaks at ~7 bytes a pixel, not ~14); decodes across threads wait for
    each other past :data:`MAX_PIXELS_DECODING` pixels at once.

    Raises:
        ImageError: empty, truncated, too large, over the budget or not an image
            (message starts with ``name``).
    """
    if not data:
        raise ImageError(f"{name}: file is empty")
    budget = budget if budget is not None else _BUDGET.get()
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
                decoded = img.size
                if budget is not None:
                    budget.charge(name, decoded[0] * decoded[1])
                factor = 1
                if min_side and img.format != "JPEG" and max(decoded) > 2 * min_side:
                    factor = max(decoded) // min_side
                orientation = _orientation(img)
                with _DECODING.hold(decoded[0] * decoded[1]):
                    img.load()
                    pixels = _to_rgb(img, factor, orientation)
                    img.close()  # frees the decoder's buffer now, not when this frame ends
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
    if orientation >= 5:  # turned by 90 degrees
        full = (full[1], full[0])
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
        # checked before opening too: opening a FIFO waits for a writer, forever
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "Is a directory", str(path))
        if not stat.S_ISREG(mode):
            raise ImageError(f"{path}: not a regular file")
        with path.open("rb") as f:
            st = os.fstat(f.fileno())  # and what was opened (it may have been swapped since)
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
