"""The photo library at scale (issue 24): scanning 10,000 photos, grouping 20,000 unknown faces, naming
a 100-face group.

Everything runs in one process, in this order, on a throw-away gallery, cache and library (a temporary
folder, removed at the end; ``--work DIR`` keeps it and reuses its photo folders, never its gallery,
cache or library file). Settings are the defaults (``Settings.from_env(gallery=..., cache_dir=...)``:
mobilefacenet, YuNet; no ``FACEREC_*`` variable is set in our runs); the cache folder's ``weights``
is a symlink to the user's converted weights. Nobody is enrolled until step 5.

0. **The library folder** ``WORK/library`` (not timed): copies (plain files, not symlinks) of every
   photo of lfw_dev (9,207, 250x250), celeba_dev (535), wider_dev/images (206) and group_photos (4),
   in sub-folders named after their source, plus ``camera4000/``: ``--camera`` (200) photos drawn with
   ``random.Random(--seed)`` (half from lfw_dev, half from celeba_dev, sorted file lists), each padded
   to 4:3 with its mean colour (the whole face kept), upscaled to 4000x3000 (bicubic) and written as
   JPEG quality 90 (about what a phone camera gives). 10,152 photos by default. The allowed photo
   roots passed to ``Library.add_folder`` and ``Library.scan`` are ``[WORK]`` (resolved).
1. **Scan**: ``Library.add_folder(WORK/library)`` then ``Library.scan(cache)`` with a new, empty tag
   cache (``WORK/cache/tags.sqlite``): photos/s = photos / wall seconds of the whole call (model
   loading and the final re-match included), faces stored, failures; the progress callback's
   ``(done, t)`` every 500 photos gives the rate over time. Then a second ``scan`` with nothing
   changed (every photo ``unchanged``: stat only, then the re-match).
2. **Grouping the library's unknown faces**: ``Library.groups()`` on a freshly opened ``Library``
   (its faces read from SQLite, nothing remembered: the first page run after a change), again on
   the same object (remembered: the next page run), and ``cluster.group_unknown`` alone on the same members and vectors at the
   library's grouping threshold (``Library.group_threshold``). ``group_unknown`` runs average linkage
   inside the sets of faces connected at the threshold, cutting a set of more than 8,000 faces
   (``cluster.MAX_AVERAGE_LINKAGE``) at stricter links first (before 0.9 it switched to single
   linkage on the similarity graph above 8,000 faces: ``results/library_scale_0.8.json``).
3. **20,000 faces**: if the library has fewer than ``--group-target`` (20,000) faces, ``WORK/mirrored``
   (mirror images, ``cv2.flip(img, 1)``, JPEG quality 95, of every lfw_dev photo) is added to the
   library and scanned (an incremental scan: only the new photos are processed; timed the same way),
   then ``Library.groups()`` is timed again over every unknown face of the grown library, and
   ``group_unknown`` alone over exactly ``--group-target`` vectors: all the unknown faces of step 2's
   library (library order: by path, then left to right) followed by the first unknown faces of
   ``mirrored/`` in library order. The vectors of a photo and its mirror image are compared
   (the face nearest the photo centre, when each has one) to say how different the added vectors are
   (mobilefacenet does not average a face with its mirror image by default, so they are not copies).
   **Quality** of every grouping (``quality`` in the JSON), on the faces with a known person (the face
   nearest the centre of each lfw_dev or mirrored photo, labelled by its folder): labelled pair precision
   (of the labelled pairs put in one group, the share that are one person), how many people the largest
   group mixes, and its share of the faces.
4. **Memory of the grouping**: RSS (``/proc/self/statm``) sampled every 10 ms in a thread during each
   timed call: ``rss_growth_mb`` = peak during the call - RSS just before it. Then, untimed, the same
   calls again under ``tracemalloc`` (numpy's arrays are traced; memory that BLAS, SQLite or SciPy's
   C code allocate by themselves is not): ``tracemalloc_peak_mb`` = traced peak - traced at start.
5. **Naming a 100-face group**: the faces of ``--person`` (George_W_Bush, 530 photos in lfw_dev) in
   ``library/lfw_dev/<person>/``, one per photo (the one nearest the 250x250 photo's centre), still
   ``unknown``, first 100 by path, are named with ``Library.name_group(faces, "George W Bush",
   confirm=True)`` into the empty gallery (timed, RSS sampled); then ``Library.rematch()`` alone is
   timed (name_group ends with one), and how many of the 100 faces the library now shows as
   ``confirmed`` is counted. Then a second person (``--person2``, Colin_Powell) is named the same
   way under ``cProfile`` (the top entries by cumulative and by own time are saved; the profiler
   slows Python code, so that time is not the headline).

Every timed step records ``os.getloadavg()`` and ``uptime`` before and after (the machine is shared),
the process's peak RSS so far (``ru_maxrss``) and the RSS samples. Also recorded: the commit, whether
the working tree had uncommitted changes, the nice value, the total wall time.

    nice -n 10 .venv/bin/python benchmarks/library_scale.py [--camera 200] [--group-target 20000]
        [--person George_W_Bush] [--person2 Colin_Powell] [--work DIR (kept; photos reused)]
        [--json benchmarks/results/library_scale.json]
    # a quick check of the script (not a result): --lfw-limit 300 --camera 4 --group-target 600
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CAMERA_SIZE = (4000, 3000)
CAMERA_QUALITY = 90
MIRROR_QUALITY = 95
SOURCES = ("lfw_dev", "celeba_dev", "wider_dev/images", "group_photos")
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


# -- measuring --------------------------------------------------------------------------------


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def load() -> dict:
    up = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    return {"loadavg": [round(x, 2) for x in os.getloadavg()], "uptime": up}


def maxrss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


class Sampler:
    """RSS of this process sampled every ``interval`` s in a thread while in the ``with`` block."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self._stop = threading.Event()

    def __enter__(self) -> Self:
        self.before = self.peak = rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            self._stop.wait(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.after = rss()
        self.peak = max(self.peak, self.after)


@contextmanager
def timed(record: dict):
    """Time the block into ``record``: seconds, load and uptime before/after, RSS before/peak/after."""
    record["load_before"] = load()
    record["process_peak_rss_mb_before"] = maxrss_mb()
    with Sampler() as s:
        t0 = time.perf_counter()
        yield record
        record["seconds"] = round(time.perf_counter() - t0, 3)
    record["load_after"] = load()
    record.update(rss_before_mb=round(s.before / MB, 1), rss_peak_mb=round(s.peak / MB, 1),
                  rss_after_mb=round(s.after / MB, 1), rss_growth_mb=round((s.peak - s.before) / MB, 1),
                  process_peak_rss_mb_so_far=maxrss_mb())


def traced(fn) -> tuple[object, dict]:
    """``fn()`` under tracemalloc: its result and the traced peak growth (MB)."""
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        t0 = time.perf_counter()
        out = fn()
        secs = time.perf_counter() - t0
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, {"tracemalloc_peak_mb": round((peak - start) / MB, 1),
                 "tracemalloc_kept_mb": round((current - start) / MB, 1),
                 "seconds_under_tracemalloc": round(secs, 3)}


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg} (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)


