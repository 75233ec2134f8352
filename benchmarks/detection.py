"""Detector recall and precision on wider_dev (206 WIDER FACE photos, official gt.txt format).

Definitions:
- recall: of the ground-truth faces at least 24 px wide (w >= 24) and not marked invalid,
  the fraction matched by a detection at IoU >= 0.5; matching is greedy and one-to-one:
  detections in descending score order each take the unmatched eligible face they overlap most.
  Also reported per width bucket: 24-48, 48-96 and 96+ px (lower bound included), and as
  ``recall_16`` / ``recall_12``: the same rule with faces of at least 16 / 12 px eligible.
- precision: the fraction of detections that overlap SOME ground-truth face (any size,
  invalid ones included) at IoU >= 0.4 (not one-to-one).
- ms/photo: mean wall time of ``det.detect`` per photo, after one warm-up photo with the
  models loaded (photo decoding not included); ``os.getloadavg()`` is recorded before and after.

IoU is ``facerec.pipeline.iou``; detectors come from ``facerec.detect.make_detector``.

Run (from the repository root):
    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/detection.py --detector mtcnn --detector opencv
Options: --min-face-size, --detection-confidence, --max-detect-side, --detect-pixels (passed to
Settings when given), --decode (each photo read from its bytes and detected as ``facerec tag`` and
``identify`` do: ``facepath.decode_for_detection``, then ``detect_many`` with the decoding scale, and
the detector's ``finer()`` second look where nothing was found, as ``FacePath.locate`` does unless
``--no-retry`` (facerec 0.7's tagging did not look again); timed from the bytes), --label NAME (the JSON's file name part and table row), --limit N photos,
--data DIR, --json OUT (default benchmarks/results/detection_<label or detector>.json).
The JSON records the facerec commit imported and any loaded module that differs from it; to measure
another commit, put a checkout of it first: PYTHONPATH=/tmp/facerec_<commit> .venv/bin/python benchmarks/detection.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from facerec.detect import make_detector, rescale_face
from facerec.facepath import decode_for_detection
from facerec.images import load_image
from facerec.pipeline import iou
from facerec.settings import DETECTORS, Settings

ROOT = Path(__file__).resolve().parent.parent
BUCKETS = (("24-48", 24, 48), ("48-96", 48, 96), ("96+", 96, float("inf")))


def read_gt(path: Path) -> list[tuple[str, list[tuple[tuple[float, ...], bool]]]]:
    """``[(relative image path, [((x, y, w, h), invalid), ...]), ...]`` from a WIDER gt file."""
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    out, i = [], 0
    while i < len(lines):
        name, n = lines[i], int(lines[i + 1])
        rows = [ln.split() for ln in lines[i + 2:i + 2 + max(n, 1)]][:n]  # N == 0 still has one line
        out.append((name, [(tuple(float(v) for v in r[:4]), r[7] == "1") for r in rows]))
        i += 2 + max(n, 1)
    return out


def evaluate(faces, gt, smallest: float = 24) -> tuple[list[float], int]:
    """Widths of the eligible faces (``w >= smallest``, valid) matched (one-to-one, IoU >= 0.5), and
    detections hitting any face at 0.4."""
    eligible = [box for box, invalid in gt if box[2] >= smallest and not invalid]
    free, matched = set(range(len(eligible))), []
    for f in sorted(faces, key=lambda f: -f.score):
        best = max(free, key=lambda j: iou(f.box, eligible[j]), default=None)
        if best is not None and iou(f.box, eligible[best]) >= 0.5:
            free.discard(best)
            matched.append(eligible[best][2])
    hits = sum(any(iou(f.box, box) >= 0.4 for box, _ in gt) for f in faces)
    return matched, hits


def code_state() -> tuple[str, list[str]]:
    """The commit of the facerec checkout imported, and its loaded modules whose source differs from it."""
    top = Path(sys.modules["facerec"].__file__).resolve().parent.parent
    git = lambda *a: subprocess.run(["git", *a], cwd=top, capture_output=True).stdout
    files = sorted({Path(m.__file__).resolve() for k, m in list(sys.modules.items())
                    if k.split(".")[0] == "facerec" and getattr(m, "__file__", None)})
    changed = [f.relative_to(top).as_posix() for f in files
               if f.read_bytes() != git("show", f"HEAD:{f.relative_to(top).as_posix()}")]
    return git("rev-parse", "--short", "HEAD").decode().strip(), changed


COMMIT, CHANGED = code_state()  # right after the imports: the code that runs


def run(name: str, args, data: list) -> dict:
    overrides = {"min_face_size": args.min_face_size, "detection_confidence": args.detection_confidence,
                 "max_detect_side": args.max_detect_side, "detect_pixels": args.detect_pixels}
    settings = Settings(detector=name).replace(**overrides)
    det = make_detector(settings)

    def detect(raw: bytes, image, rel: str):
        if not args.decode:
            return det.detect(image)
        photo = decode_for_detection(raw, rel, settings)
        faces = det.detect_many([photo.pixels], [photo.scale])[0]
        if not faces and not args.no_retry and hasattr(det, "finer"):
            faces = det.finer().detect_many([photo.pixels], [photo.scale])[0]
        return [rescale_face(f, photo.scale) for f in faces]

    detect(data[0][3], data[0][1], data[0][0])  # warm-up: models loaded, graphs traced
    load_before = os.getloadavg()
    eligible_w, matched_w, n_det, hits, seconds = [], [], 0, 0, 0.0
    by_smallest: dict[int, list[int]] = {16: [0, 0], 12: [0, 0]}  # smallest width -> [matched, eligible]
    for rel, image, gt, raw in data:
        t0 = time.perf_counter()
        faces = detect(raw, image, rel)
        seconds += time.perf_counter() - t0
        matched, h = evaluate(faces, gt)
        matched_w += matched
        eligible_w += [box[2] for box, invalid in gt if box[2] >= 24 and not invalid]
        n_det, hits = n_det + len(faces), hits + h
        for lo, counts in by_smallest.items():
            counts[0] += len(evaluate(faces, gt, lo)[0])
            counts[1] += sum(box[2] >= lo and not invalid for box, invalid in gt)
    load_after = os.getloadavg()

    def share(ws_hit, ws_all, lo=24, hi=float("inf")):
        n = sum(lo <= w < hi for w in ws_all)
        return {"faces": n, "matched": sum(lo <= w < hi for w in ws_hit),
                "recall": round(sum(lo <= w < hi for w in ws_hit) / n, 4) if n else None}

    return {
        "detector": name, "photos": len(data), "facerec_commit": COMMIT,
        "facerec_source": str(Path(sys.modules["facerec"].__file__).parent), "facerec_changed_since_commit": CHANGED,
        "label": args.label or name, "decoded_as_tag_and_identify": bool(args.decode),
        "second_look_where_none_found": bool(args.decode and not args.no_retry),
        "settings": {k: getattr(settings, k) for k in ("detector", "min_face_size", "min_face_fraction",
                                                         "detection_confidence", "max_detect_side", "detect_pixels")},
        "recall": share(matched_w, eligible_w),
        **{f"recall_{lo}": {"faces": n, "matched": m, "recall": round(m / n, 4) if n else None}
           for lo, (m, n) in by_smallest.items()},
        "recall_by_width": {b: share(matched_w, eligible_w, lo, hi) for b, lo, hi in BUCKETS},
        "precision": {"detections": n_det, "hits": hits, "precision": round(hits / n_det, 4) if n_det else None},
        "ms_per_photo": round(1000 * seconds / len(data), 1),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after],
        "definitions": "recall: eligible = w >= 24 and not invalid, greedy one-to-one by score at IoU >= 0.5; "
                       "precision: detections with IoU >= 0.4 to any gt face (invalid/small included)",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--detector", action="append", choices=DETECTORS)
    p.add_argument("--min-face-size", type=int)
    p.add_argument("--detection-confidence", type=float)
    p.add_argument("--max-detect-side", type=int)
    p.add_argument("--detect-pixels", type=int)
    p.add_argument("--decode", action="store_true", help="decode and detect as facerec tag / identify do")
    p.add_argument("--no-retry", action="store_true", help="with --decode: no second look (facerec 0.7's tagging)")
    p.add_argument("--label", help="names the JSON file and the table row")
    p.add_argument("--limit", type=int)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "faces" / "wider_dev")
    p.add_argument("--json", type=Path, help="output file (one detector only); default per detector")
    args = p.parse_args()
    names = args.detector or list(DETECTORS)
    if args.json and len(names) > 1:
        p.error("--json names one file; give one --detector with it")
    data = [(rel, load_image(args.data / "images" / rel), gt, (args.data / "images" / rel).read_bytes())
            for rel, gt in read_gt(args.data / "gt.txt")[:args.limit]]
    print("| detector | recall (>= 24 px) | 24-48 | 48-96 | 96+ | >= 16 px | >= 12 px | precision | detections | "
          "ms/photo | load before -> after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        r = run(name, args, data)
        out = args.json or ROOT / "benchmarks" / "results" / f"detection_{args.label or name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(r, indent=2) + "\n")
        pct = lambda d: "n/a" if d["recall"] is None else f"{100 * d['recall']:.1f}% ({d['matched']}/{d['faces']})"
        buckets = " | ".join(pct(r["recall_by_width"][b]) for b, _, _ in BUCKETS)
        prec = r["precision"]
        prec_s = "n/a" if prec["precision"] is None else f"{100 * prec['precision']:.1f}% ({prec['hits']})"
        print(f"| {args.label or name} | {pct(r['recall'])} | {buckets} | {pct(r['recall_16'])} | {pct(r['recall_12'])} | "
              f"{prec_s} | {prec['detections']} | {r['ms_per_photo']} | "
              f"{r['loadavg_before'][0]:.2f} -> {r['loadavg_after'][0]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
