"""Photos of celeba_dev (535 uncropped web photos, one person each) where the default detector finds
no face, and how many of them the second, finer pass (``Detector.finer()``: every face down to 12 px,
a pyramid starting at full size, same confidence) finds; with the time each pass takes.

Run (from the repository root):
    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/no_face_retry.py [--detector mtcnn] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from facerec.detect import make_detector
from facerec.images import is_image_path, load_image
from facerec.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "faces" / "celeba_dev"))
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "no_face_retry.json"))
    ap.add_argument("--detector", help="default: the product's (results/no_face_retry.json is mtcnn's)")
    args = ap.parse_args()
    paths = sorted(p for p in Path(args.data).rglob("*") if p.is_file() and is_image_path(p))
    det = make_detector(Settings().replace(detector=args.detector))
    finer = det.finer()
    load_before = os.getloadavg()
    missed, first_s, retry_s = [], 0.0, 0.0
    for p in paths:
        image = load_image(p)
        t = time.perf_counter()
        faces = det.detect(image)
        first_s += time.perf_counter() - t
        if not faces:
            t = time.perf_counter()
            again = finer.detect(image)
            retry_s += time.perf_counter() - t
            missed.append({"photo": str(p.relative_to(args.data)), "size": list(image.shape[1::-1]),
                           "found_on_retry": [{"box": [round(v) for v in f.box], "score": round(f.score, 3)}
                                              for f in again]})
    found = sum(1 for m in missed if m["found_on_retry"])
    out = {"detector": det.name, "photos": len(paths), "no_face_first_pass": len(missed), "found_by_retry": found,
           "no_face_after_retry": len(missed) - found, "first_pass_ms_per_photo": round(1000 * first_s / len(paths), 1),
           "retry_ms_per_retried_photo": round(1000 * retry_s / max(1, len(missed)), 1),
           "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "missed": missed}
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"{len(paths)} photos: no face in {len(missed)} at the first pass, {found} of them found by the retry "
          f"({len(missed) - found} left); first pass {out['first_pass_ms_per_photo']} ms/photo, "
          f"retry {out['retry_ms_per_retried_photo']} ms per retried photo")


if __name__ == "__main__":
    main()