# -- building the folders ---------------------------------------------------------------------


def to_camera(src: Path, dst: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from real_photos import to_12mp  # the camera-size copies real_photos.py makes

    to_12mp(src, dst, CAMERA_SIZE, CAMERA_QUALITY)


def source_files(shared: Path, sub: str) -> list[Path]:
    from facerec.images import is_image_path

    return sorted(f for f in (shared / sub).rglob("*") if f.is_file() and is_image_path(f))


def build_library(shared: Path, lib: Path, camera: int, seed: int, lfw_limit: int | None) -> dict:
    """``lib`` as step 0 of the docstring says (reused when its manifest has the same parameters)."""
    params = {"camera": camera, "seed": seed, "lfw_limit": lfw_limit, "shared": str(shared)}
    manifest = lib.parent / "library_manifest.json"
    if manifest.is_file() and lib.is_dir() and json.loads(manifest.read_text())["params"] == params:
        say(f"reusing {lib}")
        return json.loads(manifest.read_text())
    shutil.rmtree(lib, ignore_errors=True)
    t0 = time.time()
    counts: dict[str, int] = {}
    files: dict[str, list[Path]] = {}
    for sub in SOURCES:
        fs = source_files(shared, sub)
        if sub == "lfw_dev" and lfw_limit is not None:
            fs = fs[:lfw_limit]
        files[sub] = fs
        dst_root = lib / sub.replace("/", "_")
        for f in fs:
            dst = dst_root / f.relative_to(shared / sub)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst)
        counts[sub.replace("/", "_")] = len(fs)
    rng = random.Random(seed)
    picks = rng.sample(files["lfw_dev"], camera // 2) + rng.sample(files["celeba_dev"], camera - camera // 2)
    (lib / "camera4000").mkdir(parents=True)
    drawn = []
    for i, f in enumerate(picks):
        name = f"{i:03d}_{f.parent.name}_{f.stem}.jpg"
        to_camera(f, lib / "camera4000" / name)
        drawn.append(str(f.relative_to(shared)))
    counts["camera4000"] = len(picks)
    doc = {"params": params, "counts": counts, "photos": sum(counts.values()), "camera_sources": drawn,
           "camera_bytes_mean": round(sum(p.stat().st_size for p in (lib / "camera4000").iterdir()) / max(1, camera)),
           "build_seconds": round(time.time() - t0, 1)}
    manifest.write_text(json.dumps(doc, indent=1))
    return doc


def build_mirrored(shared: Path, out: Path, lfw_limit: int | None) -> dict:
    import cv2

    params = {"lfw_limit": lfw_limit, "shared": str(shared)}
    manifest = out.parent / "mirrored_manifest.json"
    if manifest.is_file() and out.is_dir() and json.loads(manifest.read_text())["params"] == params:
        return json.loads(manifest.read_text())
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    fs = source_files(shared, "lfw_dev")
    if lfw_limit is not None:
        fs = fs[:lfw_limit]
    for f in fs:
        dst = out / f.relative_to(shared / "lfw_dev")
        dst.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dst), cv2.flip(cv2.imread(str(f), cv2.IMREAD_COLOR), 1), [cv2.IMWRITE_JPEG_QUALITY, MIRROR_QUALITY])
    doc = {"params": params, "photos": len(fs), "build_seconds": round(time.time() - t0, 1)}
    manifest.write_text(json.dumps(doc, indent=1))
    return doc


