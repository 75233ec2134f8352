"""Which crop framing suits a base: rank-1 and open-set metrics on the *train* half of
lfw_dev (k=3; up to 1,500 photos) for template offsets and zooms.

``--dy 0.08`` moves the landmarks 8% of the crop lower than the shipped template,
i.e. the framing facerec used before the template was chosen (chin cut off).

Usage: .venv/bin/python benchmarks/alignment_sweep.py [--backbone B] [--zoom Z ...] [--dy D ...]
"""

import argparse
from pathlib import Path

import numpy as np

import facerec.align as align
from facerec.detect import make_detector
from facerec.embed import load_embedder
from facerec.evaluate import evaluate_open_set
from facerec.images import load_image
from facerec.settings import Settings
from facerec.datasets import detect_dataset, labelled_photos

ap = argparse.ArgumentParser()
ap.add_argument("--backbone", default="face-resnet")
ap.add_argument("--zoom", type=float, nargs="+", default=[1.0])
ap.add_argument("--dy", type=float, nargs="+", default=[0.08, 0.0])
ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "faces" / "lfw_dev"))
args = ap.parse_args()

settings = Settings(backbone=args.backbone)
photos = labelled_photos(Path(args.data), split="train")
faces = detect_dataset([p for p, _ in photos], make_detector(settings), settings.cache_dir)
labels = np.array([n for _, n in photos])
count = {n: int((labels == n).sum()) for n in set(labels)}
idx = [i for i, (_, n) in enumerate(photos) if faces[i] is not None and (count[n] >= 4 or i % 6 == 0)][:1500]
images = {i: load_image(photos[i][0]) for i in idx}
embedder = load_embedder(settings, use_head=False)
shipped = align._TEMPLATE.copy()
for zoom in args.zoom:
    for dy in args.dy:
        align._TEMPLATE = shipped + np.array([0.0, dy], np.float32)
        crops = np.stack([align.align_face(images[i], faces[i].landmarks, embedder.input_size, zoom) for i in idx])
        r = evaluate_open_set(embedder.embed(crops), labels[idx], k=3)
        print(f"{args.backbone} zoom {zoom} dy {dy:+.2f}: rank-1 {r.rank1:.3f}, named right {r.named_right:.3f}, "
              f"overall {r.overall:.3f} ({r.enrolled_probes} enrolled probes, {r.stranger_probes} strangers)",
              flush=True)
align._TEMPLATE = shipped
