import io

import numpy as np
import pytest
from PIL import Image

from facerec.errors import ImageError
from facerec.images import decode_image, decode_photo, load_image, load_photo

from conftest import SHARED, deny_reading, needs_shared


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    arr = decode_image(_encode(img, "JPEG", exif=exif))
    assert arr.shape == (40, 20, 3)


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "I;16", "P"])
def test_odd_modes_become_rgb(mode):
    img = Image.new(mode, (16, 12))
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    arr = decode_image(_encode(img, fmt))
    assert arr.shape == (12, 16, 3) and arr.dtype == np.uint8


def test_bad_files_raise_image_error(tmp_path):
    good = _encode(Image.new("RGB", (64, 64), (9, 9, 9)), "JPEG")
    cases = {"empty.jpg": b"", "text.jpg": b"hello, not a photo", "cut.jpg": good[: len(good) // 3]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageError, match=name.split(".")[0]):
            load_image(tmp_path / name)
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` pixels but holds almost no data (no big allocation)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [12000, 20000])
def test_huge_images_are_refused_from_the_header(side):
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(ImageError, match=r"huge.png: image too large .*limit is 100 megapixels"):
        decode_image(_png_header(side, side), "huge.png")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50_000_000  # nothing near the 1.2 GB a decode would need


def test_a_lower_pixel_limit_is_honoured():
    data = _encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageError, match="100x100 pixels"):
        decode_image(data, "x.png", max_pixels=5000)
    assert decode_image(data, "x.png").shape == (100, 100, 3)


def test_sixteen_bit_float_alpha_and_bilevel_images_become_rgb8():
    import cv2

    rgb16 = np.zeros((10, 12, 3), np.uint16)
    rgb16[..., 2] = 60000  # red in OpenCV's BGR order
    for ext in (".png", ".tiff"):
        ok, buf = cv2.imencode(ext, rgb16)
        arr = decode_image(buf.tobytes(), "deep" + ext)
        assert arr.shape == (10, 12, 3) and arr.dtype == np.uint8 and tuple(arr[0, 0]) == (234, 0, 0)
    grey16 = Image.fromarray(np.full((6, 7), 50000, np.uint16))
    assert decode_image(_encode(grey16, "PNG")).max() == 255  # scaled to the image's range
    flt = decode_image(_encode(Image.new("F", (5, 4), 3.5), "TIFF"))
    assert flt.shape == (4, 5, 3) and flt.max() == 255
    la = decode_image(_encode(Image.new("LA", (8, 8), (200, 0)), "PNG"))
    assert la.shape == (8, 8, 3) and la[0, 0, 0] == 200  # alpha dropped, pixels kept
    bw = decode_image(_encode(Image.new("1", (9, 9), 1), "BMP"))
    assert bw.shape == (9, 9, 3) and bw.min() == 255


def test_gif_first_frame_and_heic_message():
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    arr = decode_image(buf.getvalue(), "anim.gif")
    assert arr[0, 0, 0] > 200 and arr[0, 0, 2] < 50
    from facerec import images

    if not images._HEIF:
        with pytest.raises(ImageError, match="pillow-heif"):
            decode_image(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64, "phone.heic")


def test_permission_denied_and_broken_links_are_image_errors(tmp_path, monkeypatch):
    photo = tmp_path / "locked.jpg"
    photo.write_bytes(_encode(Image.new("RGB", (8, 8)), "JPEG"))
    deny_reading(monkeypatch, "locked.jpg")
    with pytest.raises(ImageError, match="locked.jpg: permission denied"):
        load_image(photo)
    link = tmp_path / "gone.jpg"
    link.symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(ImageError, match="gone.jpg: no such file"):
        load_image(link)


# -- reduced (draft) decoding ---------------------------------------------------------


def test_a_large_jpeg_is_decoded_reduced_with_its_full_size_known():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8))
    data = _encode(img, "JPEG", quality=90)
    photo = decode_photo(data, "big.jpg", min_side=400)
    assert photo.size == (1600, 1200)
    assert photo.pixels.shape == (300, 400, 3) and photo.scale == 0.25  # 1/4: the smallest DCT scale >= 400
    assert decode_photo(data, "big.jpg", min_side=500).pixels.shape == (600, 800, 3)  # 1/4 would be too small
    assert decode_photo(data, "big.jpg").pixels.shape == (1200, 1600, 3)
    png = _encode(img, "PNG")  # no DCT scaling: reduced by an integer factor right after decoding
    assert decode_photo(png, "big.png", min_side=400).pixels.shape == (300, 400, 3)
    assert decode_photo(png, "big.png", min_side=800).scale == 1.0  # not over twice min_side: full size


@needs_shared
@pytest.mark.realdata
@pytest.mark.parametrize("kind", ["Landscape", "Portrait"])
@pytest.mark.parametrize("orientation", range(9))
def test_reduced_decoding_honours_every_exif_orientation(kind, orientation):
    """../shared/faces/exif_orientation: one picture stored under each EXIF orientation;
    the reduced decode must show it the same way up as the full decode."""
    path = SHARED / "exif_orientation" / f"{kind}_{orientation}.jpg"
    full = load_image(path)
    photo = load_photo(path, min_side=400)
    assert photo.size == (full.shape[1], full.shape[0])
    assert max(photo.pixels.shape[:2]) < max(full.shape[:2])  # really reduced
    import cv2

    small = cv2.resize(full, photo.pixels.shape[1::-1], interpolation=cv2.INTER_AREA).astype(np.float32)
    assert np.abs(small - photo.pixels).mean() < 8  # same picture, same way up
    assert np.abs(small - photo.pixels[::-1, ::-1]).mean() > 20  # (upside down would differ)


@needs_shared
@pytest.mark.realdata
def test_camera_photos_decode_reduced_or_fail_cleanly():
    """Real 8-12 MP camera JPEGs, some with broken EXIF: each decodes reduced (or, for a
    broken file, raises ImageError), never crashes."""
    paths = sorted((SHARED / "camera_photos").glob("*.jpg"))
    assert len(paths) >= 8
    for path in paths:
        try:
            photo = load_photo(path, min_side=960)
        except ImageError:
            continue
        assert 960 <= max(photo.pixels.shape[:2]) < 2 * 960 or photo.scale == 1.0
        assert abs(photo.pixels.shape[0] / photo.size[1] - photo.scale) < 0.01


def test_a_link_to_an_endless_device_is_refused_without_reading_it(tmp_path):
    """A symlink named photo.jpg pointing to /dev/zero made `facerec tag` read until the
    OOM killer stopped it: only regular files are read."""
    from facerec.images import read_bytes

    link = tmp_path / "photo.jpg"
    link.symlink_to("/dev/zero")
    with pytest.raises(ImageError, match="not a regular file"):
        read_bytes(link)


def test_a_fifo_named_like_a_photo_fails_at_once_instead_of_hanging(tmp_path):
    """Opening a FIFO waits for a writer forever: `facerec tag` hung on one (directly or
    through a link) before the file type was checked ahead of opening it."""
    import os
    import threading

    from facerec.images import read_bytes

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    link = tmp_path / "photo.jpg"
    link.symlink_to(fifo)
    outcome = {}

    def read_both():
        for p in (fifo, link):
            try:
                read_bytes(p)
            except ImageError as exc:
                outcome[p.name] = str(exc)

    t = threading.Thread(target=read_both, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():  # release the hung reader so the test process can end
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    assert not t.is_alive() and set(outcome) == {"pipe.jpg", "photo.jpg"}
    assert all("not a regular file" in m for m in outcome.values())


def test_a_file_over_the_byte_limit_is_refused(tmp_path):
    from facerec.images import read_bytes

    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * 1001)
    with pytest.raises(ImageError, match="too large"):
        read_bytes(big, max_bytes=1000)
    assert read_bytes(big, max_bytes=1001) == b"\xff" * 1001


def test_malformed_exif_is_read_quietly():
    """A JPEG whose EXIF claims 2,000 tags larger than the file decoded fine but made Pillow
    print 2,000 warnings on stderr (one per tag)."""
    import subprocess
    import sys

    code = """
import io, struct
from PIL import Image
from facerec.images import decode_photo
buf = io.BytesIO(); Image.new("RGB", (64, 64), (90, 120, 150)).save(buf, "JPEG"); good = buf.getvalue()
ifd = b"Exif\\0\\0II*\\0" + struct.pack("<IH", 8, 2000) + b"".join(
    struct.pack("<HHII", 0x0112 + i, 7, 0xFFFFFFF0, 0xFFFFFF00) for i in range(2000))
app1 = b"\\xff\\xe1" + struct.pack(">H", min(len(ifd) + 2, 65535)) + ifd[:65533]
print(decode_photo(good[:2] + app1 + good[2:], "x.jpg").pixels.shape)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "(64, 64, 3)" in out.stdout, out.stderr[-500:]
    assert "Warning" not in out.stderr, out.stderr[:300]