# -- helpers over the library -----------------------------------------------------------------


def folder_of(path: Path, work: Path) -> str:
    rel = path.relative_to(work)
    return rel.parts[1] if rel.parts[0] == "library" else rel.parts[0]


def centre_face(faces, size=(250, 250)):
    cx, cy = size[0] / 2, size[1] / 2
    return min(faces, key=lambda f: (f.box[0] + f.box[2] / 2 - cx) ** 2 + (f.box[1] + f.box[3] / 2 - cy) ** 2)


def person_faces(library, work: Path, person: str, n: int) -> list:
    """One face per photo of ``library/lfw_dev/<person>/`` (nearest the centre), still unknown, first ``n`` by path."""
    from facerec.verdict import UNKNOWN_VERDICT

    folder = work / "library" / "lfw_dev" / person
    by_photo: dict[Path, list] = {}
    for f in library.faces():
        if f.path.parent == folder:
            by_photo.setdefault(f.path, []).append(f)
    picked = [centre_face(fs) for _, fs in sorted(by_photo.items())]
    return [f for f in picked if f.kind == UNKNOWN_VERDICT and f.vector is not None][:n]


def group_summary(groups) -> dict:
    sizes = [len(g) for g in groups]
    return {"groups": len(groups), "faces": sum(sizes), "largest": sizes[:10],
            "singletons": sum(1 for s in sizes if s == 1), "groups_of_5_or_more": sum(1 for s in sizes if s >= 5)}


def lfw_labels(faces, work: Path) -> dict:
    """``(photo, box) -> person`` for the face nearest the centre of each lfw_dev (or mirrored) photo."""
    by_photo: dict[Path, list] = {}
    for f in faces:
        if folder_of(f.path, work) in ("lfw_dev", "mirrored"):
            by_photo.setdefault(f.path, []).append(f)
    return {(p, tuple(centre_face(fs).box)): p.parent.name for p, fs in by_photo.items()}


