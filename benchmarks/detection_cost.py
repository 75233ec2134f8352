"""What searching below the minimum face size costs: YuNet with ``detect_pixels`` 0 (facerec 0.7) against
the default budget, timed photo by photo in turn (so both see the same load), photos decoded as ``facerec tag``
does; the default also takes the finer second look where nothing was found (``FacePath.locate``), which 0.7's
tagging did not.

Folders: wider_dev (~1024 px, 206 photos), group_photos, and 12 MP JPEGs made from celeb5 photos (upscaled
to 4032x3024, quality 90, as benchmarks/real_photos.py's camera12mp folder; ``--camera N`` of them). Reports,
per folder and setting, mean ms per photo (decode + detect + O-Net points) and faces found.

Run (from the repository root):  .venv/bin/python benchmarks/detection_cost.py [--json OUT]
Writes benchmarks/results/detection_cost.json with the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "faces"


def camera_photos(n: int) -> list[tuple[str, bytes]]:
    from PIL import Image

    out = []
    for photo in sorted((SHARED / "celeb5" / "val").rglob("*.jpg"))[:n]:
        img = Image.open(photo).convert("RGB").resize((4032, 3024), Image.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append((photo.name, buf.getvalue()))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--camera", type=int, default=20)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "detection_cost.json")
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from facerec.detect import make_detector
    from facerec.facepath import decode_for_detection
    from facerec.settings import Settings

    folders = {
        "wider_dev": [(f.name, f.read_bytes()) for f in sorted((SHARED / "wider_dev" / "images").rglob("*.jpg"))],
        "group_photos": [(f.name, f.read_bytes()) for f in sorted((SHARED / "group_photos").iterdir())],
        "camera12mp": camera_photos(args.camera),
    }
    setups = {"detect_pixels=0 (0.7)": Settings(detect_pixels=0), "default": Settings()}
    dets = {name: make_detector(s) for name, s in setups.items()}
    for name, det in dets.items():  # warm-up: O-Net loaded
        photo = decode_for_detection(folders["group_photos"][0][1], "x.jpg", setups[name])
        det.detect_many([photo.pixels], [photo.scale])
    load_before = os.getloadavg()
    results = {}
    for folder, photos in folders.items():
        acc = {name: {"seconds": 0.0, "faces": 0} for name in setups}
        for i, (fname, data) in enumerate(photos):
            order = list(setups) if i % 2 == 0 else list(setups)[::-1]
            for name in order:
                t0 = time.perf_counter()
                photo = decode_for_detection(data, fname, setups[name])
                faces = dets[name].detect_many([photo.pixels], [photo.scale])[0]
                if not faces and name == "default":
                    faces = dets[name].finer().detect_many([photo.pixels], [photo.scale])[0]
                acc[name]["seconds"] += time.perf_counter() - t0
                acc[name]["faces"] += len(faces)
        results[folder] = {name: {"photos": len(photos), "ms_per_photo": round(1000 * a["seconds"] / len(photos), 1),
                                  "faces": a["faces"]} for name, a in acc.items()}
        base, new = results[folder]["detect_pixels=0 (0.7)"], results[folder]["default"]
        results[folder]["time_ratio_default_vs_0.7"] = round(new["ms_per_photo"] / base["ms_per_photo"], 2)
        print(folder, json.dumps(results[folder]), flush=True)
    out = {"what": __doc__.splitlines()[0], "results": results,
           "loadavg_before": [round(v, 2) for v in load_before],
           "loadavg_after": [round(v, 2) for v in os.getloadavg()], "cpus": os.cpu_count()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
