"""`facerec tag` against face_recognition's own CLI on the same folder and the same enrolled people.

Folder (flat, copied into a scratch dir): group_photos (speed only), celeb5 val
(labelled), and lfw_dev probes: for the first ``--lfw-people`` people (sorted by
name) with more than ``--enrol`` photos, the photos after the first ``--enrol``
(at most ``--per-person``); and the single photo of the first ``--strangers``
people with one photo (label: unknown). Enrolled, for both tools: all celeb5
train photos and the first ``--enrol`` photos (default 3, as in `facerec eval`'s
k=3 protocol) of each of those lfw people.

Accuracy, same rule for both tools: a photo of an enrolled person is right when
that person is among the names given to its faces; a stranger's photo is right
when at least one face was found and none was named. Group photos are not scored.

Speed: wall time of each tagging command over the whole folder. face_recognition
encodes its known people inside the same command, so that part is timed
separately (same command over an empty folder) and subtracted; facerec's
enrolment is a separate command and not counted. facerec runs twice: a first
run with an empty tag cache, and a second run over the unchanged folder.

Usage::

    .venv/bin/python benchmarks/tag_vs_face_recognition.py [--workers 0 2] [--frvenv .venv-face_recognition]

Writes benchmarks/results/tag_benchmark.json (with `uptime` before and after:
the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "faces"
SEP = "__"


def build(work: Path, lfw_people: int, strangers: int, per_person: int, k: int) -> dict[str, str | None]:
    """Fill ``work`` with known/ (flat), people/ (per person) and photos/; return label per photo name."""
    for d in ("known", "people", "photos", "empty"):
        (work / d).mkdir(parents=True, exist_ok=True)
    labels: dict[str, str | None] = {}

    def enrol(person: str, src: Path, n: int) -> None:
        (work / "people" / person).mkdir(exist_ok=True)
        shutil.copy(src, work / "people" / person / f"{n}{src.suffix.lower()}")
        shutil.copy(src, work / "known" / f"{person}{SEP}{n}{src.suffix.lower()}")

    def probe(label: str | None, src: Path, tag: str) -> None:
        name = f"{label or 'stranger'}{SEP}{tag}{src.suffix.lower()}"
        shutil.copy(src, work / "photos" / name)
        labels[name] = label

    celeb = SHARED / "celeb5"
    for person_dir in sorted((celeb / "train").iterdir()):
        for n, f in enumerate(sorted(person_dir.iterdir())):
            enrol(person_dir.name, f, n)
    for person_dir in sorted((celeb / "val").iterdir()):
        for f in sorted(person_dir.iterdir()):
            probe(person_dir.name, f, f"val_{f.stem}")
    lfw = SHARED / "lfw_dev"
    people = sorted(p for p in lfw.iterdir() if p.is_dir())
    multi = [p for p in people if len(list(p.iterdir())) > k][:lfw_people]
    single = [p for p in people if len(list(p.iterdir())) == 1][:strangers]
    for p in multi:
        photos = sorted(p.iterdir())
        for n, f in enumerate(photos[:k]):
            enrol(p.name, f, n)
        for f in photos[k:k + per_person]:
            probe(p.name, f, f.stem)
    for p in single:
        probe(None, sorted(p.iterdir())[0], p.name)
    for f in sorted((SHARED / "group_photos").iterdir()):
        shutil.copy(f, work / "photos" / f"group{SEP}{f.name}")
        labels[f"group{SEP}{f.name}"] = "group"
    return labels


def score(names_per_photo: dict[str, list[str]], labels: dict[str, str | None]) -> dict:
    """Lenient rule: right when the person is among the names (strangers: nobody named).
    Strict rule: also nobody else named in the photo (face_recognition's CLI prints every
    enrolled photo within tolerance of a face, so one face can get several names)."""
    right = strict = total = known_right = known_strict = known_total = strangers_right = strangers_total = 0
    no_face = 0
    for photo, label in labels.items():
        if label == "group":
            continue
        names = names_per_photo.get(photo, [])
        total += 1
        if not names:
            no_face += 1
        if label is None:
            strangers_total += 1
            ok = ok_strict = bool(names) and all(n is None for n in names)
            strangers_right += ok
        else:
            known_total += 1
            ok = label in names
            ok_strict = ok and all(n in (None, label) for n in names)
            known_right += ok
            known_strict += ok_strict
        right += ok
        strict += ok_strict
    return {"accuracy": round(right / total, 4), "accuracy_strict": round(strict / total, 4), "scored_photos": total,
            "enrolled_people_right": round(known_right / known_total, 4),
            "enrolled_people_right_strict": round(known_strict / known_total, 4), "enrolled_probes": known_total,
            "strangers_right": round(strangers_right / max(strangers_total, 1), 4), "strangers": strangers_total,
            "no_face_found": no_face}


def timed(cmd: list[str], env: dict | None = None, stdout=subprocess.PIPE) -> tuple[float, str, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env)
    dt = time.perf_counter() - t
    if p.returncode not in (0, 1):
        raise SystemExit(f"{cmd[0]} failed ({p.returncode}): {p.stderr[-2000:]}")
    return dt, p.stdout or "", p.stderr


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frvenv", default=str(ROOT / ".venv-face_recognition"))
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="facerec --workers values to time")
    ap.add_argument("--lfw-people", type=int, default=200)
    ap.add_argument("--strangers", type=int, default=100)
    ap.add_argument("--per-person", type=int, default=3, help="probes per enrolled lfw person")
    ap.add_argument("--enrol", type=int, default=3, help="enrolled photos per lfw person")
    ap.add_argument("--skip-face-recognition", action="store_true")
    ap.add_argument("--work", help="build the folders here and keep them (default: a temporary folder, removed)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tag_benchmark.json"))
    args = ap.parse_args()

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="facerec_tag_bench_"))
    labels = build(work, args.lfw_people, args.strangers, args.per_person, args.enrol)
    n_photos = len(labels)
    result: dict = {"photos": n_photos, "labelled": sum(v != "group" for v in labels.values()),
                    "enrolled_photos": len(list((work / "known").iterdir())),
                    "enrolled_people": len(list((work / "people").iterdir())),
                    "uptime_before": uptime(), "cpus": os.cpu_count()}
    print(json.dumps(result), file=sys.stderr)

    facerec = str(ROOT / ".venv" / "bin" / "facerec")
    env = dict(os.environ, FACEREC_GALLERY=str(work / "gallery"), TF_CPP_MIN_LOG_LEVEL="3")
    t_enrol, _, err = timed([facerec, "enroll", "--yes", str(work / "people"), "--largest", "-q"], env)
    result["facerec_enroll_s"] = round(t_enrol, 2)
    print(err.strip().splitlines()[-1], file=sys.stderr)
    runs = {}
    for w in args.workers:
        cache = work / f"tags_w{w}.sqlite"
        report = work / f"report_w{w}.csv"
        cmd = [facerec, "tag", str(work / "photos"), "-q", "--cache", str(cache), "--workers", str(w),
               "--report", str(report)]
        t1, out1, err1 = timed(cmd, env)
        t2, out2, err2 = timed(cmd, env)
        names: dict[str, list] = defaultdict(list)
        for line in report.read_text().splitlines()[1:]:
            path, _face, name = line.split(",")[:3]
            names[Path(path).name].append(None if name == "unknown" else name)
        runs[f"workers={w}"] = {
            "first_run_s": round(t1, 2), "first_run_photos_per_s": round(n_photos / t1, 2),
            "second_run_s": round(t2, 2), "second_run_photos_per_s": round(n_photos / t2, 2),
            "second_run_speedup": round(t1 / t2, 1), "same_output": sorted(out1.splitlines()) == sorted(out2.splitlines()),
            "summary_first": err1.strip().splitlines()[-1] if err1.strip() else "",
            "summary_second": err2.strip().splitlines()[-1] if err2.strip() else "",
            **score(names, labels)}
        print(json.dumps({f"facerec workers={w}": runs[f"workers={w}"]}), file=sys.stderr)
    result["facerec"] = runs

    if not args.skip_face_recognition:
        fr = str(Path(args.frvenv) / "bin" / "face_recognition")
        t_known, _, _ = timed([fr, "--cpus", "2", str(work / "known"), str(work / "empty")])
        t_all, out, _ = timed([fr, "--cpus", "2", str(work / "known"), str(work / "photos")])
        names = defaultdict(list)
        for line in out.splitlines():
            if line.startswith("WARNING:") or "," not in line:
                continue
            path, name = line.rsplit(",", 1)
            if name.strip() == "no_persons_found":
                names.setdefault(Path(path).name, [])
                continue
            names[Path(path).name].append(None if name.strip() == "unknown_person" else name.strip().split(SEP)[0])
        t_photos = t_all - t_known
        result["face_recognition"] = {
            "command": "face_recognition --cpus 2 KNOWN_DIR UNKNOWN_DIR", "total_s": round(t_all, 2),
            "known_encoding_s": round(t_known, 2), "photos_s": round(t_photos, 2),
            "photos_per_s": round(n_photos / t_photos, 2), "photos_per_s_incl_known": round(n_photos / t_all, 2),
            **score(names, labels)}
        print(json.dumps({"face_recognition": result["face_recognition"]}), file=sys.stderr)
    result["uptime_after"] = uptime()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
