"""Cache frozen ImageNet ResNet50 features from several layers and poolings at once.

One pass over a half of lfw_dev (faces detected and cached as ``facerec eval``
does) writes, per photo, pooled maps of conv3/conv4/conv5 to an .npz under
``~/.cache/facerec/resnet50_layers`` (never in git). ``benchmarks/resnet50_heads.py``
then compares layers, poolings and heads on these cached vectors.

    .venv/bin/python benchmarks/resnet50_layers.py --split test --zoom 0.8
    .venv/bin/python benchmarks/resnet50_layers.py --split train --zoom 0.8 --flip
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facerec.align import face_crop  # noqa: E402
from facerec.detect import make_detector  # noqa: E402
from facerec.embed import BACKBONES, build_architecture  # noqa: E402
from facerec.images import load_image  # noqa: E402
from facerec.settings import Settings  # noqa: E402
from facerec.datasets import detect_dataset, labelled_photos  # noqa: E402
from facerec import weights  # noqa: E402


def pooled_model(settings: Settings, size: int = 224):
    """Frozen ResNet50 -> dict of pooled maps (all ``(N, cells*C)``, row-major cells, channels last)."""
    import keras
    import tensorflow as tf

    net = build_architecture(BACKBONES["resnet50"], size)
    weights.load_weights("resnet50", net, settings)
    net.trainable = False
    c3, c4, c5 = (net.get_layer(n).output for n in ("conv3_block4_out", "conv4_block6_out", "conv5_block3_out"))
    sub = keras.Model(net.input, [c3, c4, c5])
    sub.trainable = False

    def grid(x, k, s):
        y = tf.nn.avg_pool2d(x, k, s, "VALID")
        return tf.reshape(y, (tf.shape(y)[0], -1))

    @tf.function(reduce_retracing=True)
    def run(x):
        a3, a4, a5 = sub(x, training=False)
        return {
            "c3_g4": grid(a3, 7, 7),        # 28x28 -> 4x4
            "c4_g2": grid(a4, 7, 7),        # 14x14 -> 2x2
            "c4_g3": grid(a4, 6, 4),        # 14x14 -> 3x3 (overlapping)
            "c4_max": tf.reduce_max(a4, axis=(1, 2)),
            "c5_g2": grid(a5, 4, 3),        # 7x7 -> 2x2 (overlapping)
            "c5_avg": tf.reduce_mean(a5, axis=(1, 2)),
            "c5_max": tf.reduce_max(a5, axis=(1, 2)),
        }

    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared/faces/lfw_dev"))
    ap.add_argument("--split", choices=["train", "test", "all"], default="test")
    ap.add_argument("--zoom", type=float, default=0.8)
    ap.add_argument("--flip", action="store_true", help="also store the mirror image's features")
    ap.add_argument("--limit", type=int, default=0, help="only the first N photos (quick looks)")
    args = ap.parse_args()

    import tensorflow as tf

    settings = Settings()
    photos = labelled_photos(Path(args.data), split=args.split)
    paths = [p for p, _ in photos]
    labels = np.array([n for _, n in photos])
    if args.limit:
        paths, labels = paths[:args.limit], labels[:args.limit]
    t0 = time.time()
    faces = detect_dataset(paths, make_detector(settings), settings.cache_dir)
    print(f"detect {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    valid = np.array([f is not None for f in faces])
    run = pooled_model(settings)
    pre = BACKBONES["resnet50"].preprocess
    todo = np.flatnonzero(valid)
    out: dict[str, np.ndarray] = {}
    t0 = time.time()
    for b in range(0, len(todo), 32):
        chunk = todo[b:b + 32]
        crops = np.stack([face_crop(load_image(paths[i]), faces[i].box, faces[i].landmarks, 224, args.zoom)
                          for i in chunk])
        views = [crops, crops[:, :, ::-1]] if args.flip else [crops]
        for v, c in enumerate(views):
            res = run(tf.constant(pre(np.ascontiguousarray(c).astype(np.float32))))
            for k, a in res.items():
                key = k if v == 0 else k + "_flip"
                if key not in out:
                    out[key] = np.zeros((len(paths), a.shape[1]), dtype=np.float16)
                out[key][chunk] = np.asarray(a).astype(np.float16)
        if b % 640 == 0:
            done = b + len(chunk)
            print(f"{done}/{len(todo)} {done / (time.time() - t0):.1f} faces/s", file=sys.stderr, flush=True)
    dest = settings.cache_dir / "resnet50_layers"
    dest.mkdir(parents=True, exist_ok=True)
    f = dest / f"{args.split}_z{args.zoom:g}{'_flip' if args.flip else ''}.npz"
    np.savez(f, labels=labels, valid=valid, paths=np.array([str(p) for p in paths]), **out)
    print(f"{f} {len(todo)} faces in {time.time() - t0:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
