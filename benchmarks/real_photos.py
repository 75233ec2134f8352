"""`facerec tag` against face_recognition's CLI (`--cpus 2`) on photos like users have.

Folders, built once into ``--scratch`` (default /tmp/facerec_real_photos; reused while
its manifest.json has the same ``--seed`` and ``--lfw``) from ../shared/faces:
- camera12mp: 100 photos at 4032x3024, JPEG quality 90: the 4 group_photos and 96
  celeba_dev / celeb5 probes, padded to 4:3 with their mean colour (portraits keep the
  whole face), upscaled with INTER_CUBIC; plus camera_photos/*.jpg as they are (no
  faces; broken EXIF, one corrupted).
- web300: 300 photos as they are from celeba_dev / celeb5 probes, group_photos, wider_dev.
- mixed92: a small folder of 92 photos as they are (issue 22's "folder of 90 photos"): the 4
  group_photos and 88 celeba_dev probes drawn with ``random.Random(seed + 92)`` (added to an existing
  scratch folder without rebuilding the others).
- lfw: ``--lfw`` (500) 250x250 lfw_dev photos (of the enrolled only celeb5's Elton John
  and Madonna are in lfw_dev; neither is drawn with seed 0).
Enrolled for both tools: each celeba_dev person (min(3, n-1) random photos) and each
celeb5 person (3 random train photos), never used as probes. facerec: `facerec enroll
people/ --largest` into a fresh gallery (not timed); face_recognition: known/<person>__<n>.jpg
(its CLI names a match by the file stem; the person is the part before "__").

Every command runs in a fresh process under `/usr/bin/time -v`: wall = "Elapsed (wall
clock)", peak RSS = "Maximum resident set size" (the largest single process; the summed
PSS of the process tree, sampled every 0.2 s, is ``tree_peak_pss_mb``), with
os.getloadavg() before and after (``--max-load``: wait for a quieter machine first).
stdout/stderr/rows: ``SCRATCH/runs/``.
- facerec cold: `facerec tag FOLDER --gallery G --cache NEW.sqlite -q` (empty tag cache;
  start-up and model loading included; the gallery is enrolled with default settings, so
  a base/head change in --facerec-args re-embeds it inside the timed run).
  Photos/s once running: stdout has one row per face; photo i (of the n that print rows,
  in order of arrival) is done at t_i, when its first row arrives.
  ``photos_per_s_first_to_last`` = (n - 1) / (t_n - t_1). ``photos_per_s_running`` (the
  table's) = least-squares slope of i against t_i: the same when rows stream one photo at
  a time, but not inflated when rows come in one burst per batch of B photos (first-to-
  last counts the B-1 other photos of the first burst as done after t_1; facerec at
  166574a prints in bursts of 32). Faceless photos print no row: their time counts, they
  do not. ``first_row_s``: start-up + the first photo(s).
- face_recognition: `face_recognition --cpus 2 known/ FOLDER`. It encodes known/ inside
  that command, so the same command over an empty folder is timed just before (per
  folder: the machine's load varies) and subtracted (``wall_s`` raw, ``wall_minus_known_s``).
- ratio = face_recognition wall_s / facerec wall_s (both raw, start-up included).
- faces, photos with a face, photos naming an enrolled person, probes named right.
  face_recognition prints a row per (face, matching known photo): its face count is
  unknown_person rows + distinct people named per photo (approximate).

Usage (face_recognition set up as in vs_face_recognition.sh, in .venv-face_recognition)::

    .venv/bin/python benchmarks/real_photos.py [--folders camera12mp web300 lfw] [--only-build]
        [--tools facerec face_recognition] [--facerec-args "--detector opencv"]
    # another facerec version, e.g. the "before" numbers (results/real_photos_before.json):
    mkdir -p /tmp/facerec_before && git archive 166574a facerec | tar -x -C /tmp/facerec_before
    .venv/bin/python benchmarks/real_photos.py --max-load 1 --note "facerec at 166574a" \
        --facerec "env PYTHONPATH=/tmp/facerec_before .venv/bin/facerec"

Writes benchmarks/results/real_photos.json (``--out``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "faces"
SEP = "__"
FOLDERS = ("camera12mp", "web300", "lfw", "mixed92")
MAX_LOAD = None  # --max-load: before each command, wait (<= 10 min) for the 1-min load average to fall below it


def to_12mp(src: Path, dst: Path, size: tuple[int, int] = (4032, 3024), quality: int = 90) -> None:
    """``src`` padded to 4:3 with its mean colour (the whole face kept), upscaled to ``size`` (bicubic), JPEG."""
    img = cv2.imread(str(src), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    fill = [int(c) for c in img.reshape(-1, 3).mean(0)]
    padw, padh = max(0, round(h * 4 / 3) - w), max(0, round(w * 3 / 4) - h)  # one of them is 0
    img = cv2.copyMakeBorder(img, padh // 2, padh - padh // 2, padw // 2, padw - padw // 2, cv2.BORDER_CONSTANT,
                             value=fill)
    cv2.imwrite(str(dst), cv2.resize(img, size, interpolation=cv2.INTER_CUBIC), [cv2.IMWRITE_JPEG_QUALITY, quality])


def build(scratch: Path, seed: int, n_lfw: int) -> dict:
    """Build the folders (once); return {folder: {photo name: person or None}}."""
    manifest_file, params = scratch / "manifest.json", {"seed": seed, "lfw": n_lfw}
    if manifest_file.exists() and json.loads(manifest_file.read_text())["params"] == params:
        folders = json.loads(manifest_file.read_text())["folders"]
        if "mixed92" not in folders:
            folders["mixed92"] = build_mixed92(scratch, seed)
            manifest_file.write_text(json.dumps({"params": params, "folders": folders}, indent=1))
        return folders
    rng = random.Random(seed)
    for d in ("people", "known", "empty", *FOLDERS):
        shutil.rmtree(scratch / d, ignore_errors=True)
        (scratch / d).mkdir(parents=True)
    probes: list[tuple[str, Path]] = []
    sets = [(f"celeba_{d.name}", sorted(d.iterdir()), []) for d in sorted((SHARED / "celeba_dev").iterdir())]
    sets += [(d.name, sorted(d.iterdir()), sorted((SHARED / "celeb5" / "val" / d.name).iterdir()))
             for d in sorted((SHARED / "celeb5" / "train").iterdir())]
    for person, photos, more in sets:
        rng.shuffle(photos)
        k = min(3, len(photos) - 1)
        (scratch / "people" / person).mkdir()
        for n, f in enumerate(photos[:k]):
            shutil.copy(f, scratch / "people" / person / f"{n}.jpg")
            shutil.copy(f, scratch / "known" / f"{person}{SEP}{n}.jpg")
        probes += [(person, f) for f in photos[k:] + more]
    groups = [(None, f) for f in sorted((SHARED / "group_photos").iterdir())]
    wider = [(None, f) for f in sorted((SHARED / "wider_dev" / "images").rglob("*.jpg"))]
    manifest: dict[str, dict[str, str | None]] = {f: {} for f in FOLDERS}
    for i, (person, f) in enumerate(groups + rng.sample(probes, 96)):
        name = f"{person or 'nobody'}{SEP}{i:03d}_{f.stem}.jpg"
        to_12mp(f, scratch / "camera12mp" / name)
        manifest["camera12mp"][name] = person
    for f in sorted((SHARED / "camera_photos").glob("*.jpg")):
        shutil.copy(f, scratch / "camera12mp" / f"camera{SEP}{f.name}")
        manifest["camera12mp"][f"camera{SEP}{f.name}"] = None
    for i, (person, f) in enumerate(rng.sample(probes + groups + wider, 300)):
        name = f"{person or 'nobody'}{SEP}{i:03d}_{f.stem}.jpg"
        shutil.copy(f, scratch / "web300" / name)
        manifest["web300"][name] = person
    for f in rng.sample(sorted((SHARED / "lfw_dev").rglob("*.jpg")), n_lfw):
        shutil.copy(f, scratch / "lfw" / f.name)
        person = f.parent.name.lower()
        manifest["lfw"][f.name] = person if (scratch / "people" / person).is_dir() else None
    manifest["mixed92"] = build_mixed92(scratch, seed)
    manifest_file.write_text(json.dumps({"params": params, "folders": manifest}, indent=1))
    return manifest


def build_mixed92(scratch: Path, seed: int) -> dict[str, str | None]:
    """The 4 group photos and 88 celeba_dev probes (not enrolled in ``people/``), as they are."""
    rng = random.Random(seed + 92)
    enrolled = {f.read_bytes() for f in (scratch / "people").rglob("*.jpg") if f.parent.name.startswith("celeba_")}
    probes = [(f"celeba_{d.name}", f) for d in sorted((SHARED / "celeba_dev").iterdir()) for f in sorted(d.iterdir())
              if f.read_bytes() not in enrolled]
    folder = scratch / "mixed92"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    out: dict[str, str | None] = {}
    for i, (person, f) in enumerate([(None, f) for f in sorted((SHARED / "group_photos").iterdir())]
                                    + rng.sample(probes, 88)):
        name = f"{person or 'nobody'}{SEP}{i:03d}_{f.stem}.jpg"
        shutil.copy(f, folder / name)
        out[name] = person
    return out


def tree_pss_kb(pid: int) -> int:
    """Sum of PSS (kB) over ``pid`` and all its descendants."""
    kids: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            kids[int(stat.read_text().rsplit(")", 1)[1].split()[1])].append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            pass
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += kids.get(p, [])
        try:
            total += int(re.search(r"^Pss:\s+(\d+)", Path(f"/proc/{p}/smaps_rollup").read_text(), re.M).group(1))
        except (OSError, AttributeError):
            pass
    return total


def measured(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run ``cmd`` under /usr/bin/time -v; ``rows``: stdout lines with their arrival (s from start)."""
    t_wait = time.perf_counter()
    while MAX_LOAD is not None and os.getloadavg()[0] > MAX_LOAD and time.perf_counter() - t_wait < 600:
        time.sleep(5)
    waited = round(time.perf_counter() - t_wait)
    load_before, t0, peak = os.getloadavg(), time.perf_counter(), [0]
    with open(log, "w") as err:
        p = subprocess.Popen(["/usr/bin/time", "-v", "-o", f"{log}.time", *cmd], stdout=subprocess.PIPE,
                             stderr=err, env=env, text=True)

        def sample() -> None:
            while p.poll() is None:
                peak[0] = max(peak[0], tree_pss_kb(p.pid))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rows = [(time.perf_counter() - t0, line.rstrip("\n")) for line in p.stdout]
        rc = p.wait()
        sampler.join()
    tv = Path(f"{log}.time").read_text()
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", tv).group(1))
    elapsed = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", tv).group(1)
    wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(elapsed.split(":"))))
    stderr = [x for x in log.read_text().strip().splitlines() if not re.match(r"WARNING: All log|[IWE]\d{4} ", x)]
    return {"cmd": shlex.join(cmd), "exit_code": rc, "wall_s": round(wall, 2), "peak_rss_mb": round(rss_kb / 1024),
            "tree_peak_pss_mb": round(peak[0] / 1024), "waited_for_load_s": waited,
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()], "stderr_tail": stderr[-12:], "rows": rows}


