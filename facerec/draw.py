"""Pure drawing helpers: boxes and labels on a copy of an image.

Names are drawn with a TrueType font, so that a name in any script reads as written
(OpenCV's ``putText`` draws every non-ASCII letter as ``?``): DejaVu Sans Bold, shipped
in ``facerec/fonts`` (Latin, Greek, Cyrillic, Armenian, Georgian, Hebrew...), then, letter
by letter where it has no glyph, the first installed system font that has one (CJK
fonts such as Noto Sans CJK or WenQuanYi where installed). Labels stay inside the image.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from facerec.types import Face, Match

PENDING = "..."
"""Label of a live face whose name is not confirmed yet."""

_KNOWN, _STRANGER, _UNSURE = (40, 200, 60), (230, 50, 50), (150, 150, 150)

FONT_FILE = Path(__file__).resolve().parent / "fonts" / "DejaVuSans-Bold.ttf"
"""The font shipped with facerec, always tried first."""

SYSTEM_FONTS = (
    # Latin, Greek, Cyrillic: used only if the shipped file is missing (a broken install)
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    # CJK and other scripts, where installed (Debian/Ubuntu, Fedora, macOS, Windows)
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/wqy-zenhei/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/unfonts-core/UnDotum.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/Hiragino Sans GB.ttc",
    "/System/Library/Fonts/AppleSDGothicNeo.ttc",
    "/Library/Fonts/Arial Unicode.ttf",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/meiryo.ttc",
    "C:/Windows/Fonts/malgun.ttf",
    "C:/Windows/Fonts/arial.ttf",
)
"""Fallback fonts, in order, for letters the shipped font lacks; missing files are skipped."""

_MISSING = "\U0010fffd"  # a private-use code point no label font has: its rendering is the "no glyph" box


@lru_cache(maxsize=1)
def font_files() -> tuple[str, ...]:
    """The label fonts found on this machine, in the order they are tried."""
    paths = [str(FONT_FILE)] + list(SYSTEM_FONTS)
    return tuple(dict.fromkeys(p for p in paths if Path(p).is_file()))


@lru_cache(maxsize=64)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype(path, size)
    except OSError:
        return ImageFont.load_default(size)


def _fonts(size: int) -> list:
    """The fonts in the order tried, at ``size`` pixels; Pillow's own font when none is found."""
    return [_font(p, size) for p in font_files()] or [ImageFont.load_default(size)]


def _glyph(font, ch: str) -> tuple:
    mask = font.getmask(ch)
    return mask.size, bytes(mask)


@lru_cache(maxsize=4096)
def _covers(index: int, ch: str) -> bool:
    """Whether label font ``index`` has a glyph for ``ch`` (it does not draw its "no glyph" box)."""
    font = _fonts(24)[index]
    return _glyph(font, ch) != _glyph(font, _MISSING)


def _runs(text: str, fonts: list) -> list[tuple[str, object]]:
    """``text`` cut into runs, each drawn with the first font that has all its letters."""
    runs: list[tuple[str, object]] = []
    for ch in text:
        pick = 0
        if len(fonts) > 1 and not ch.isspace():
            pick = next((i for i in range(len(fonts)) if _covers(i, ch)), 0)
        if runs and runs[-1][1] is fonts[pick]:
            runs[-1] = (runs[-1][0] + ch, fonts[pick])
        else:
            runs.append((ch, fonts[pick]))
    return runs


def text_mask(text: str, size: int) -> np.ndarray:
    """``text`` rendered white on black at about ``size`` pixels per line, ``(H, W)`` uint8 coverage."""
    fonts = _fonts(size)
    runs = _runs(text, fonts)
    ascent = max((f.getmetrics()[0] for _, f in runs), default=size)
    descent = max((f.getmetrics()[1] for _, f in runs), default=0)
    width = int(np.ceil(sum(f.getlength(t) for t, f in runs))) + 1
    patch = Image.new("L", (max(1, width), max(1, ascent + descent)), 0)
    draw = ImageDraw.Draw(patch)
    x = 0.0
    for run, font in runs:
        draw.text((x, ascent), run, font=font, fill=255, anchor="ls")
        x += font.getlength(run)
    return np.asarray(patch)


def put_text(image: np.ndarray, text: str, org: tuple[int, int], size: int,
             colour: tuple[int, int, int] = (255, 255, 255)) -> None:
    """Draw ``text`` into an RGB uint8 image, in place, its top-left corner at ``org``.

    The part outside the image is dropped. ``size`` is the font size in pixels.
    """
    _blend(image, text_mask(text, size), org, colour)


