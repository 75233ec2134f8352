"""Recognition latency through `facerec serve`'s HTTP API against a direct call (issue 21).

A throw-away gallery (temporary folder) is enrolled with the first ``--people`` lfw_dev people that
have at least 2 photos (their first photo each, ``largest=True``). Probes are their second photos
(250x250 JPEGs, one face each). The API runs in this process on a free localhost port (uvicorn in a
thread, the same app `facerec serve` runs, one recogniser shared with the direct calls).

For each probe, in turn, ``--rounds`` times (after one warm-up round):

- ``direct``: ``FaceService.recognize(bytes)`` (decode, detect, align, embed, match), the work the
  route does;
- ``compreface``: ``POST /api/v1/recognition/recognize`` with the photo as multipart ``file``
  (``requests``, one keep-alive session), response parsed;
- ``deepstack``: ``POST /v1/vision/face/recognize`` with ``image`` and ``min_confidence=0.45``.

Prints median, p95 and mean milliseconds per call for each, HTTP's overhead over direct, how many
probes were named right, and the 1-minute load average before and after (the machine is shared:
read the numbers with it). One client at a time: this measures latency, not throughput.

    .venv/bin/python benchmarks/api_latency.py [--people 10] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LFW = ROOT.parent / "shared" / "faces" / "lfw_dev"


def pick(n: int) -> list[tuple[str, Path, Path]]:
    """``(name, enrol photo, probe photo)`` of the first ``n`` lfw_dev people with 2+ photos."""
    out = []
    for d in sorted(LFW.iterdir()):
        photos = sorted(d.glob("*.jpg"))
        if len(photos) >= 2:
            out.append((d.name, photos[0], photos[1]))
        if len(out) == n:
            break
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summary(ms: list[float]) -> dict:
    s = sorted(ms)
    return {"n": len(s), "median_ms": round(statistics.median(s), 1),
            "p95_ms": round(s[min(len(s) - 1, int(0.95 * len(s)))], 1), "mean_ms": round(statistics.fmean(s), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    if not LFW.is_dir():
        sys.exit(f"{LFW} is missing")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import requests
    import uvicorn

    from facerec.api.app import create_app
    from facerec.api.keys import KeyStore
    from facerec.api.service import FaceService
    from facerec.pipeline import FaceRecognizer
    from facerec.settings import Settings

    load_before = os.getloadavg()
    people = pick(args.people)
    with tempfile.TemporaryDirectory() as tmp:
        rec = FaceRecognizer(Settings.from_env(gallery=Path(tmp) / "gallery"))
        service = FaceService(rec, history=False)
        for name, enrol, _ in people:
            service.enroll(name, enrol.read_bytes(), enrol.name, largest=True)
        probes = [(name, probe.read_bytes()) for name, _, probe in people]
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(service, KeyStore(rec.gallery.root)), host="127.0.0.1",
                                               port=port, log_level="warning", lifespan="off"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.02)
        url = f"http://127.0.0.1:{port}"
        http = requests.Session()

        def direct(data: bytes) -> str:
            found = service.recognize(data, "probe.jpg")
            return max(found, key=lambda r: r.face.area).match.name if found else "-"

        def compreface(data: bytes) -> str:
            r = http.post(f"{url}/api/v1/recognition/recognize", files={"file": ("probe.jpg", data)}).json()
            best = max(r.get("result", []), key=lambda f: (f["box"]["x_max"] - f["box"]["x_min"]), default=None)
            return best["subjects"][0]["subject"] if best and best["subjects"][0]["similarity"] >= 0.6 else "unknown"

        def deepstack(data: bytes) -> str:
            r = http.post(f"{url}/v1/vision/face/recognize", data={"min_confidence": "0.45"},
                          files={"image": ("probe.jpg", data)}).json()
            best = max(r["predictions"], key=lambda p: p["x_max"] - p["x_min"], default=None)
            return best["userid"] if best else "-"

        ways = {"direct": direct, "compreface": compreface, "deepstack": deepstack}
        for fn in ways.values():  # warm-up: models, matcher, connection
            for _, data in probes:
                fn(data)
        times: dict[str, list[float]] = {k: [] for k in ways}
        right: dict[str, int] = {k: 0 for k in ways}
        for _ in range(args.rounds):
            for name, data in probes:
                for way, fn in ways.items():  # interleaved, so load changes hit all three alike
                    t0 = time.perf_counter()
                    got = fn(data)
                    times[way].append((time.perf_counter() - t0) * 1000)
                    right[way] += got == name
        server.should_exit = True
    load_after = os.getloadavg()
    result = {
        "people": len(people), "rounds": args.rounds, "cpus": os.cpu_count(),
        "load_1min_before": round(load_before[0], 2), "load_1min_after": round(load_after[0], 2),
        "backbone": rec.settings.backbone, "detector": rec.settings.detector,
        **{way: {**summary(ms), "named_right": f"{right[way]}/{len(ms)}"} for way, ms in times.items()},
    }
    for way in ("compreface", "deepstack"):
        result[way]["overhead_median_ms"] = round(result[way]["median_ms"] - result["direct"]["median_ms"], 1)
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
