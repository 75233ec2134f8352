"""facerec's end-to-end speed on the first N photos of the lfw_dev test half.

Times, with a one-person gallery and models loaded before timing:
- batched: `identify_files` as `facerec identify` runs it (8 photos per batch);
- one at a time: read, detect, align, embed and match each photo on its own.

Usage: [FACEREC_BACKBONE=resnet50] .venv/bin/python benchmarks/facerec_speed.py LFW_DIR [N]
"""

import sys
import tempfile
import time
from pathlib import Path

from facerec import FaceRecognizer, Settings, identify_files, load_image
from facerec.images import read_bytes
from facerec.datasets import labelled_photos

root, n = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 500
paths = [p for p, _ in labelled_photos(root, split="test")][:n]
with tempfile.TemporaryDirectory() as gallery:
    rec = FaceRecognizer(Settings.from_env(gallery=Path(gallery)))
    rec.enroll("someone", read_bytes(paths[0]), source=str(paths[0]), largest=True)
    rec.identify(load_image(paths[1]))  # load models, fit the matcher
    t0 = time.perf_counter()
    batched = list(identify_files(rec, paths))
    t1 = time.perf_counter()
    single = [rec.identify(load_image(p)) for p in paths]
    t2 = time.perf_counter()
print(f"{len(paths)} photos: batched {len(paths) / (t1 - t0):.1f} photos/s ({t1 - t0:.1f} s), "
      f"one at a time {len(paths) / (t2 - t1):.1f} photos/s ({t2 - t1:.1f} s); "
      f"faces found {sum(len(r.faces) for r in batched)} batched, {sum(map(len, single))} one at a time")