def quality(groups: list[list[tuple]], labels: dict) -> dict:
    """How pure the groups are on the labelled faces: pair precision (labelled pairs grouped together that
    are one person), how many people the largest group mixes, and where the labelled faces went."""
    same = diff = 0
    for g in groups:
        c = Counter(labels[k] for k in g if k in labels)
        n, s = sum(c.values()), sum(v * (v - 1) // 2 for v in c.values())
        same, diff = same + s, diff + n * (n - 1) // 2 - s
    big = Counter(labels[k] for k in groups[0] if k in labels) if groups else Counter()
    return {"labelled_faces": len(labels), "labelled_pair_precision": round(same / max(1, same + diff), 4),
            "largest_group_size": len(groups[0]) if groups else 0,
            "largest_group_labelled_people": len(big), "largest_group_top_people": big.most_common(5),
            "share_of_faces_in_largest_group": round(len(groups[0]) / max(1, sum(map(len, groups))), 4) if groups else 0}


def person_spread(groups, work: Path, person: str) -> dict:
    """How the faces of ``library/lfw_dev/<person>/`` photos fall into groups (their biggest share)."""
    folder = work / "library" / "lfw_dev" / person
    where = Counter()
    for gi, g in enumerate(groups):
        for f in g.faces:
            if f.path.parent == folder:
                where[gi] += 1
    if not where:
        return {}
    gi, n = where.most_common(1)[0]
    return {"faces_in_groups": sum(where.values()), "groups_holding_them": len(where),
            "biggest_share": n, "that_group_index": gi, "that_group_size": len(groups[gi])}


def profile_top(prof: cProfile.Profile, key: str, n: int = 25) -> str:
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(n)
    text = buf.getvalue()
    return text[text.find("   ncalls"):] if "   ncalls" in text else text


# -- the run ----------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "faces")
    ap.add_argument("--camera", type=int, default=200, help="camera-size (4000x3000) copies in the library")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lfw-limit", type=int, default=None, help="only the first N lfw_dev photos (a quick check)")
    ap.add_argument("--group-target", type=int, default=20000)
    ap.add_argument("--name-faces", type=int, default=100)
    ap.add_argument("--person", default="George_W_Bush")
    ap.add_argument("--person2", default="Colin_Powell")
    ap.add_argument("--work", type=Path, default=None, help="kept afterwards; its photo folders are reused")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "library_scale.json")
    args = ap.parse_args(argv)

    import numpy as np

    from facerec import FaceRecognizer, Settings
    from facerec.cluster import MAX_AVERAGE_LINKAGE, Member, group_unknown
    from facerec.library import CONFIRMED, Library
    from facerec.settings import default_cache_dir
    from facerec.tagcache import TagCache
    from facerec.verdict import UNKNOWN_VERDICT

    t_start = time.time()
    started = load()
    out: dict = {"issue": 24, "protocol": __doc__, "argv": sys.argv[1:] if argv is None else argv,
                 "command": "nice -n 10 .venv/bin/python benchmarks/library_scale.py " +
                            " ".join(sys.argv[1:] if argv is None else argv),
                 "nice": os.nice(0), "cpus": os.cpu_count(), "load_at_start": started}
    out["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    out["tree_dirty"] = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                            capture_output=True, text=True, check=False).stdout.strip())
    work = (args.work or Path(tempfile.mkdtemp(prefix="facerec_library_scale_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    roots = [work]
    lib_dir, mirrored_dir = work / "library", work / "mirrored"
    gallery, cache_dir = work / "gallery", work / "cache"
    library = cache = None
    try:
        say("building the library folder")
        out["library_folder"] = build_library(args.shared, lib_dir, args.camera, args.seed, args.lfw_limit)
        for d in (gallery, cache_dir):
            shutil.rmtree(d, ignore_errors=True)
        cache_dir.mkdir()
        weights = default_cache_dir() / "weights"
        if weights.is_dir():
            (cache_dir / "weights").symlink_to(weights)
        settings = Settings.from_env(gallery=gallery, cache_dir=cache_dir)
        out["settings"] = {k: str(v) for k, v in vars(settings).items() if k not in ("ice_servers",)}
        rec = FaceRecognizer(settings)
        cache = TagCache(cache_dir / "tags.sqlite")
        library = Library(rec)
        library.add_folder(lib_dir, roots)
        out["roots"] = [str(r) for r in roots]

        # 1. scan, then an unchanged rescan ------------------------------------------------------
        timeline: list[tuple[int, float]] = []
        t0 = [0.0]

        def progress(done: int, total: int) -> None:
            if done % 500 == 0 or done == total:
                timeline.append((done, round(time.perf_counter() - t0[0], 2)))
                say(f"scan {done}/{total} ({done / (time.perf_counter() - t0[0]):.1f} photos/s)")

        say(f"scanning {out['library_folder']['photos']} photos")
        scan: dict = {}
        with timed(scan):
            t0[0] = time.perf_counter()
            report = library.scan(cache, progress=progress, roots=roots)
        stored = library.store.faces()
        photos = library.store.photos()
        faces_by_folder = Counter(folder_of(f.path, work) for f in stored)
        photos_by_folder = Counter(folder_of(p, work) for p in photos)
        with_face = {f.path for f in stored}
        scan.update(photos=report.photos, processed=report.processed, cached=report.cached, unchanged=report.unchanged,
                    failed=len(report.failed), failures=[list(x) for x in report.failed[:20]],
                    photos_per_s=round(report.photos / scan["seconds"], 2), faces=len(stored),
                    faces_with_vector=sum(f.vector is not None for f in stored),
                    photos_with_a_face=len(with_face),
                    faces_by_folder=dict(faces_by_folder), photos_by_folder=dict(photos_by_folder),
                    photos_with_a_face_by_folder=dict(Counter(folder_of(p, work) for p in with_face)),
                    progress_done_seconds=timeline)
        if len(timeline) >= 2:
            (d0, s0), (d1, s1) = timeline[0], timeline[-1]
            scan["photos_per_s_after_first_500"] = round((d1 - d0) / (s1 - s0), 2) if s1 > s0 else None
        out["scan"] = scan
        say(f"scan: {scan['seconds']} s, {scan['photos_per_s']} photos/s, {len(stored)} faces, "
            f"{scan['failed']} failed, peak RSS {scan['rss_peak_mb']} MB")

        rescan: dict = {}
        with timed(rescan):
            report2 = library.scan(cache, roots=roots)
        rescan.update(photos=report2.photos, processed=report2.processed, cached=report2.cached,
                      unchanged=report2.unchanged, failed=len(report2.failed))
        out["rescan_unchanged"] = rescan
        say(f"rescan: {rescan['seconds']} s ({rescan['unchanged']} unchanged)")

        # 2. grouping the library's unknown faces -------------------------------------------------
        def forget_memo() -> None:
            """Cold calls: drop what facerec.library remembers of faces() and groups() in this process."""
            import facerec.library

            facerec.library._MEMO = facerec.library._Memo()

        def groups_closed(lib: Library) -> list:
            forget_memo()
            try:
                return lib.groups()
            finally:
                lib.close()

        def grouping(label: str) -> dict:
            fresh = Library(rec)
            try:
                cold: dict = {"imported_before": {m: m in sys.modules for m in (
                    "scipy.cluster.hierarchy", "scipy.sparse.csgraph")}}  # the first call in a process imports them
                forget_memo()
                with timed(cold):
                    groups = fresh.groups()
                warm: dict = {}  # remembered (the next page run's call)
                with timed(warm):
                    groups_again = fresh.groups()
                assert [len(g) for g in groups_again] == [len(g) for g in groups]
                unknown = [f for f in fresh.faces() if f.kind == UNKNOWN_VERDICT and f.vector is not None]
                members = [Member(f.path, f.box) for f in unknown]
                X = np.stack([f.vector for f in unknown])
                threshold = fresh.group_threshold()
                direct: dict = {}
                with timed(direct):
                    direct_groups = group_unknown(members, X, threshold)
                _, cold_traced = traced(lambda: groups_closed(Library(rec)))
                _, direct_traced = traced(lambda: group_unknown(members, X, threshold))
            finally:
                fresh.close()
            res = {"unknown_faces": len(unknown), "vector_dim": int(X.shape[1]), "threshold": round(threshold, 4),
                   "method": "average" if len(unknown) <= MAX_AVERAGE_LINKAGE else "average in connected parts",
                   "groups_cold_fresh_library": {**cold, **cold_traced},
                   "groups_remembered": warm,
                   "group_unknown_alone": {**direct, **direct_traced},
                   "summary": group_summary(groups),
                   "same_groups_direct": [len(g) for g in direct_groups] == [len(g) for g in groups],
                   "quality": quality([[(f.path, tuple(f.box)) for f in g.faces] for g in groups],
                                      lfw_labels(unknown, work)),
                   f"spread_of_{args.person}": person_spread(groups, work, args.person)}
            say(f"{label}: {len(unknown)} unknown faces, groups() cold {cold['seconds']} s "
                f"(+{cold['rss_growth_mb']} MB RSS, traced {cold_traced['tracemalloc_peak_mb']} MB), warm "
                f"{warm['seconds']} s, group_unknown {direct['seconds']} s (+{direct['rss_growth_mb']} MB RSS, "
                f"traced {direct_traced['tracemalloc_peak_mb']} MB)")
            return res

        out["grouping_library"] = grouping("library")
        n_lib = out["grouping_library"]["unknown_faces"]

        # 3. 20,000 faces -------------------------------------------------------------------------
        if n_lib < args.group_target:
            say("building the mirrored folder")
            out["mirrored_folder"] = build_mirrored(args.shared, mirrored_dir, args.lfw_limit)
            library.add_folder(mirrored_dir, roots)
            timeline = []
            scan3: dict = {}
            with timed(scan3):
                t0[0] = time.perf_counter()
                report3 = library.scan(cache, progress=progress, roots=roots)
            stored = library.store.faces()
            scan3.update(photos=report3.photos, processed=report3.processed, cached=report3.cached,
                         unchanged=report3.unchanged, failed=len(report3.failed),
                         processed_per_s=round(report3.processed / scan3["seconds"], 2),
                         faces_total=len(stored),
                         faces_added=sum(1 for f in stored if folder_of(f.path, work) == "mirrored"),
                         progress_done_seconds=timeline)
            out["scan_mirrored_added"] = scan3
            say(f"mirrored scan: {scan3['seconds']} s for {report3.processed} new photos, {len(stored)} faces now")

            # how different a photo's and its mirror image's vectors are
            by_photo: dict[Path, list] = {}
            for f in stored:
                by_photo.setdefault(f.path, []).append(f)
            cos = []
            for p, fs in by_photo.items():
                if folder_of(p, work) != "mirrored":
                    continue
                orig = lib_dir / "lfw_dev" / p.relative_to(mirrored_dir)
                if orig in by_photo:
                    a, b = centre_face(by_photo[orig]), centre_face(fs)
                    if a.vector is not None and b.vector is not None:
                        cos.append(float(np.dot(a.vector, b.vector) /
                                         (np.linalg.norm(a.vector) * np.linalg.norm(b.vector))))
            if cos:
                q = np.percentile(cos, [5, 25, 50, 75, 95])
                out["mirror_vs_original_cosine"] = {"pairs": len(cos), "p5_p25_median_p75_p95": [round(float(x), 4) for x in q],
                                                    "at_or_above_threshold": round(float(np.mean(np.asarray(cos) >= library.group_threshold())), 4)}

            out["grouping_grown_library"] = grouping("grown library")
            # exactly group_target vectors: step 2's unknown faces, then the mirrored ones, library order
            fresh = Library(rec)
            try:
                unknown = [f for f in fresh.faces() if f.kind == UNKNOWN_VERDICT and f.vector is not None]
                threshold = fresh.group_threshold()
            finally:
                fresh.close()
            first = [f for f in unknown if folder_of(f.path, work) != "mirrored"]
            added = [f for f in unknown if folder_of(f.path, work) == "mirrored"]
            chosen = (first + added)[:args.group_target]
            if len(chosen) == args.group_target:
                members = [Member(f.path, f.box) for f in chosen]
                X = np.stack([f.vector for f in chosen])
                exact: dict = {}
                with timed(exact):
                    groups = group_unknown(members, X, threshold)
                _, exact_traced = traced(lambda: group_unknown(members, X, threshold))
                out["group_unknown_exact_target"] = {
                    "faces": len(chosen), "from_library": len(first), "from_mirrored": len(chosen) - len(first),
                    "threshold": round(threshold, 4),
                    "method": "average" if len(chosen) <= MAX_AVERAGE_LINKAGE else "average in connected parts",
                    **exact, **exact_traced, "summary": group_summary(groups),
                    "quality": quality([[(m.photo, tuple(m.box)) for m in g.members] for g in groups],
                                       lfw_labels(chosen, work)),
                    "what": f"all {len(first)} unknown faces of the scanned library (by path, left to right) + the "
                            f"first {len(chosen) - len(first)} unknown faces of mirrored/ (mirror images of lfw_dev "
                            "photos) in library order"}
                say(f"group_unknown on exactly {len(chosen)}: {exact['seconds']} s, +{exact['rss_growth_mb']} MB RSS, "
                    f"traced {exact_traced['tracemalloc_peak_mb']} MB")
            else:
                out["group_unknown_exact_target"] = {"skipped": f"only {len(chosen)} unknown faces"}

        # 5. naming a 100-face group ------------------------------------------------------------
        faces = person_faces(library, work, args.person, args.name_faces)
        name = args.person.replace("_", " ")
        naming: dict = {"person": args.person, "faces": len(faces), "library_faces": len(library.faces())}
        if len(faces) < args.name_faces:
            naming["note"] = f"only {len(faces)} unknown faces of {args.person} found"
        with timed(naming):
            result = library.name_group(faces, name, confirm=True)
        keys = {(f.path, f.idx) for f in faces}
        confirmed = sum(1 for f in library.faces() if (f.path, f.idx) in keys and f.kind == CONFIRMED)
        named_now = sum(1 for f in library.faces() if (f.path, f.idx) in keys and f.name == name)
        rem: dict = {}
        with timed(rem):
            rematched = library.rematch()
        naming.update(enrolled=len(result.enrolled), duplicates=len(result.duplicates), skipped=len(result.skipped),
                      skipped_reasons=dict(Counter(r for _, r in result.skipped)),
                      faces_confirmed_after=confirmed, faces_named_after=named_now,
                      answers_stored=sum(len(v) for v in library.store.answers().values()),
                      rematch_alone={**rem, "faces": rematched},
                      library_faces_named_after=sum(1 for f in library.faces() if f.name == name))
        out["name_group"] = naming
        say(f"name_group {len(faces)} faces: {naming['seconds']} s (rematch alone {rem['seconds']} s); "
            f"enrolled {len(result.enrolled)}, confirmed {confirmed}")

        faces2 = person_faces(library, work, args.person2, args.name_faces)
        name2 = args.person2.replace("_", " ")
        prof = cProfile.Profile()
        naming2: dict = {"person": args.person2, "faces": len(faces2), "under_cprofile": True}
        with timed(naming2):
            prof.enable()
            result2 = library.name_group(faces2, name2, confirm=True)
            prof.disable()
        naming2.update(enrolled=len(result2.enrolled), duplicates=len(result2.duplicates), skipped=len(result2.skipped),
                       top_cumulative=profile_top(prof, "cumulative"), top_own_time=profile_top(prof, "tottime"))
        out["name_group_profiled"] = naming2
        say(f"name_group {len(faces2)} faces under cProfile: {naming2['seconds']} s")
    finally:
        if library is not None:
            library.close()
        if cache is not None:
            cache.close()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    out["load_at_end"] = load()
    out["process_peak_rss_mb"] = maxrss_mb()
    out["seconds_total"] = round(time.time() - t_start, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1, default=str) + "\n")
    say(f"wrote {args.json} ({out['seconds_total']} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
