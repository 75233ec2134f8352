"""`facerec serve` under load: 1, 4 and 16 concurrent clients posting camera snapshots (issue 21, item 8).

Snapshots: 1280x720 JPEGs (quality 85) on a grey, noisy canvas with 1-3 lfw_dev photos pasted on
it at random places and sizes (160-300 px: faces of about 70-130 px, as a doorbell or driveway
camera sees people), made once with a fixed seed. ``--people`` lfw_dev people with at least 2
photos are enrolled (their first photo, through the native API); the pasted photos are their
other photos and photos of strangers (people not enrolled), so each snapshot has known and
unknown faces.

The server is ``facerec serve`` itself in a child process (``--workers`` recognitions at once,
the default models), so its memory is measured apart from the clients: peak RSS is the
kernel's ``VmHWM`` of the server process, RSS is ``VmRSS``. The clients are threads of this
process, each with one keep-alive ``requests`` session, posting snapshots in turn to the
CompreFace route (``POST /api/v1/recognition/recognize``), the one Double Take and Home
Assistant call; each client sends its next request as soon as it has its answer.

Per level (1, 4, 16 clients): requests/s, faces recognised/s, p50/p95/p99 latency, 5xx count,
the server's RSS and peak RSS, the 1-minute load average before and after (the machine is
shared with other work: read every number beside it); at the end, what the micro-batcher did
over the whole run (passes, faces, the largest pass, requests that shared a pass; the server
says it in its log when it stops).
Then a soak run (``--soak`` requests, default 10,000, from 4 clients): 5xx count and the server's
RSS every 1,000 requests. Beside them: ``facerec identify`` one photo at a time, once as a new
process per photo (what a script without a server does) and once over a folder in one process.

    .venv/bin/python benchmarks/api_load.py [--people 20] [--per-level 200] [--soak 10000] \\
        [--workers 2] [--json benchmarks/results/api_load.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LFW = ROOT.parent / "shared" / "faces" / "lfw_dev"
PY = sys.executable


def load() -> float:
    """The 1-minute load average (`uptime`'s first number)."""
    return round(os.getloadavg()[0], 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_memory(pid: int) -> dict:
    """RSS and peak RSS (MB) of process ``pid``, from /proc."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out["rss_mb" if key == "VmRSS" else "peak_rss_mb"] = round(int(value.split()[0]) / 1024, 1)
    return out


def make_snapshots(n: int, enrolled: list[list[Path]], strangers: list[Path], seed: int = 0) -> list[tuple[bytes, int]]:
    """``n`` 1280x720 JPEG snapshots with 1-3 pasted lfw_dev photos each; returns (bytes, faces pasted)."""
    from PIL import Image

    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        canvas = nrng.normal(110, 18, (720, 1280, 3)).clip(0, 255).astype(np.uint8)
        img = Image.fromarray(canvas)
        k = rng.choice([1, 2, 3])
        slots = rng.sample(range(4), k)  # four columns: pasted photos never overlap
        for slot in slots:
            pool = rng.choice(["known", "known", "stranger"])
            path = rng.choice(rng.choice(enrolled)[1:]) if pool == "known" else rng.choice(strangers)
            side = rng.randint(160, 300)
            face = Image.open(path).convert("RGB").resize((side, side))
            x = slot * 320 + rng.randint(0, 320 - side) if side < 320 else slot * 320
            y = rng.randint(0, 720 - side)
            img.paste(face, (x, y))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        out.append((buf.getvalue(), k))
    return out


def pick_people(n: int) -> tuple[list[list[Path]], list[Path]]:
    """``n`` lfw_dev people with 2+ photos (enrolled), and one photo each of 40 others (strangers)."""
    dirs = sorted(d for d in LFW.iterdir() if d.is_dir())
    multi = [sorted(d.glob("*.jpg")) for d in dirs]
    enrolled = [p for p in multi if len(p) >= 2][:n]
    taken = {p[0].parent for p in enrolled}
    strangers = [sorted(d.glob("*.jpg"))[0] for d in dirs[::-1] if d not in taken][:40]
    return enrolled, strangers


def start_server(gallery: Path, port: int, workers: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([PY, "-m", "facerec", "serve", "--gallery", str(gallery), "--port", str(port),
                             "--workers", str(workers)], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                            cwd=ROOT)
    import requests

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited: {log.read_text()[-2000:]}")
        try:
            requests.get(f"http://127.0.0.1:{port}/api/facerec/v1/people", timeout=2)
            return proc
        except requests.RequestException:
            time.sleep(0.5)
    proc.kill()
    sys.exit("server did not start in 300 s")


def run_level(url: str, snaps: list[tuple[bytes, int]], clients: int, total: int, pid: int,
              sample_every: int = 0) -> dict:
    """``total`` requests from ``clients`` threads; latency percentiles, rates, status codes."""
    import requests

    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    faces = [0]
    counter = [0]
    samples: list[dict] = []

    def client(i: int) -> None:
        http = requests.Session()
        while True:
            with lock:
                n = counter[0]
                if n >= total:
                    return
                counter[0] += 1
            data, _k = snaps[(n * 7 + i) % len(snaps)]
            t0 = time.perf_counter()
            try:
                r = http.post(f"{url}/api/v1/recognition/recognize", files={"file": ("snap.jpg", data)}, timeout=60)
                status = r.status_code
                found = len(r.json().get("result", [])) if status == 200 else 0
            except requests.RequestException:
                status, found = 599, 0
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                statuses[status] = statuses.get(status, 0) + 1
                faces[0] += found
                if sample_every and len(latencies) % sample_every == 0:
                    samples.append({"requests": len(latencies), **proc_memory(pid), "load_1min": load()})

    load_before = load()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    s = sorted(latencies)

    def pct(q: float) -> float:
        return round(1000 * s[min(len(s) - 1, int(q * len(s)))], 1)

    out = {"clients": clients, "requests": len(s), "wall_s": round(wall, 1),
           "requests_per_s": round(len(s) / wall, 2), "faces_per_s": round(faces[0] / wall, 2),
           "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99), "mean_ms": round(1000 * statistics.fmean(s), 1),
           "status": {str(k): v for k, v in sorted(statuses.items())},
           "http_5xx": sum(v for k, v in statuses.items() if k >= 500),
           "load_1min_before": load_before, "load_1min_after": load(), **proc_memory(pid)}
    if samples:
        out["memory_samples"] = samples
    return out


def identify_baseline(gallery: Path, photos: list[Path], per_process: int) -> dict:
    """``facerec identify``: a new process per photo (``per_process`` photos), then all photos
    in one process (one at a time, as the CLI goes)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [PY, "-m", "facerec", "identify", "--gallery", str(gallery), "-q"]
    load_before = load()
    each = []
    for p in photos[:per_process]:
        t0 = time.perf_counter()
        subprocess.run(cmd + [str(p)], check=True, capture_output=True, env=env, cwd=ROOT)
        each.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    subprocess.run(cmd + [str(p) for p in photos], check=True, capture_output=True, env=env, cwd=ROOT)
    folder = time.perf_counter() - t0
    return {"process_per_photo": {"photos": len(each), "median_s": round(statistics.median(each), 2),
                                  "photos_per_s": round(len(each) / sum(each), 3)},
            "one_process": {"photos": len(photos), "wall_s": round(folder, 1),
                            "photos_per_s": round(len(photos) / folder, 2),
                            "note": "includes loading the models once"},
            "load_1min_before": load_before, "load_1min_after": load()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--snapshots", type=int, default=60)
    ap.add_argument("--per-level", type=int, default=200, help="requests per concurrency level")
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--soak", type=int, default=10_000, help="requests of the soak run (0: none)")
    ap.add_argument("--soak-clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=4, help="facerec serve --workers")
    ap.add_argument("--baseline", type=int, default=5, help="photos for the process-per-photo baseline (0: none)")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    if not LFW.is_dir():
        sys.exit(f"{LFW} is missing")
    import requests

    enrolled, strangers = pick_people(args.people)
    snaps = make_snapshots(args.snapshots, enrolled, strangers)
    result: dict = {"cpus": os.cpu_count(), "workers": args.workers, "people_enrolled": len(enrolled),
                    "snapshots": len(snaps), "faces_per_snapshot": round(statistics.fmean(k for _, k in snaps), 2),
                    "snapshot_kb": round(statistics.fmean(len(d) for d, _ in snaps) / 1024, 1),
                    "uptime_start": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
    with tempfile.TemporaryDirectory(prefix="facerec-load-") as tmp:
        gallery, port = Path(tmp) / "gallery", free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(gallery, port, args.workers, Path(tmp) / "server.log")
        try:
            result["server_after_start"] = proc_memory(server.pid)
            for photos in enrolled:
                r = requests.post(f"{url}/api/facerec/v1/people/{photos[0].parent.name}/photos?confirm=true&largest=true",
                                  files={"file": (photos[0].name, photos[0].read_bytes())}, timeout=120)
                assert r.status_code == 200 and r.json()["saved"] == 1, r.text
            run_level(url, snaps, 2, 20, server.pid)  # warm-up: matcher, connections, traced graphs
            result["server_after_warmup"] = proc_memory(server.pid)
            result["levels"] = []
            for clients in (int(c) for c in args.levels.split(",")):
                level = run_level(url, snaps, clients, args.per_level, server.pid)
                print(json.dumps(level), flush=True)
                result["levels"].append(level)
            if args.soak:
                soak = run_level(url, snaps, args.soak_clients, args.soak, server.pid,
                                 sample_every=max(1, args.soak // 10))
                soak["rss_start_mb"] = soak["memory_samples"][0]["rss_mb"]
                soak["rss_end_mb"] = soak["memory_samples"][-1]["rss_mb"]
                print(json.dumps({k: v for k, v in soak.items() if k != "memory_samples"}), flush=True)
                result["soak"] = soak
        finally:
            server.terminate()
            server.wait(30)
            said = [line for line in (Path(tmp) / "server.log").read_text().splitlines() if "embedding batches" in line]
            result["embedding_batches"] = said[-1].split("embedding batches: ", 1)[1] if said else None
            result["settings"] = {k: os.environ[k] for k in os.environ if k.startswith("FACEREC_")}
        if args.baseline:
            folder = Path(tmp) / "snaps"
            folder.mkdir()
            paths = []
            for i, (data, _k) in enumerate(snaps[:30]):
                paths.append(folder / f"snap{i:03d}.jpg")
                paths[-1].write_bytes(data)
            result["facerec_identify"] = identify_baseline(gallery, paths, args.baseline)
    result["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