def tally(names: dict[str, list], labels: dict[str, str | None], faces: int) -> dict:
    """``names``: per photo, the names of its faces (None = unknown; no entry = no output)."""
    probes = [p for p, who in labels.items() if who]
    return {"faces": faces, "photos_with_face": sum(1 for p in labels if names.get(p)),
            "photos_naming_enrolled": sum(1 for p in labels if any(names.get(p, []))),
            "probes": len(probes), "probes_named_right": sum(labels[p] in names.get(p, []) for p in probes),
            "photos_without_output": sorted(p for p in labels if p not in names)}


def running_rates(times: list[float]) -> dict:
    """Photos/s from the sorted times at which each photo's first row arrived (see the docstring)."""
    if len(times) < 3 or times[-1] == times[0]:
        return {"first_row_s": round(times[0], 2) if times else None, "photos_per_s_running": None}
    n, mt = len(times), sum(times) / len(times)
    slope = sum((t - mt) * (i - (n - 1) / 2) for i, t in enumerate(times)) / sum((t - mt) ** 2 for t in times)
    return {"first_row_s": round(times[0], 2), "photos_per_s_running": round(slope, 2),
            "photos_per_s_first_to_last": round((n - 1) / (times[-1] - times[0]), 2)}


def run_facerec(facerec: list[str], folder: Path, labels: dict, scratch: Path, extra: list[str]) -> dict:
    cache = scratch / "runs" / f"tags_{folder.name}.sqlite"
    for f in cache.parent.glob(cache.name + "*"):
        f.unlink()
    cmd = [*facerec, "tag", str(folder), "--gallery", str(scratch / "gallery"), "--cache", str(cache), "-q", *extra]
    r = measured(cmd, scratch / "runs" / f"facerec_{folder.name}.log", dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    rows = r.pop("rows")
    (scratch / "runs" / f"facerec_{folder.name}.rows.tsv").write_text("".join(f"{t:.3f}\t{x}\n" for t, x in rows))
    names: dict[str, list] = {}
    done: dict[str, float] = {}
    for t, line in rows:
        path, _face, name = next(csv.reader([line]))[:3]
        names.setdefault(Path(path).name, []).append(None if name == "unknown" else name)
        done.setdefault(Path(path).name, t)
    r.update(running_rates(sorted(done.values())))
    r.update(tally(names, labels, sum(map(len, names.values()))))
    r["photos_without_output"] = len(r["photos_without_output"])  # faceless or failed (see stderr_tail)
    return r


def run_face_recognition(frvenv: Path, folder: Path, labels: dict, scratch: Path) -> dict:
    cmd = [str(frvenv / "bin" / "face_recognition"), "--cpus", "2", str(scratch / "known")]
    known = measured([*cmd, str(scratch / "empty")], scratch / "runs" / f"face_recognition_known_{folder.name}.log")
    r = measured([*cmd, str(folder)], scratch / "runs" / f"face_recognition_{folder.name}.log")
    # Its two workers print "path,name" and "\n" as separate writes, so their lines can merge
    # ("a.jpg,xb.jpg,y\n\n"): split on the folder prefix, not on newlines.
    text, prefix, found = "\n".join(x for _, x in r.pop("rows")), re.escape(f"{folder}/"), defaultdict(list)
    for m in re.finditer(rf"{prefix}([^,\n]+),(\w+?)(?=\n|{prefix}|$)", text):
        found[m.group(1)].append(m.group(2))
    names, faces = {}, 0
    for photo, got in found.items():
        people = sorted({n.split(SEP)[0] for n in got if n not in ("unknown_person", "no_persons_found")})
        names[photo] = [None] * got.count("unknown_person") + people
        faces += len(names[photo])
    r.update(known_encoding_s=known["wall_s"], wall_minus_known_s=round(r["wall_s"] - known["wall_s"], 2),
             known_encoding_loadavg=known["loadavg_before"])
    r.update(tally(names, labels, faces))  # photos_without_output: photos it failed on
    return r


def table(result: dict) -> str:
    lines = ["| folder | photos | facerec cold s | facerec photos/s running (first-to-last) | facerec peak RSS | "
             "face_recognition s (minus known) | its peak RSS (tree PSS) | ratio |", "|---" * 8 + "|"]
    for name, res in result["folders"].items():
        f, fr = res.get("facerec"), res.get("face_recognition")
        cells = [f"{f['wall_s']}", f"{f['photos_per_s_running']} ({f.get('photos_per_s_first_to_last')})",
                 f"{f['peak_rss_mb']} MB"] if f else ["-"] * 3
        cells += [f"{fr['wall_s']} ({fr['wall_minus_known_s']})",
                  f"{fr['peak_rss_mb']} MB ({fr['tree_peak_pss_mb']} MB)"] if fr else ["-"] * 2
        lines.append(f"| {name} | {res['photos']} | " + " | ".join(cells) + f" | {res.get('ratio', '-')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folders", nargs="+", choices=FOLDERS, default=list(FOLDERS))
    ap.add_argument("--tools", nargs="+", choices=("facerec", "face_recognition"),
                    default=["facerec", "face_recognition"])
    ap.add_argument("--facerec-args", default="", help='extra arguments for facerec tag, e.g. "--detector opencv"')
    ap.add_argument("--facerec", default=str(ROOT / ".venv" / "bin" / "facerec"), help="command that runs facerec")
    ap.add_argument("--frvenv", default=str(ROOT / ".venv-face_recognition"))
    ap.add_argument("--only-build", action="store_true", help="build the folders and stop")
    ap.add_argument("--scratch", default="/tmp/facerec_real_photos")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lfw", type=int, default=500, help="lfw_dev photos in the lfw folder")
    ap.add_argument("--max-load", type=float, help="wait (<= 10 min) for the 1-min load average to fall below this "
                    "before each command (the machine may be shared)")
    ap.add_argument("--note", default="", help="free text stored in the JSON (e.g. which facerec code ran)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "real_photos.json"))
    args = ap.parse_args()
    global MAX_LOAD
    MAX_LOAD = args.max_load

    scratch = Path(args.scratch)
    manifest = build(scratch, args.seed, args.lfw)
    if args.only_build:
        return print(f"built {scratch}: " + ", ".join(f"{f} {len(v)} photos" for f, v in manifest.items()))
    (scratch / "runs").mkdir(exist_ok=True)
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    result: dict = {
        "cpus": os.cpu_count(), "uptime_before": subprocess.getoutput("uptime"), "facerec": args.facerec,
        "git_head": git("rev-parse", "--short", "HEAD"), "facerec_changes": git("status", "--short", "facerec"),
        "facerec_args": args.facerec_args, "note": args.note, "seed": args.seed, "scratch": str(scratch),
        "enrolled": f"{len(list((scratch / 'people').iterdir()))} people, {len(list((scratch / 'known').iterdir()))} "
                    "photos", "folders": {}}
    facerec = shlex.split(args.facerec)
    if "facerec" in args.tools:
        shutil.rmtree(scratch / "gallery", ignore_errors=True)
        e = measured([*facerec, "enroll", "--yes", str(scratch / "people"), "--gallery", str(scratch / "gallery"), "--largest",
                      "-q"], scratch / "runs" / "facerec_enroll.log", dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        result["facerec_enroll"] = {k: e[k] for k in ("cmd", "exit_code", "wall_s", "peak_rss_mb", "stderr_tail")}
    for name in args.folders:
        res = result["folders"][name] = {"photos": len(manifest[name])}
        if "facerec" in args.tools:
            res["facerec"] = run_facerec(facerec, scratch / name, manifest[name], scratch,
                                         shlex.split(args.facerec_args))
        if "face_recognition" in args.tools:
            res["face_recognition"] = run_face_recognition(Path(args.frvenv), scratch / name, manifest[name], scratch)
        if len(res) == 3:
            res["ratio"] = round(res["face_recognition"]["wall_s"] / res["facerec"]["wall_s"], 2)
        print(json.dumps({name: res}, indent=1), flush=True)
    result["uptime_after"] = subprocess.getoutput("uptime")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
