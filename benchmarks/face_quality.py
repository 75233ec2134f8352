"""Does a face-quality score tell a wrong name before it is given? (issue 13)

For every photo of celeba_dev (uncropped web photos) and of lfw_dev's test half, the largest
face is detected (``facerec.datasets.detect_dataset``, cached), aligned for the base, embedded
(``facerec.evaluate.embed_views``) and measured by :func:`facerec.quality.face_quality`
(eye distance, sharpness, yaw). Then the open-set protocols of ``facerec.evaluate`` run at
the base's shipped threshold: celeba_dev folds over people (k photos enrolled, 4 folds, 3
seeds), lfw_dev test half (k photos enrolled, one seed). Each probe's outcome is kept:
right (named right, or a stranger left unknown), wrong name, stranger named, missed
(an enrolled person left unknown).

Reported: the error rates of faces below each quantile of each measure, and what happens if
probes past a limit are called "unknown" (the gate ``Settings.min_quality`` would apply):
overall, named right, strangers named, for a grid of limits. The shipped limits in
``facerec/quality.py`` are chosen from this table.

    nice -n 10 .venv/bin/python benchmarks/face_quality.py [--shared /work/shared/faces] [-k 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def dataset(shared: Path, name: str, base: str):
    """``(paths, labels, faces, vectors, qualities)`` of one data set (largest face per photo)."""
    from facerec.align import face_crop
    from facerec.detect import make_detector
    from facerec.embed import get_backbone
    from facerec.evaluate import embed_views
    from facerec.images import load_image
    from facerec.quality import face_quality
    from facerec.settings import Settings
    from facerec.datasets import detect_dataset, labelled_photos

    folder, split = {"celeba_dev": ("celeba_dev", "all"), "lfw_test": ("lfw_dev", "test")}[name]
    photos = labelled_photos(shared / folder, split=split)
    paths = [p for p, _ in photos]
    labels = np.array([n for _, n in photos])
    settings = Settings()
    faces = detect_dataset(paths, make_detector(settings), settings.cache_dir)
    plain, _, _ = embed_views([base], paths, faces, settings)[base]
    bb = get_backbone(base)
    qualities = []
    for p, f in zip(paths, faces):
        if f is None:
            qualities.append(None)
            continue
        crop = face_crop(load_image(p), f.box, f.landmarks, bb.input_size, bb.zoom)
        qualities.append(face_quality(f, crop))
    return paths, labels, faces, plain, qualities


def outcomes(X, labels, valid, threshold: float, protocol: str, k: int):
    """Per probe: ``(index, pred, score, truth, known)`` pooled over the protocol's folds/seeds."""
    from facerec.evaluate import _best_matches, fold_splits, split_protocol

    splits = fold_splits(labels, k) if protocol == "folds" else [split_protocol(labels, k, 0)]
    rows = []
    for enrol, probe, known in splits:
        pred, score = _best_matches(X, labels, valid, enrol, probe, "centroid")
        rows.append((probe, pred, score, labels[probe], known))
    cat = [np.concatenate([r[i] for r in rows]) for i in range(5)]
    idx, pred, score, truth, known = cat
    named = (score >= threshold) & (pred != "")
    return idx, np.where(named, pred, "unknown"), truth, known


def rates(name, truth, known, keep) -> dict:
    """Open-set figures when probes with ``keep`` False are called unknown."""
    name = np.where(keep, name, "unknown")
    right = np.where(known, name == truth, name == "unknown")
    return {"overall": float(right.mean()), "named_right": float((name == truth)[known].mean()),
            "strangers_named": float((name != "unknown")[~known].mean()),
            "wrong_name": float(((name != "unknown") & (name != truth))[known].mean()),
            "gated": float((~keep).mean())}


