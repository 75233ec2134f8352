"""How well cluster_unknown groups real unknown faces.

Takes the test half of lfw_dev (people facerec's heads never saw): up to
PER_PERSON photos of each of the first PEOPLE people with at least MIN_PHOTOS
photos, plus SINGLES people with a single photo (strangers seen once). Every
photo's face nearest the centre is detected and embedded with the default
settings (the default base, MTCNN; FACEREC_BACKBONE picks another), then clustered at thresholds
around the base's recognition threshold (its scale depends on the base: face-resnet's strangers
score 0.90-0.95, mobilefacenet's 0.2-0.5, so fixed values mean nothing across bases). Prints
JSON: groups found, pairwise precision/recall (pairs put together that are the
same person / same-person pairs put together), adjusted Rand index, how many
one-photo strangers stayed alone, and clustering time.

    .venv/bin/python benchmarks/cluster_unknown.py [--people 25] [--per-person 8] [--singles 100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from sklearn.metrics import adjusted_rand_score

from facerec.cluster import cluster_unknown
from facerec.images import load_image
from facerec.pipeline import FaceRecognizer
from facerec.settings import Settings
from facerec.datasets import labelled_photos

LFW = Path(__file__).resolve().parents[1].parent / "shared" / "faces" / "lfw_dev"


def pair_scores(labels: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    same_pred = labels[:, None] == labels[None, :]
    same_true = truth[:, None] == truth[None, :]
    iu = np.triu_indices(len(labels), 1)
    p, t = same_pred[iu], same_true[iu]
    tp = float((p & t).sum())
    return tp / max(p.sum(), 1), tp / max(t.sum(), 1)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=25)
    ap.add_argument("--per-person", type=int, default=8)
    ap.add_argument("--min-photos", type=int, default=6)
    ap.add_argument("--singles", type=int, default=100)
    ap.add_argument("--data", default=str(LFW))
    ap.add_argument("--offsets", type=float, nargs="+", default=[-0.04, -0.02, -0.01, 0.0, 0.01, 0.02],
                    help="thresholds tried: the recognition threshold plus these")
    args = ap.parse_args()
    photos = labelled_photos(Path(args.data), split="test")
    by = {}
    for p, n in photos:
        by.setdefault(n, []).append(p)
    many = [n for n in sorted(by) if len(by[n]) >= args.min_photos][:args.people]
    singles = [n for n in sorted(by) if len(by[n]) == 1][:args.singles]
    chosen = [(p, n) for n in many for p in by[n][:args.per_person]] + [(by[n][0], n) for n in singles]
    rec = FaceRecognizer(Settings.from_env())
    vecs, truth = [], []
    t0 = time.perf_counter()
    for path, name in chosen:
        image = load_image(path)
        faces = rec.faces(image)
        if not faces:
            continue
        h, w = image.shape[:2]
        face = min(faces, key=lambda f: (f.box[0] + f.box[2] / 2 - w / 2) ** 2 + (f.box[1] + f.box[3] / 2 - h / 2) ** 2)
        vecs.append(face.vector)
        truth.append(name)
    embed_s = time.perf_counter() - t0
    X, y = np.stack(vecs).astype(np.float32), np.array(truth)
    single_set = set(singles)
    out = {"faces": len(X), "people": len(set(y)), "people_with_several": len(set(y) - single_set),
           "one_photo_strangers": int(sum(n in single_set for n in y)), "recognition_threshold": rec.threshold,
           "embed_seconds": round(embed_s, 1), "results": []}
    for t in sorted({round(rec.threshold + o, 3) for o in args.offsets}):
        for method in ("average", "graph"):
            t1 = time.perf_counter()
            labels = cluster_unknown(X, t, method=method)
            dt = time.perf_counter() - t1
            prec, recall = pair_scores(labels, y)
            sizes = Counter(labels.tolist())
            alone = sum(1 for i, n in enumerate(y) if n in single_set and sizes[labels[i]] == 1)
            out["results"].append({"threshold": t, "method": method, "groups": len(sizes),
                                   "groups_of_2_or_more": sum(1 for s in sizes.values() if s >= 2),
                                   "pair_precision": round(prec, 3), "pair_recall": round(recall, 3),
                                   "ari": round(adjusted_rand_score(y, labels), 3),
                                   "strangers_left_alone": f"{alone}/{out['one_photo_strangers']}",
                                   "cluster_ms": round(dt * 1000, 1)})
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
