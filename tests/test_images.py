import io

import numpy as np
import pytest
from PIL import Image

from facerec.errors import ImageError
from facerec.images import decode_image, load_image


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
