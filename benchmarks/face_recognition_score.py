"""Step 2 of the face_recognition comparison, run in facerec's venv.

Scores face_recognition's encodings with *its* rule (nearest enrolled encoding,
a match when the distance is at most the tolerance, 0.6 by default) under the
same k=3 open-set protocol, and the same LFW pairs, as `facerec eval`.

Usage: .venv/bin/python benchmarks/face_recognition_score.py ENC.npz PAIRS_FILE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from facerec.evaluate import open_set_metrics, read_pairs, split_protocol, verification_accuracy


def main(tolerance: float = 0.6) -> None:
    d = np.load(sys.argv[1])
    X, valid, labels = d["X"], d["valid"], d["labels"]
    enrol, probe, known = split_protocol(labels, k=3)
    enrol = enrol[valid[enrol]]
    dist = np.linalg.norm(X[probe][:, None, :] - X[enrol][None, :, :], axis=2)
    nearest = dist.argmin(axis=1)
    pred = labels[enrol][nearest].astype(object)
    pred[~valid[probe]] = ""
    # open_set_metrics names a face when score >= threshold: use -distance as the score.
    score = -dist[np.arange(len(probe)), nearest]
    res = open_set_metrics(pred, score, labels[probe], known, -tolerance,
                           detection_failures=int((~valid).sum()),
                           enrolled_people=len(set(labels[enrol]))).to_dict()
    res["threshold"] = tolerance
    index = {(lab, int(p.rsplit("_", 1)[-1].split(".")[0])): i for i, (p, lab) in enumerate(zip(d["paths"], labels))}
    sims, same = [], []
    for a, i, b, j, is_same in read_pairs(Path(sys.argv[2])):
        ia, ib = index.get((a, i)), index.get((b, j))
        if ia is None or ib is None:
            continue
        sims.append(-float(np.linalg.norm(X[ia] - X[ib])) if valid[ia] and valid[ib] else -9.0)
        same.append(is_same)
    acc, _, _ = verification_accuracy(np.array(sims), np.array(same))
    res.update(verification=acc, verification_pairs=len(sims),
               photos_per_second=round(len(labels) / float(d["seconds"]), 1))
    print(json.dumps({"face_recognition (HOG, tolerance 0.6)": res}, indent=2))


if __name__ == "__main__":
    main()
