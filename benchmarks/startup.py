"""Start-up: ``facerec identify`` of one photo, cold, against ``python -c "import tensorflow"`` (issue 22).

Every command runs in a fresh process, the commands of one round one after the other and the rounds
repeated, so that each ratio compares runs made side by side under the same load:

- ``import tensorflow``: ``python -c "import tensorflow"`` (what every start paid before facerec 0.8);
- ``identify``: ``facerec identify --quiet PROBE`` with the defaults (YuNet, MobileFaceNet and O-Net run
  by LiteRT: no TensorFlow);
- ``identify, Keras``: the same with ``FACEREC_RUNTIME=keras`` (the same networks in Keras/TensorFlow,
  as facerec 0.7 ran them).

Also, for target 5 (worker processes and the HTTP server start as fast):

- ``tag, 2 workers``: ``facerec tag --no-cache --workers 2`` of the 25 celeb5 val photos (each worker
  process loads its own detector; the main process embeds), and ``tag, in process`` the same without
  workers, each against the same ``import tensorflow`` of its round;
- ``serve: first answer``: ``facerec serve`` started on a free localhost port, the time until a DeepStack
  ``POST /v1/vision/face/recognize`` of the probe first answers ``success: true`` (polled every 20 ms),
  and the server's peak RSS (``VmHWM``) then.

Wall time is measured around the process (``time.perf_counter``), peak resident memory from the
child's ``rusage`` (``ru_maxrss``). The gallery (celeb5 train, 3 photos of each of 5 people) is embedded
once before timing, as a user's gallery already is; weights come from the usual cache. Also measured,
in one fresh process: the app's Identify path (``FaceRecognizer.identify_photo``, what the Identify
page calls, without Streamlit's page run): the first call after start, then 5 more.

Run (from the repository root):  .venv/bin/python benchmarks/startup.py [--rounds 5] [--json OUT]
Writes benchmarks/results/startup.json with the 1-minute load average before and after each command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "faces"
PY = sys.executable
FACEREC = [PY, "-m", "facerec"]

APP_PATH = """
import json, sys, time
t0 = time.perf_counter()
from facerec.pipeline import FaceRecognizer
from facerec.settings import Settings
rec = FaceRecognizer(Settings.from_env())
data = open(sys.argv[1], 'rb').read()
times = []
for _ in range(6):
    t = time.perf_counter()
    faces = rec.identify_photo(rec.read(data, 'probe.jpg'))
    times.append(time.perf_counter() - t)
print(json.dumps({'start_to_first_result_s': round(time.perf_counter() - t0 - sum(times[1:]), 3),
                  'first_s': round(times[0], 3), 'later_s': [round(x, 3) for x in times[1:]],
                  'names': [m.name for _, m in faces],
                  'tensorflow_loaded': 'tensorflow' in sys.modules}))
