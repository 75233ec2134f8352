"""Which runtime runs MobileFaceNet's .tflite file: Keras (facerec's rebuild), LiteRT, ONNX Runtime, OpenCV DNN.

For each candidate that can run here: the seconds to import it in a fresh process, milliseconds per face
(one thread, batches of 2, 5 repeats after a warm-up, all candidates in one process one after the other),
and the largest difference of its unit vectors from the Keras network's on real faces (celeb5, aligned
by facerec's default path). ONNX Runtime needs the .tflite converted to ONNX first, by ``tf2onnx``
(``--onnx FILE``: an already converted file; without it the candidate is reported as not run). OpenCV's
DNN module reads .tflite files itself.

Run (from the repository root):
    .venv/bin/python benchmarks/embed_runtimes.py [--onnx mobilefacenet.onnx] [--json OUT]
Writes benchmarks/results/embed_runtimes.json with the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CELEB5 = ROOT.parent / "shared" / "faces" / "celeb5"


def import_seconds(module: str) -> float:
    """Wall seconds of ``python -c "import MODULE"`` in a fresh process (interpreter start included)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return round(time.perf_counter() - t0, 3)


def pairs(run, x: np.ndarray) -> np.ndarray:
    """``run`` over ``x`` in batches of 2 (the file's fixed batch), the last padded."""
    out = []
    for i in range(0, len(x), 2):
        b = x[i:i + 2]
        n = len(b)
        if n < 2:
            b = np.concatenate([b, b[:1]])
        out.append(np.asarray(run(np.ascontiguousarray(b))).reshape(2, -1)[:n])
    return np.concatenate(out)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onnx", type=Path, help="MobileFaceNet converted to ONNX (tf2onnx --tflite ...)")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "embed_runtimes.json")
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from facerec.embed import get_backbone
    from facerec.facepath import FacePath
    from facerec.settings import Settings
    from facerec.weights import tflite_file

    settings = Settings()
    path = FacePath(settings)
    crops = []
    for person in sorted((CELEB5 / "val").iterdir()):
        for photo in sorted(person.iterdir()):
            crops += [f.crop for f in path.locate([path.read(photo.read_bytes(), photo.name)])[0]]
    crops = np.stack(crops)
    x = get_backbone("mobilefacenet").preprocess(crops.astype(np.float32))
    model = tflite_file("mobilefacenet", settings)

    candidates: dict[str, object] = {}

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)  # one thread, as the others
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from facerec.embed import build_base

    keras_net = build_base(get_backbone("mobilefacenet"), settings)
    fn = tf.function(lambda t: keras_net(t, training=False))
    candidates["keras (TensorFlow)"] = lambda b: fn(tf.constant(b)).numpy()

    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(model), num_threads=1)
    it.allocate_tensors()
    i_in, i_out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

    def litert_run(b):
        it.set_tensor(i_in, b)
        it.invoke()
        return it.get_tensor(i_out).copy()

    candidates["LiteRT"] = litert_run
    notes = {}
    if args.onnx and args.onnx.is_file():
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(args.onnx), opts, providers=["CPUExecutionProvider"])
        feed = sess.get_inputs()[0].name
        candidates["ONNX Runtime"] = lambda b: sess.run(None, {feed: b})[0]
    else:
        notes["ONNX Runtime"] = "not run: no converted file given (--onnx)"
    import cv2

    try:
        net = cv2.dnn.readNetFromTFLite(str(model))

        def cv_run(b):
            net.setInput(b)
            return net.forward()

        cv_run(x[:2])
        candidates["OpenCV DNN"] = cv_run
    except cv2.error as exc:
        notes["OpenCV DNN"] = f"cannot read the file: {str(exc).strip().splitlines()[-1][:160]}"

    cv2.setNumThreads(1)
    ref = unit(pairs(candidates["keras (TensorFlow)"], x))
    load_before = os.getloadavg()
    results = {}
    for name, run in candidates.items():
        pairs(run, x[:4])  # warm-up
        t0 = time.perf_counter()
        for _ in range(5):
            v = unit(pairs(run, x))
        ms = (time.perf_counter() - t0) / 5 / len(x) * 1000
        results[name] = {"ms_per_face": round(ms, 2), "max_abs_diff_vs_keras": float(np.abs(v - ref).max())}
    load_after = os.getloadavg()
    imports = {"keras (TensorFlow)": "tensorflow", "LiteRT": "ai_edge_litert.interpreter",
               "ONNX Runtime": "onnxruntime", "OpenCV DNN": "cv2"}
    for name in results:
        results[name]["import_s_fresh_process"] = import_seconds(imports[name])
    out = {"what": __doc__.splitlines()[0], "faces": len(x), "threads": 1, "results": results, "not_run": notes,
           "loadavg_before": [round(v, 2) for v in load_before], "loadavg_after": [round(v, 2) for v in load_after],
           "cpus": os.cpu_count()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
