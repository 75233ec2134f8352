"""Bounded decoding (issue 12, item 5): a budget of decoded pixels per request, checked from
the header before decoding, and at most one full-size copy while a photo decodes."""

import io
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image, ImageOps

from facerec.errors import ImageError
from facerec.images import PixelBudget, _PixelGate, decode_photo, pixel_budget


def _png(w: int, h: int, seed: int = 0) -> bytes:
    """A compressible PNG (stripes): tiny as a file, ``w * h`` pixels once decoded."""
    img = Image.new("RGB", (w, h), (seed % 255, 40, 90))
    img.paste((250, 250, 250), (0, 0, w, max(1, h // 10)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_a_zip_of_huge_pngs_is_refused_photo_by_photo():
    """Five 4-megapixel PNGs (a few kB each, as in a zip) against a 10-megapixel budget:
    two decode, the others fail one by one with their reason, and nothing else breaks."""
    photos = {f"huge_{i}.png": _png(2000, 2000, i) for i in range(5)}
    assert max(len(d) for d in photos.values()) < 50_000
    budget = PixelBudget(10_000_000)
    done, refused = [], []
    for name, data in photos.items():
        try:
            done.append(decode_photo(data, name, budget=budget).pixels.shape)
        except ImageError as exc:
            refused.append(str(exc))
    assert done == [(2000, 2000, 3)] * 2 and len(refused) == 3
    assert all(r.startswith(f"huge_{i}.png: not decoded: this request has decoded its limit of 10 megapixels")
               for i, r in zip(range(2, 5), refused))
    assert budget.spent == 8_000_000 and budget.left == 2_000_000
    assert decode_photo(_png(1000, 1000), "small.png", budget=budget).pixels.shape == (1000, 1000, 3)  # fits


def test_the_budget_is_charged_from_the_header_before_decoding(monkeypatch):
    budget = PixelBudget(1_000_000)
    big = _png(4000, 3000)

    def no_decoding(self, *a, **k):
        raise AssertionError("decoded a photo the budget cannot pay for")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    with pytest.raises(ImageError, match="12 more asked"):
        decode_photo(big, "big.png", budget=budget)
    assert budget.spent == 0


def test_the_current_budget_applies_and_a_reduced_jpeg_costs_its_reduced_size():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1600, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    with pixel_budget(1_000_000) as budget:
        decode_photo(buf.getvalue(), "a.jpg", min_side=400)  # decoded at 400x300 (DCT 1/4)
        assert budget.spent == 120_000
        with pytest.raises(ImageError, match="not decoded"):
            decode_photo(buf.getvalue(), "a.jpg")  # 1.92 megapixels at full size
    decode_photo(buf.getvalue(), "a.jpg")  # outside the block: no budget


def test_decoders_wait_for_each_other_past_the_process_limit():
    gate, order = _PixelGate(10), []

    def big(name: str, pixels: int, hold: float) -> None:
        with gate.hold(pixels):
            order.append(f"{name}+")
            time.sleep(hold)
            order.append(f"{name}-")

    a = threading.Thread(target=big, args=("a", 8, 0.3))
    a.start()
    time.sleep(0.05)
    big("b", 5, 0.0)  # 8 + 5 > 10: waits for a
    big("c", 20, 0.0)  # larger than the limit: runs alone
    a.join()
    assert order == ["a+", "a-", "b+", "b-", "c+", "c-"] and gate.busy == 0


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(fmt, orientation):
    rng = np.random.default_rng(orientation)
    img = Image.fromarray(np.kron(rng.integers(0, 255, (3, 4, 3)), np.ones((8, 8, 1))).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    want = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))).convert("RGB"))
    photo = decode_photo(buf.getvalue(), f"o{orientation}")
    assert photo.pixels.flags.c_contiguous and photo.size == (want.shape[1], want.shape[0])
    assert np.abs(photo.pixels.astype(int) - want).max() == 0


PEAK = """
import resource, sys
from facerec.images import decode_photo
data = open(sys.argv[1], "rb").read()
side = None if sys.argv[2] == "full" else int(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
photo = decode_photo(data, "big.png", min_side=side)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 / (8000 * 5000), photo.pixels.shape)
"""


@pytest.mark.slow
def test_decoding_holds_one_full_size_copy(tmp_path):
    """A 40-megapixel PNG: Pillow's own buffer is 4 bytes a pixel and the RGB result 3; the
    old decoder peaked at ~14 (a converted copy and two byte copies besides). Reduced for
    detection (``min_side``), the full size never exists as RGB."""
    path = tmp_path / "big.png"
    path.write_bytes(_png(8000, 5000))
    per_pixel = {}
    for side in ("full", "960"):
        out = subprocess.run([sys.executable, "-c", PEAK, str(path), side], capture_output=True, text=True,
                             timeout=120, check=True).stdout.split(maxsplit=1)
        per_pixel[side] = float(out[0])
    assert per_pixel["full"] < 8.5, per_pixel  # decoder's buffer + the result
    assert per_pixel["960"] < 5.0, per_pixel  # decoder's buffer + a small result


def test_a_pixel_budget_set_around_tagging_is_charged_by_its_decoding_threads(tmp_path, recognizer):
    """The app wraps a Tag photos request in ``pixel_budget``; the tagger decodes in worker
    threads, which must charge that budget too (they ran outside it before)."""
    from facerec.tagging import tag_photos

    paths = []
    for i in range(4):
        p = tmp_path / f"big{i}.png"
        p.write_bytes(_png(1000, 1000, seed=i))  # 1 MP each; reduced to 960 px when decoded for detection
        paths.append(p)
    from conftest import png_bytes, synthetic_photo

    recognizer.enroll("Ann", png_bytes(synthetic_photo([1])), source="ann.png")  # before the budget
    with pixel_budget(2_000_000) as budget:
        results = list(tag_photos(recognizer, paths))
    failed = [r for r in results if r.error]
    assert budget.spent > 0 and budget.spent <= 2_000_000
    assert 1 <= len(failed) <= 3 and all("budget" in r.error or "pixels" in r.error for r in failed)
