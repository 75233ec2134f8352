"""How the share of strangers given a name grows with the number of enrolled people (issue 13).

On lfw_dev's test half (``facerec.datasets.person_split``), each base's face vectors are computed once
with :func:`facerec.evaluate.embed_views` (the product's crops and embedders; the mirror view is used
only where the registry's ``flip`` says so) and cached under /tmp. Then, for N enrolled people
(drawn at random among people with at least k+1 detected photos; capped at how many there are),
k photos each are enrolled in a :class:`facerec.classify.CosineMatcher`, once at the base's fixed
registry threshold and once at the gallery-size-aware threshold the product uses (its shipped
:class:`facerec.thresholds.StrangerCurve`, for N people with k photos). Strangers are up to 2,000 photos (seeded sample) of people who are not enrolled; enrolled
probes are the enrolled people's other photos. Photos with no face found are left out of every role
(their count is reported). Each (base, k, N) is averaged over several seeded draws.

    nice -n 10 .venv/bin/python benchmarks/gallery_size.py [--shared /work/shared/faces]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

BASES = ("face-resnet", "mobilefacenet")


def load_vectors(shared: Path, cache: Path, split: str = "test") -> tuple[list, np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """``(paths, labels, {base: (N, D) vectors}, valid)`` for one half of lfw_dev, cached in ``cache``."""
    from facerec.detect import make_detector
    from facerec.embed import get_backbone, l2_normalize
    from facerec.evaluate import embed_views
    from facerec.settings import Settings
    from facerec.datasets import detect_dataset, labelled_photos

    photos = labelled_photos(shared / "lfw_dev", split=split)
    paths = [p for p, _ in photos]
    labels = np.array([n for _, n in photos])
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        if list(z["paths"]) == [str(p) for p in paths]:
            return paths, labels, {b: z[b] for b in BASES}, z["valid"]
    settings = Settings()
    faces = detect_dataset(paths, make_detector(settings), settings.cache_dir)
    valid = np.array([f is not None for f in faces])
    views = embed_views(BASES, paths, faces, settings)
    vecs = {}
    for b in BASES:
        plain, mirror, secs = views[b]
        vecs[b] = l2_normalize(plain + mirror) if get_backbone(b).flip else plain
        print(f"embedded {b}: {valid.sum()} faces in {secs:.0f} s", file=sys.stderr)
    np.savez(cache, paths=np.array([str(p) for p in paths]), valid=valid, **vecs)
    return paths, labels, vecs, valid


def one_draw(X, labels, valid, n, k, threshold, rng, max_strangers=2000) -> dict:
    from facerec.classify import CosineMatcher
    from facerec.types import UNKNOWN

    good = np.flatnonzero(valid)
    by_person: dict[str, list[int]] = {}
    for i in good:
        by_person.setdefault(labels[i], []).append(i)
    eligible = sorted(p for p, idx in by_person.items() if len(idx) >= k + 1)
    n_used = min(n, len(eligible))
    enrolled = set(rng.choice(eligible, size=n_used, replace=False))
    enrol, probe = [], []
    for p in sorted(enrolled):
        idx = rng.permutation(by_person[p])
        enrol += list(idx[:k])
        probe += list(idx[k:])
    strangers = np.array([i for i in good if labels[i] not in enrolled])
    if len(strangers) > max_strangers:
        strangers = rng.choice(strangers, size=max_strangers, replace=False)
    if callable(threshold):  # a gallery-size-aware threshold, from the enrolled photo counts
        threshold = threshold([k] * n_used)
    m = CosineMatcher(threshold=threshold).fit(X[enrol], labels[enrol])
    s_names = np.array([r.name for r in m.match(X[strangers])])
    p_names = np.array([r.name for r in m.match(X[probe])])
    return {"n": n_used, "eligible": len(eligible), "threshold": float(threshold), "strangers": int(len(strangers)), "probes": len(probe),
            "strangers_named": float(np.mean(s_names != UNKNOWN)),
            "named_right": float(np.mean(p_names == labels[probe])),
            "named_wrong": float(np.mean((p_names != UNKNOWN) & (p_names != labels[probe])))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path("/work/shared/faces"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/facerec_gallery_size_vectors.npz"))
    ap.add_argument("--sizes", nargs="+", type=int, default=[10, 100, 1000])
    ap.add_argument("-k", nargs="+", type=int, default=[1, 3])
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "gallery_size.json")
    args = ap.parse_args(argv)

    from facerec.embed import get_backbone

    load_before = os.getloadavg()
    t0 = time.time()
    paths, labels, vecs, valid = load_vectors(args.shared, args.cache)
    t_embed = time.time() - t0
    rows, results = [], {}
    from facerec.thresholds import stranger_curve

    for b in BASES:
        th = float(get_backbone(b).threshold)
        results[b] = {"threshold": th, "flip": bool(get_backbone(b).flip), "runs": []}
        modes = {"fixed": th, "gallery": stranger_curve(b).threshold}
        for (mode, rule), k, n in itertools.product(modes.items(), args.k, args.sizes):
            draws = [one_draw(vecs[b], labels, valid, n, k, rule, np.random.default_rng(1000 * k + d))
                     for d in range(args.draws)]
            summary = {"threshold_mode": mode, "threshold_used": draws[0]["threshold"], "k": k, "n_requested": n,
                       "n": draws[0]["n"], "eligible_people": draws[0]["eligible"], "draws": args.draws,
                       "per_draw": draws}
            for key in ("strangers_named", "named_right", "named_wrong"):
                v = np.array([d[key] for d in draws])
                summary[key] = {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}
            summary["strangers_mean"] = float(np.mean([d["strangers"] for d in draws]))
            summary["probes_mean"] = float(np.mean([d["probes"] for d in draws]))
            results[b]["runs"].append(summary)
            rows.append((b, summary))
    load_after = os.getloadavg()

    def pct(s, key):
        return f"{100 * s[key]['mean']:.1f} ({100 * s[key]['min']:.1f}-{100 * s[key]['max']:.1f})"

    lines = ["| base | threshold (mode) | k | N enrolled | strangers | enrolled probes | strangers named % (min-max) "
             "| probes named right % (min-max) | probes named wrong % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for b, s in rows:
        n = f"{s['n']}" + ("" if s["n"] == s["n_requested"] else f" (asked {s['n_requested']}; all eligible)")
        lines.append(f"| {b} | {s['threshold_used']:.4f} ({s['threshold_mode']}) | {s['k']} | {n} | {s['strangers_mean']:.0f} | {s['probes_mean']:.0f} | "
                     f"{pct(s, 'strangers_named')} | {pct(s, 'named_right')} | {100 * s['named_wrong']['mean']:.1f} |")
    table = "\n".join(lines)
    print(table)
    out = {"issue": 13,
           "protocol": "lfw_dev test half (person_split). Per draw: N people drawn (seeded, rng 1000*k+draw) among "
                       "people with >= k+1 detected photos (N capped at that count); k of their photos enrolled "
                       "(CosineMatcher, centroid rule, base's registry threshold, then the gallery-size-aware one), the rest are enrolled probes; "
                       "strangers = up to 2000 photos (seeded sample) of test-half people not enrolled. Photos with "
                       "no face found are excluded from all roles. Vectors: facerec.evaluate.embed_views, plain "
                       "view (neither base mirror-averages by default).",
           "photos": len(paths), "no_face": int((~valid).sum()), "people": int(len(set(labels))),
           "command": "nice -n 10 python benchmarks/gallery_size.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "seconds_loading_or_embedding": round(t_embed, 1), "seconds": round(time.time() - t0, 1),
           "loadavg_before": list(load_before), "loadavg_after": list(load_after),
           "results": results, "table_markdown": table}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
