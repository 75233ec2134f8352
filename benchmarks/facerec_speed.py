"""End-to-end facerec speed on the first N photos of the lfw_dev test half: read,
detect (MTCNN), align and embed one photo at a time, as `facerec identify` does.

Usage: .venv/bin/python benchmarks/facerec_speed.py LFW_DIR [N]   (models load before timing)
"""

import sys
import time
from pathlib import Path

import numpy as np

from facerec import FaceRecognizer, Settings, load_image
from facerec.train import labelled_photos

root, n = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 500
paths = [p for p, _ in labelled_photos(root, split="test")][:n]
rec = FaceRecognizer(Settings(gallery=Path("/tmp/facerec-speed-gallery")))
rec.faces(load_image(paths[0]))  # load models
t0 = time.perf_counter()
found = [len(rec.faces(load_image(p))) for p in paths]
secs = time.perf_counter() - t0
print(f"{len(paths)} photos in {secs:.1f} s: {len(paths) / secs:.1f} photos/s; faces found in "
      f"{np.mean(np.array(found) > 0):.1%}")
