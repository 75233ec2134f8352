"""Crop zoom, input size, mirror views and LDA size for the frozen ImageNet ResNet50.

Train-half validation only (the lfw_dev test half is never touched): the train half's
people are split in two by CRC-32 of name + "/val"; heads are fitted on one side
(1,921 photos) and scored on the other (2,401 photos, 105 enrolled people, k=3).
"named@5%" = enrolled probes named right at the threshold that names 5% of strangers
(an oracle used only to compare).

Step 1 caches conv3_block4_out (area-resized to conv4's size) and conv4_block6_out maps
of every train-half face, float16, under ``~/.cache/facerec/resnet50_study``
(``--pool 7`` area-averages both to 7x7 first, a smaller file for zoom sweeps)::

    .venv/bin/python benchmarks/resnet50_study.py extract --zoom 1.2 [--size 288] [--mirror] [--pool 7]

Step 2 fits PCA + LDA heads on those caches and scores them::

    .venv/bin/python benchmarks/resnet50_study.py score --zoom 1.2 --feats c4g3,c3g4+c4g3 \\
        --heads 320:128:0.1,400:256:0.1 [--mirror] [--pool 7 --cells area]

Features ``cLgG`` are layer L (3 or 4) averaged over a G x G grid with the registry's
GridPool cell bounds, signed square root and L2 per cell, blocks joined and L2-normalised.
With ``--mirror`` each head is scored three ways: fitted on the original views only,
fitted on original + mirror, and the latter with mirror averaging at test time (the
product's ``flip``).
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facerec.align import face_crop  # noqa: E402
from facerec.embed import BACKBONES, build_architecture, l2_normalize  # noqa: E402
from facerec.evaluate import evaluate_open_set  # noqa: E402
from facerec.settings import Settings  # noqa: E402
from facerec.datasets import detect_dataset, labelled_photos  # noqa: E402
from facerec.train import fit_lda  # noqa: E402


def cache_file(zoom: float, size: int, mirror: bool, pool: int) -> Path:
    name = f"train_z{zoom:g}_s{size}{'_p%d' % pool if pool else ''}{'_mirror' if mirror else ''}.npz"
    return Settings().cache_dir / "resnet50_study" / name


def extract(args) -> None:
    import keras
    import tensorflow as tf

    from facerec import weights
    from facerec.detect import make_detector
    from facerec.images import load_image

    settings = Settings()
    photos = labelled_photos(Path(args.data), split="train")
    paths = [p for p, _ in photos]
    faces = detect_dataset(paths, make_detector(settings), settings.cache_dir)
    net = build_architecture(BACKBONES["resnet50"], args.size)
    weights.load_weights("resnet50", net, settings)
    net.trainable = False
    sub = keras.Model(net.input, [net.get_layer(n).output for n in ("conv3_block4_out", "conv4_block6_out")])

    @tf.function(reduce_retracing=True)
    def run(x):
        a3, a4 = sub(x, training=False)
        side = (args.pool, args.pool) if args.pool else tf.shape(a4)[1:3]
        return tf.image.resize(a3, side, method="area"), tf.image.resize(a4, side, method="area")

    maps: dict[str, np.ndarray] = {}
    todo = [i for i, f in enumerate(faces) if f is not None]
    t0 = time.time()
    for j in range(0, len(todo), 32):
        chunk = todo[j:j + 32]
        crops = np.stack([face_crop(load_image(paths[i]), faces[i].box, faces[i].landmarks, args.size, args.zoom)
                          for i in chunk])
        if args.mirror:
            crops = np.ascontiguousarray(crops[:, :, ::-1])
        for key, a in zip(("c3", "c4"), run(BACKBONES["resnet50"].preprocess(crops.astype(np.float32)))):
            if key not in maps:
                maps[key] = np.zeros((len(paths),) + tuple(a.shape[1:]), np.float16)
            maps[key][chunk] = a.numpy()
    out = cache_file(args.zoom, args.size, args.mirror, args.pool)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, labels=np.array([n for _, n in photos]), valid=np.array([f is not None for f in faces]), **maps)
    print(f"{out}: {len(todo)} faces in {time.time() - t0:.0f}s", file=sys.stderr)


def grid_features(maps: np.ndarray, g: int, cells: str = "gridpool") -> np.ndarray:
    """``(N, H, W, C)`` maps -> ``(N, g*g*C)``: cell means, signed sqrt, L2 per cell and overall.

    ``cells="gridpool"``: the registry's GridPool bounds (whole rows/columns, overlapping);
    ``"area"``: exact fractional areas (H/g rows per cell).
    """
    n, h, w, c = maps.shape
    if cells == "area":
        a = np.zeros((g, h), np.float32)
        for i in range(g):
            for r in range(h):
                a[i, r] = max(0.0, min((i + 1) * h / g, r + 1) - max(i * h / g, r))
        a /= a.sum(1, keepdims=True)
        out = np.einsum("ih,jw,nhwc->nijc", a, a, maps.astype(np.float32), optimize=True).reshape(n, g * g, c)
    else:
        out = np.stack([maps[:, (i * h) // g:-(-(i + 1) * h // g), (j * w) // g:-(-(j + 1) * w // g)]
                        .astype(np.float32).mean((1, 2)) for i in range(g) for j in range(g)], 1)
    out = l2_normalize(np.sign(out) * np.sqrt(np.abs(out)))
    return l2_normalize(out.reshape(n, -1))


def features(z, spec: str, cells: str) -> np.ndarray:
    """``"c3g4+c4g3"`` -> joined, L2-normalised features."""
    return l2_normalize(np.concatenate([grid_features(z[p[:2]], int(p[3:]), cells) for p in spec.split("+")], 1))


def score(X: np.ndarray, labels, valid) -> str:
    r = evaluate_open_set(l2_normalize(X), labels, k=3, valid=valid)
    return f"rank-1 {r.rank1:6.1%}  named@5% {r.named_right:6.1%}"


def score_all(args) -> None:
    z = np.load(cache_file(args.zoom, args.size, False, args.pool))
    zm = np.load(cache_file(args.zoom, args.size, True, args.pool)) if args.mirror else None
    y, valid = z["labels"], z["valid"]
    fit_side = np.array([zlib.crc32((n + "/val").encode()) % 2 == 0 for n in y])
    m, te = fit_side & valid, ~fit_side
    for spec in args.feats.split(","):
        X = features(z, spec, args.cells)
        Xm = features(zm, spec, args.cells) if zm is not None else None
        print(f"zoom {args.zoom:g} {args.size}px {spec:<12} no head            {score(X[te], y[te], valid[te])}")
        for head in args.heads.split(","):
            pca, dim, shrink = head.split(":")
            fits = [("fit 1 view", X[m], y[m])]
            if Xm is not None:
                fits.append(("fit 2 views", np.concatenate([X[m], Xm[m]]), np.concatenate([y[m], y[m]])))
            for label, Xf, yf in fits:
                mu, W = fit_lda(Xf, yf, int(pca), int(dim), float(shrink))
                e = l2_normalize((X[te] - mu) @ W)
                print(f"zoom {args.zoom:g} {args.size}px {spec:<12} lda {head:<11} {label}: "
                      f"{score(e, y[te], valid[te])}", flush=True)
                if Xm is not None and label == "fit 2 views":
                    e = e + l2_normalize((Xm[te] - mu) @ W)
                    print(f"zoom {args.zoom:g} {args.size}px {spec:<12} lda {head:<11} {label} + flip: "
                          f"{score(e, y[te], valid[te])}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["extract", "score"])
    ap.add_argument("--data", default=str(ROOT.parent / "shared/faces/lfw_dev"))
    ap.add_argument("--zoom", type=float, default=1.2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--pool", type=int, default=0, help="area-average the maps to POOL x POOL first (0: keep)")
    ap.add_argument("--mirror", action="store_true", help="extract: mirror images; score: also use them")
    ap.add_argument("--cells", choices=["gridpool", "area"], default="gridpool", help="grid cell bounds")
    ap.add_argument("--feats", default="c4g3")
    ap.add_argument("--heads", default="320:128:0.1", help="PCA:DIM:SHRINK,...")
    args = ap.parse_args()
    extract(args) if args.step == "extract" else score_all(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
