"""Does fusing mobilefacenet with face-resnet pay? (issue 13)

Each face's plain vector from both bases (lfw_dev's test half: ``gallery_size.py``'s cached
vectors; celeba_dev: detected with ``facerec.datasets.detect_dataset`` and embedded with
``facerec.evaluate.embed_views``). Fused = the two unit vectors concatenated and normalised, so a
match score is the mean of the two cosines. The protocols of ``facerec.evaluate`` (LFW test half,
k photos enrolled; celeba_dev folds over people), each base and the fusion at its own best
threshold (an oracle: the fairest case for fusion): rank-1, best overall, named at 1% strangers.

    nice -n 5 .venv/bin/python benchmarks/fusion.py [--shared /work/shared/faces]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path("/work/shared/faces"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/facerec_gallery_size_vectors.npz"))
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "fusion.json")
    args = ap.parse_args(argv)

    from gallery_size import load_vectors

    from facerec.classify import calibrate_threshold
    from facerec.detect import make_detector
    from facerec.embed import l2_normalize
    from facerec.evaluate import best_overall, embed_views, folds_open_set_scores, open_set_metrics, open_set_scores
    from facerec.settings import Settings
    from facerec.datasets import detect_dataset, labelled_photos

    load_before = os.getloadavg()
    _, lfw_labels, lfw_vecs, lfw_valid = load_vectors(args.shared, args.cache)
    photos = labelled_photos(args.shared / "celeba_dev")
    settings = Settings()
    faces = detect_dataset([p for p, _ in photos], make_detector(settings), settings.cache_dir)
    views = embed_views(["face-resnet", "mobilefacenet"], [p for p, _ in photos], faces, settings)
    sets = {"lfw_test": (lfw_vecs, lfw_labels, lfw_valid, "split"),
            "celeba_dev": ({b: v[0] for b, v in views.items()}, np.array([n for _, n in photos]),
                           np.array([f is not None for f in faces]), "folds")}
    rows, lines = {}, ["| set, k | face-resnet | mobilefacenet | fused 1:1 |", "|---|---|---|---|"]
    for name, (vecs, labels, valid, protocol) in sets.items():
        variants = {"face-resnet": vecs["face-resnet"], "mobilefacenet": vecs["mobilefacenet"],
                    "fused 1:1": l2_normalize(np.hstack([vecs["face-resnet"], vecs["mobilefacenet"]]))}
        for k in (1, 3):
            cells = {}
            for label, X in variants.items():
                if protocol == "split":
                    pred, score, truth, known = open_set_scores(X, labels, k, 0, valid)
                else:
                    pred, score, truth, known, _ = folds_open_set_scores(X, labels, k, valid=valid)
                best, _ = best_overall(pred, score, truth, known)
                at1 = open_set_metrics(pred, score, truth, known, calibrate_threshold(score[~known], 0.01))
                cells[label] = {"rank1": open_set_metrics(pred, score, truth, known, 0.0).rank1,
                                "best_overall": best, "named_at_1pct_strangers": at1.named_right}
            rows[f"{name}_k{k}"] = cells
            lines.append(f"| {name}, k={k} | " + " | ".join(
                f"{100 * c['rank1']:.1f} / {100 * c['best_overall']:.1f} / {100 * c['named_at_1pct_strangers']:.1f}"
                for c in cells.values()) + " |")
    table = "\n".join(lines)
    print(table)
    out = {"issue": 13, "cells": "rank1 / best_overall (oracle threshold) / named right at the threshold naming 1% "
                                 "of strangers", "results": rows, "table_markdown": table,
           "command": "python benchmarks/fusion.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg())}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