def _blend(image: np.ndarray, mask: np.ndarray, org: tuple[int, int], colour: tuple[int, int, int]) -> None:
    """Paint ``colour`` into ``image`` through coverage ``mask`` placed at ``org``, in place."""
    x, y = int(org[0]), int(org[1])
    h, w = image.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + mask.shape[1], w), min(y + mask.shape[0], h)
    if x0 >= x1 or y0 >= y1:
        return
    a = mask[y0 - y:y1 - y, x0 - x:x1 - x, None].astype(np.uint16)
    region = image[y0:y1, x0:x1]
    ink = np.asarray(colour, dtype=np.uint16)
    region[...] = ((region.astype(np.uint16) * (255 - a) + ink * a + 127) // 255).astype(np.uint8)


def label_text(match: Match) -> str:
    """``"name 0.87"`` for a match."""
    return f"{match.name} {match.score:.2f}"


def _place(x: int, y: int, w: int, h: int, lw: int, lh: int, width: int, height: int) -> tuple[int, int]:
    """Top-left corner of a ``lw`` x ``lh`` label for box ``(x, y, w, h)``: above the box, else
    below it, else inside its top edge; always inside the image when the label fits in it."""
    lx = min(max(x, 0), max(width - lw, 0))
    if y - lh >= 0:
        ly = y - lh
    elif y + h + lh <= height:
        ly = max(y + h, 0)
    else:
        ly = min(max(y, 0), max(height - lh, 0))
    return lx, ly


@lru_cache(maxsize=256)
def _label_size(text: str, thick: int, width: int) -> tuple[np.ndarray, int, int, int]:
    """The label's text mask (read-only), padding and outer size for line width ``thick`` in an image
    ``width`` wide. Remembered: :func:`label_boxes` and :func:`draw_labels` both need it, and Live
    draws the same labels on every frame."""
    size = 11 * thick + 3
    mask = text_mask(text, size)
    pad = max(2, size // 6)
    if mask.shape[1] + 2 * pad > width and size > 8:  # too wide for the image: smaller
        size = max(8, int(size * (width - 2 * pad) / mask.shape[1]))
        mask = text_mask(text, size)
        pad = max(2, size // 6)
    mask.flags.writeable = False
    return mask, pad, mask.shape[1] + 2 * pad, mask.shape[0] + 2 * pad


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def _free_spot(x: int, y: int, w: int, h: int, lw: int, lh: int, width: int, height: int,
               taken: list[tuple[int, int, int, int]]) -> tuple[int, int]:
    """Where a label goes: the first of above the box, below it, inside its top edge (:func:`_place`)
    that covers no label placed before; else moved further up or down, step by step, to a free row."""
    lx = min(max(x, 0), max(width - lw, 0))
    first = _place(x, y, w, h, lw, lh, width, height)
    candidates = [first]
    if y + h + lh <= height:
        candidates.append((lx, max(y + h, 0)))
    candidates.append((lx, min(max(y, 0), max(height - lh, 0))))
    for step in range(1, 12):
        candidates += [(lx, first[1] - step * lh), (lx, first[1] + step * lh)]
    for cx, cy in candidates:
        if 0 <= cy <= height - lh and not any(_overlaps((cx, cy, lw, lh), t) for t in taken):
            return cx, cy
    return first


def label_boxes(items: Sequence[tuple[tuple[float, float, float, float], str, bool | None]],
                width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Where :func:`draw_labels` puts each label, ``(x, y, w, h)`` in pixels: above its box (below,
    or inside its top edge, near the image's edges), never over a label placed before it."""
    thick = max(1, round(max(height, width) / 400))
    taken: list[tuple[int, int, int, int]] = []
    for box, text, _ in items:
        x, y, w, h = (int(round(v)) for v in box)
        _, _, lw, lh = _label_size(text, thick, width)
        lx, ly = _free_spot(x, y, w, h, lw, lh, width, height, taken)
        taken.append((lx, ly, lw, lh))
    return taken


def draw_labels(image: np.ndarray,
                items: Sequence[tuple[tuple[float, float, float, float], str, bool | None]]) -> np.ndarray:
    """A copy of an RGB uint8 image with labelled boxes.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        items: ``(box, text, known)`` with ``box`` as ``(x, y, w, h)`` pixels;
            ``known`` picks the colour: green (a person), red (a stranger), grey (``None``, not sure yet).

    Labels are drawn in any script (see the module's note) and kept inside the image:
    above the box, below it when the box touches the top, moved left at the right edge,
    drawn smaller when the image is narrower than the label, and moved up or down when
    they would cover the label of a neighbouring face (:func:`label_boxes`). Boxes are drawn
    first, labels over them.
    """
    out = image.copy()
    height, width = image.shape[:2]
    thick = max(1, round(max(height, width) / 400))
    for box, _, known in items:
        x, y, w, h = (int(round(v)) for v in box)
        colour = _UNSURE if known is None else _KNOWN if known else _STRANGER
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thick)
    for (box, text, known), (lx, ly, lw, lh) in zip(items, label_boxes(items, width, height)):
        colour = _UNSURE if known is None else _KNOWN if known else _STRANGER
        mask, pad, _, _ = _label_size(text, thick, width)
        cv2.rectangle(out, (lx, ly), (lx + lw - 1, ly + lh - 1), colour, -1)
        _blend(out, mask, (lx + pad, ly + pad), (255, 255, 255))
    return out


def draw_matches(image: np.ndarray, results: Sequence[tuple[Face, Match]]) -> np.ndarray:
    """A copy of an RGB uint8 image with each face boxed and labelled.

    Known people get green boxes, strangers red; line width scales with the image.
    """
    return draw_labels(image, [(face.box, label_text(match), match.known) for face, match in results])