def degradation(shared: Path, bases=("face-resnet", "mobilefacenet"), step: int = 3) -> dict:
    """Where the limits on sharpness and size come from: every ``step``-th celeba_dev face,
    aligned for each base, blurred (Gaussian, sigma in crop pixels) or shrunk so its eyes are
    ``d`` pixels apart and enlarged back; per level, the sharpness it measures and how far its
    vector moved from the original's (cosine, 10th percentile and median)."""
    import cv2

    from facerec.align import face_crop, template
    from facerec.detect import make_detector
    from facerec.embed import load_embedder
    from facerec.images import load_image
    from facerec.quality import sharpness_of
    from facerec.settings import Settings
    from facerec.datasets import detect_dataset, labelled_photos

    photos = labelled_photos(shared / "celeba_dev")[::step]
    paths = [p for p, _ in photos]
    settings = Settings()
    faces = detect_dataset(paths, make_detector(settings), settings.cache_dir)
    out = {}
    for base in bases:
        e = load_embedder(settings.replace(backbone=base), use_head=False)
        n = e.input_size
        crops = np.stack([face_crop(load_image(p), f.box, f.landmarks, n, e.backbone.zoom)
                          for p, f in zip(paths, faces) if f is not None])
        eyes = float(np.hypot(*(template(n, e.backbone.zoom)[1] - template(n, e.backbone.zoom)[0])))
        v0 = e.embed(crops)
        rows = []
        for kind, levels in (("blur_sigma", (1, 1.5, 2, 3, 4)), ("eye_distance", (6, 8, 10, 12, 16, 24))):
            for level in levels:
                if kind == "blur_sigma":
                    b = np.stack([cv2.GaussianBlur(c, (0, 0), level) for c in crops])
                else:
                    m = max(2, int(round(n * level / eyes)))
                    b = np.stack([cv2.resize(cv2.resize(c, (m, m), interpolation=cv2.INTER_AREA), (n, n))
                                  for c in crops])
                sim = (e.embed(b) * v0).sum(axis=1)
                sharp = np.array([sharpness_of(c) for c in b])
                rows.append({kind: level, "sharpness_median": float(np.median(sharp)),
                             "cos_to_original_p10": float(np.percentile(sim, 10)),
                             "cos_to_original_median": float(np.median(sim))})
                print(f"{base} {kind} {level}: sharpness {np.median(sharp):.0f}, cos to original "
                      f"p10 {np.percentile(sim, 10):.3f} median {np.median(sim):.3f}")
        out[base] = {"faces": int(len(crops)), "crop_eye_distance": eyes,
                     "original_sharpness_median": float(np.median([sharpness_of(c) for c in crops])), "levels": rows}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path("/work/shared/faces"))
    ap.add_argument("--base", default="face-resnet")
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "face_quality.json")
    ap.add_argument("--parts", nargs="+", choices=("protocols", "degrade"), default=["protocols", "degrade"])
    args = ap.parse_args(argv)

    from facerec.embed import get_backbone

    load_before = os.getloadavg()
    t0 = time.time()
    threshold = float(get_backbone(args.base).threshold)
    out = {"issue": 13, "base": args.base, "threshold": threshold, "k": args.k,
           "command": "python benchmarks/face_quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "sets": {}}
    if args.json.is_file() and "protocols" not in args.parts:  # keep the other part's results
        out = {**json.loads(args.json.read_text()), **{k: v for k, v in out.items() if k != "sets"}}
    if "degrade" in args.parts:
        out["degradation"] = degradation(args.shared)
    for set_name, protocol in (("celeba_dev", "folds"), ("lfw_test", "split")) if "protocols" in args.parts else ():
        paths, labels, faces, X, qual = dataset(args.shared, set_name, args.base)
        valid = np.array([f is not None for f in faces])
        idx, name, truth, known = outcomes(X, labels, valid, threshold, protocol, args.k)
        ok = valid[idx]
        idx, name, truth, known = idx[ok], name[ok], truth[ok], known[ok]
        eye = np.array([qual[i].eye_distance for i in idx])
        sharp = np.array([qual[i].sharpness for i in idx])
        yaw = np.abs(np.array([qual[i].yaw for i in idx]))
        wrong = np.where(known, (name != "unknown") & (name != truth), name != "unknown")
        missed = known & (name == "unknown")
        measures = {"eye_distance": (eye, "low"), "sharpness": (sharp, "low"), "abs_yaw": (yaw, "high")}
        by_quantile = {}
        for m, (v, bad) in measures.items():
            rows = []
            for q in (0.02, 0.05, 0.1, 0.25, 0.5):
                cut = np.quantile(v, q if bad == "low" else 1 - q)
                sel = v <= cut if bad == "low" else v >= cut
                rows.append({"worst_fraction": q, "limit": float(cut), "probes": int(sel.sum()),
                             "error_rate": float(wrong[sel].mean()), "missed_rate": float(missed[sel].mean())})
            by_quantile[m] = {"all_error_rate": float(wrong.mean()), "all_missed_rate": float(missed.mean()),
                              "worst": rows}
        gates = {"none": rates(name, truth, known, np.ones(len(idx), bool))}
        for lim in (8, 10, 12, 16, 20):
            gates[f"eye_distance>={lim}"] = rates(name, truth, known, eye >= lim)
        for lim in (10, 20, 40, 60, 80):
            gates[f"sharpness>={lim}"] = rates(name, truth, known, sharp >= lim)
        for lim in (0.3, 0.4, 0.5, 0.6, 0.8):
            gates[f"abs_yaw<={lim}"] = rates(name, truth, known, yaw <= lim)
        out["sets"][set_name] = {"protocol": protocol, "photos": len(paths), "no_face": int((~valid).sum()),
                                 "probes": int(len(idx)), "by_quantile": by_quantile, "gates": gates}
        print(f"\n{set_name}: {len(idx)} probes")
        for m, d in by_quantile.items():
            print(f"  {m}: all error {100 * d['all_error_rate']:.1f}%  " + "  ".join(
                f"worst {100 * r['worst_fraction']:.0f}% (<{r['limit']:.3g}): err {100 * r['error_rate']:.1f}% "
                f"missed {100 * r['missed_rate']:.1f}%" for r in d["worst"]))
        for g, r in gates.items():
            print(f"  gate {g:>18}: overall {100 * r['overall']:.2f}  right {100 * r['named_right']:.2f}  "
                  f"strangers {100 * r['strangers_named']:.2f}  wrong {100 * r['wrong_name']:.2f}  "
                  f"gated {100 * r['gated']:.1f}%")
    out["seconds"] = round(time.time() - t0, 1)
    out["loadavg_before"], out["loadavg_after"] = list(load_before), list(os.getloadavg())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
