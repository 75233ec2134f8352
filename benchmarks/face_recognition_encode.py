"""Step 1 of the face_recognition comparison, run in face_recognition's own venv.

For every photo of the lfw_dev test half (same people and order as
`facerec eval --split test`), detect with face_recognition's default HOG
detector, keep the largest face, and save its 128-d encoding (zeros and
valid=False when no face is found).

Usage: FRVENV/bin/python benchmarks/face_recognition_encode.py LFW_DIR OUT.npz
"""

from __future__ import annotations

import sys
import time
import zlib
from pathlib import Path

import face_recognition
import numpy as np

SUFFIXES = {".jpg", ".jpeg", ".png"}


def test_half(name: str) -> bool:
    """The same deterministic split as facerec.datasets.person_split (odd CRC-32 = test)."""
    return zlib.crc32(name.encode("utf-8")) % 2 == 1


def main() -> None:
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    photos = [(f, d.name) for d in sorted(p for p in root.iterdir() if p.is_dir()) if test_half(d.name)
              for f in sorted(d.iterdir()) if f.suffix.lower() in SUFFIXES]
    X = np.zeros((len(photos), 128), np.float32)
    valid = np.zeros(len(photos), bool)
    t0 = time.perf_counter()
    for i, (path, _) in enumerate(photos):
        image = face_recognition.load_image_file(str(path))
        boxes = face_recognition.face_locations(image)  # HOG, the CLI's default
        if boxes:
            box = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
            X[i] = face_recognition.face_encodings(image, [box])[0]
            valid[i] = True
        if i % 500 == 0:
            print(f"{i}/{len(photos)}", file=sys.stderr, flush=True)
    secs = time.perf_counter() - t0
    np.savez(out, X=X, valid=valid, labels=np.array([n for _, n in photos]),
             paths=np.array([str(p) for p, _ in photos]), seconds=secs)
    print(f"{len(photos)} photos in {secs:.0f} s ({len(photos) / secs:.1f} photos/s)", file=sys.stderr)


if __name__ == "__main__":
    main()