"""


def run_with_rss(cmd: list[str], env: dict) -> dict:
    """Run ``cmd`` in a fresh process: wall seconds, peak RSS (MiB, the child's ``ru_maxrss``), CPU
    seconds, exit status, the 1-minute load before and after, the ends of stdout and stderr."""
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"wall_s": round(wall, 3), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "rc": proc.returncode,
                "user_s": round(usage.ru_utime, 2), "sys_s": round(usage.ru_stime, 2),
                "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2),
                "stdout": out.read().decode(errors="replace").strip()[-300:],
                "stderr": err.read().decode(errors="replace").strip()[-300:]}


def serve_first_answer(probe: Path, env: dict) -> dict:
    """Start ``facerec serve``; seconds until the first recognize answer, the server's peak RSS."""
    import socket
    import urllib.request
    import uuid

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + probe.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(FACEREC + ["serve", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    answer, wall = None, None
    try:
        while time.perf_counter() - t0 < 120 and proc.poll() is None:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/vision/face/recognize", data=body,
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    answer = json.loads(r.read())
                wall = time.perf_counter() - t0
                break
            except OSError:
                time.sleep(0.02)
        status = Path(f"/proc/{proc.pid}/status").read_text() if proc.poll() is None else ""
        hwm = next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM")), None)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    return {"wall_s": None if wall is None else round(wall, 3), "peak_rss_mib": None if hwm is None else round(hwm, 1),
            "load_before": round(load0, 2), "answer": answer,
            "stderr": err.decode(errors="replace").strip()[-300:]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "startup.json")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="facerec-startup-"))
    gallery = work / "gallery"
    for person in sorted((SHARED / "celeb5" / "train").iterdir()):
        (gallery / person.name).mkdir(parents=True)
        for photo in sorted(person.iterdir())[:3]:
            shutil.copy(photo, gallery / person.name / photo.name)
    probe = sorted((SHARED / "celeb5" / "val" / "madonna").iterdir())[0]
    env = {**os.environ, "FACEREC_GALLERY": str(gallery), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("FACEREC_RUNTIME", None)
    warm = run_with_rss(FACEREC + ["identify", "--quiet", str(probe)], env)  # gallery vectors made, weights cached
    if warm["rc"] != 0:
        raise SystemExit(f"warm-up identify failed: {warm['stderr']}")

    val = SHARED / "celeb5" / "val"
    commands = {
        "import tensorflow": [PY, "-c", "import tensorflow"],
        "identify": FACEREC + ["identify", "--quiet", str(probe)],
        "identify, Keras": FACEREC + ["identify", "--quiet", str(probe)],
        "tag, in process": FACEREC + ["tag", "--no-cache", str(val)],
        "tag, 2 workers": FACEREC + ["tag", "--no-cache", "--workers", "2", str(val)],
    }
    envs = {name: env for name in commands}
    envs["identify, Keras"] = {**env, "FACEREC_RUNTIME": "keras"}
    rounds = []
    for r in range(args.rounds):
        order = list(commands) if r % 2 == 0 else list(commands)[::-1]  # alternate who goes first
        rounds.append({name: run_with_rss(commands[name], envs[name]) for name in order})
        rounds[-1]["serve: first answer"] = serve_first_answer(probe, env)
        row = rounds[-1]
        print(f"round {r + 1}: " + ", ".join(f"{k} {v['wall_s']} s / {v['peak_rss_mib']} MiB (load {v['load_before']})"
                                             for k, v in row.items()), flush=True)
    app = run_with_rss([PY, "-c", APP_PATH, str(probe)], env)
    app_result = json.loads(app["stdout"].splitlines()[-1]) if app["rc"] == 0 else {"error": app["stderr"]}

    def med(name: str, key: str) -> float:
        values = [r[name][key] for r in rounds if r[name][key] is not None]
        return round(statistics.median(values), 3) if values else None

    ratios = [r["identify"]["wall_s"] / r["import tensorflow"]["wall_s"] for r in rounds]
    timed = [*commands, "serve: first answer"]
    keras_ratios = [r["identify, Keras"]["wall_s"] / r["import tensorflow"]["wall_s"] for r in rounds]
    summary = {
        name: {"median_wall_s": med(name, "wall_s"), "median_peak_rss_mib": med(name, "peak_rss_mib"),
               "max_peak_rss_mib": max((r[name]["peak_rss_mib"] or 0) for r in rounds)}
        for name in timed
    }
    for name in ("tag, in process", "tag, 2 workers", "serve: first answer"):
        per = [r[name]["wall_s"] / r["import tensorflow"]["wall_s"] for r in rounds if r[name]["wall_s"]]
        summary[f"{name} / import tensorflow"] = {"per_round": [round(x, 3) for x in per],
                                                  "median": round(statistics.median(per), 3) if per else None}
    summary["identify / import tensorflow"] = {"per_round": [round(x, 3) for x in ratios],
                                               "median": round(statistics.median(ratios), 3),
                                               "max": round(max(ratios), 3)}
    summary["identify, Keras / import tensorflow"] = {"per_round": [round(x, 3) for x in keras_ratios],
                                                      "median": round(statistics.median(keras_ratios), 3)}
    result = {
        "what": __doc__.splitlines()[0], "rounds": args.rounds, "probe": str(probe.relative_to(SHARED)),
        "gallery": "celeb5 train, 3 photos x 5 people", "cpus": os.cpu_count(),
        "answers": {name: rounds[0][name]["stdout"][-200:] for name in commands if name != "import tensorflow"},
        "serve_answer": rounds[0]["serve: first answer"]["answer"],
        "summary": summary, "app_identify_path": {**app_result, "process_wall_s": app["wall_s"],
                                                  "peak_rss_mib": app["peak_rss_mib"],
                                                  "load_before": app["load_before"]},
        "runs": rounds,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"summary": summary, "app_identify_path": result["app_identify_path"]}, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
