"""The core issue's acceptance run, through the CLI, on a throw-away gallery.

1. `facerec enroll celeb5/train` (all five people);
2. `facerec identify celeb5/val`: share of photos whose best face gets the right name;
3. `facerec identify` on 40 photos of lfw_dev people never enrolled: share called `unknown`.

Usage: .venv/bin/python benchmarks/celeb5.py [--backbone B]  (prints a JSON summary)
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FACES = Path(__file__).resolve().parents[2] / "shared" / "faces"


def facerec(*args: str) -> str:
    exe = Path(sys.executable).with_name("facerec")
    return subprocess.run([str(exe), *args, "-q"], check=True, capture_output=True, text=True).stdout


def best_names(out: str) -> dict[str, str]:
    best: dict[str, tuple[str, float]] = {}
    for path, name, score in csv.reader(io.StringIO(out)):
        if path not in best or float(score) > best[path][1]:
            best[path] = (name, float(score))
    return {p: n for p, (n, _) in best.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="face-resnet")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        g = ["--gallery", tmp, "--backbone", args.backbone]
        t0 = time.perf_counter()
        facerec("enroll", "--yes", str(FACES / "celeb5" / "train"), *g)
        t1 = time.perf_counter()
        val = sorted((FACES / "celeb5" / "val").glob("*/*"))
        names = best_names(facerec("identify", *map(str, val), *g))
        t2 = time.perf_counter()
        right = sum(names.get(str(p)) == p.parent.name for p in val)
        strangers = sorted(p for d in sorted((FACES / "lfw_dev").iterdir())[:40] for p in sorted(d.iterdir())[:1])
        out = facerec("identify", *map(str, strangers), *g)
        rows = list(csv.reader(io.StringIO(out)))
        named = {r[0] for r in rows if r[1] != "unknown"}
    print(json.dumps({
        "backbone": args.backbone, "val_photos": len(val), "val_named_right": right,
        "val_accuracy": round(right / len(val), 3), "strangers": len(strangers),
        "strangers_called_unknown": round(1 - len(named) / len(strangers), 3),
        "enroll_seconds": round(t1 - t0, 1), "identify_val_seconds": round(t2 - t1, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
