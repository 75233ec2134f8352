"""Compare ResNet50 feature layers, poolings and heads on cached vectors (k=3 open set).

Reads the caches of ``benchmarks/resnet50_layers.py`` (train and test halves of
lfw_dev), fits each head on the *train* half only and scores the *test* half
with :func:`facerec.evaluate.evaluate_open_set` (rank-1 needs no threshold;
"named@5%" is the share of enrolled probes named right at the threshold that
names 5% of strangers, an oracle used only to compare heads).

    .venv/bin/python benchmarks/resnet50_heads.py --zoom 0.8 [--only c4_g2,...]
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

from facerec.embed import l2_normalize  # noqa: E402
from facerec.evaluate import evaluate_open_set  # noqa: E402
from facerec.settings import Settings  # noqa: E402
from facerec.train import _train_cosface, fit_lda  # noqa: E402


def cells_mean(a: np.ndarray, n: int, c: int) -> np.ndarray:
    """``(N, n*n*C)`` grid cells -> ``(N, C)`` mean over cells."""
    return a.reshape(len(a), n * n, c).mean(1)


def g4_to_g2(a: np.ndarray, c: int) -> np.ndarray:
    x = a.reshape(len(a), 4, 4, c)
    return x.reshape(len(a), 2, 2, 2, 2, c).mean((2, 4)).reshape(len(a), -1)


def block(a: np.ndarray, cells: int = 1) -> np.ndarray:
    """Signed square root, then L2 per cell, then L2 over the block (float32)."""
    a = np.asarray(a, dtype=np.float32)
    a = np.sign(a) * np.sqrt(np.abs(a))
    x = l2_normalize(a.reshape(len(a), cells, -1)).reshape(len(a), -1)
    return l2_normalize(x)


def variants(z: dict) -> dict[str, np.ndarray]:
    """Named feature vectors built from one cache."""
    f = {k: np.asarray(z[k], np.float32) for k in z.files if k[:1] == "c"}
    v = {
        "c3_gap": cells_mean(f["c3_g4"], 4, 512),
        "c3_g2": g4_to_g2(f["c3_g4"], 512),
        "c3_g4": f["c3_g4"],
        "c4_gap": cells_mean(f["c4_g2"], 2, 1024),
        "c4_g2": f["c4_g2"],
        "c4_g3": f["c4_g3"],
        "c4_max": f["c4_max"],
        "c5_gap": f["c5_avg"],
        "c5_max": f["c5_max"],
        "c5_g2": f["c5_g2"],
    }
    return v


CELLS = {"c3_gap": 1, "c3_g2": 4, "c3_g4": 16, "c4_gap": 1, "c4_g2": 4, "c4_g3": 9, "c4_max": 1,
         "c5_gap": 1, "c5_max": 1, "c5_g2": 4}


def combo(v: dict, names: str, norm: bool = True) -> np.ndarray:
    parts = names.split("+")
    if not norm:
        return np.concatenate([v[p] for p in parts], axis=1)
    return np.concatenate([block(v[p], CELLS[p]) for p in parts], axis=1)


def score(X, labels, valid) -> dict:
    r = evaluate_open_set(l2_normalize(X), labels, k=3, valid=valid)
    return {"rank1": r.rank1, "named5": r.named_right, "overall": r.overall, "thr": r.threshold}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoom", default="0.8")
    ap.add_argument("--train", default=None, help="train cache file name (default train_z<zoom>.npz)")
    ap.add_argument("--test", default=None)
    ap.add_argument("--feats", default="c4_gap,c4_g2,c4_g3,c3_gap,c3_g2,c3_g4,c5_gap,c5_max,c4_max,c5_g2,"
                    "c3_g2+c4_g2,c4_g2+c5_gap,c3_g2+c4_g2+c5_gap,c3_gap+c4_gap+c5_gap")
    ap.add_argument("--heads", default="none,lda")
    ap.add_argument("--pca", default="512")
    ap.add_argument("--dims", default="128")
    ap.add_argument("--shrink", default="0.001")
    ap.add_argument("--val", action="store_true", help="train-half validation: fit on half its people, score the rest")
    args = ap.parse_args()
    d = Settings().cache_dir / "resnet50_layers"
    tr = np.load(d / (args.train or f"train_z{args.zoom}.npz"))
    ytr, valid_tr = tr["labels"], tr["valid"]
    vtr = variants(tr)
    if args.val:  # split the train half's people in two: fit on one, score on the other
        side = np.array([zlib.crc32((n + "/val").encode()) % 2 == 0 for n in ytr])
        vte = {k: a[~side] for k, a in vtr.items()}
        vtr = {k: a[side] for k, a in vtr.items()}
        yte, valid_te, ytr, valid_tr = ytr[~side], valid_tr[~side], ytr[side], valid_tr[side]
    else:
        te = np.load(d / (args.test or f"test_z{args.zoom}.npz"))
        vte = variants(te)
        yte, valid_te = te["labels"], te["valid"]
    print(f"fit on {len(ytr)} photos / {len(set(ytr))} people; scored on {len(yte)} photos / "
          f"{len(set(yte))} people", flush=True)
    print(f"{'features':<28}{'head':<26}{'rank1':>8}{'named@5%':>10}{'overall':>9}", flush=True)
    for names in args.feats.split(","):
        for norm in (True,):
            Xtr, Xte = combo(vtr, names, norm), combo(vte, names, norm)
            for head in args.heads.split(","):
                if head == "none":
                    r = score(Xte, yte, valid_te)
                    print(f"{names:<28}{'none (cosine)':<26}{r['rank1']:>8.1%}{r['named5']:>10.1%}"
                          f"{r['overall']:>9.1%}", flush=True)
                    if names == "c4_gap":
                        r = score(vte["c4_gap"], yte, valid_te)
                        print(f"{'c4_gap raw (today)':<28}{'none (cosine)':<26}{r['rank1']:>8.1%}"
                              f"{r['named5']:>10.1%}{r['overall']:>9.1%}", flush=True)
                    continue
                if head == "cosface":
                    t = time.time()
                    cls, yi = np.unique(ytr[valid_tr], return_inverse=True)
                    h = _train_cosface(Xtr[valid_tr], yi, len(cls), 128, 40, 1e-2, 0)
                    r = score(np.asarray(h.predict(Xte, batch_size=512, verbose=0)), yte, valid_te)
                    print(f"{names:<28}{'cosface d128':<26}{r['rank1']:>8.1%}{r['named5']:>10.1%}"
                          f"{r['overall']:>9.1%}  ({time.time() - t:.0f}s)", flush=True)
                    continue
                for p in map(int, args.pca.split(",")):
                    for dim in map(int, args.dims.split(",")):
                        for sh in map(float, args.shrink.split(",")):
                            t = time.time()
                            m = valid_tr
                            mu, W = fit_lda(Xtr[m], ytr[m], min(p, Xtr.shape[1]), dim, sh)
                            r = score((Xte - mu) @ W, yte, valid_te)
                            print(f"{names:<28}{f'lda pca{p} d{dim} s{sh:g}':<26}{r['rank1']:>8.1%}"
                                  f"{r['named5']:>10.1%}{r['overall']:>9.1%}  ({time.time() - t:.0f}s)",
                                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
