"""How long the Library page's "Unnamed groups" view (``/library``) takes to show its groups' faces in a real browser (issue 24).

Issue 24's figure: first paint with 200 unnamed groups under 2 s in Chromium. A throw-away library is built
once: an empty gallery (nobody enrolled) and a photo folder ``<work>/photos/library`` holding, for the first
N lfw_dev people (default 220, alphabetical folder order) with at least 2 photos, their first 2-4 photos
(alphabetical; ``--per-person``, default 4) copied unchanged (250x250 JPEGs). The folder is added to the
library (:meth:`facerec.library.Library.add_folder`, within ``FACEREC_PHOTO_ROOTS=<work>/photos``) and
scanned with :meth:`facerec.library.Library.scan` through the tag cache the app uses, before the app starts,
so every face is unknown and :meth:`~facerec.library.Library.groups` groups them (LFW photos also hold
people in the background: groups of one). The gallery and cache folder (``FACEREC_GALLERY``,
``FACEREC_CACHE_DIR``) live in a temporary folder, removed at the end (``--work DIR`` keeps them there,
with the photos, Streamlit's log and two screenshots, and a later run with the same ``--people`` and
``--per-person`` reuses that library); the cache's ``weights`` is a symlink to the user's converted
weights (the scan needs them, the page does not).

Then ``streamlit run app.py`` is started headless on a free localhost port with that gallery (as
tests/test_browser.py does; a localhost app with no password asks no sign-in), and headless Chromium
(Debian's ``chromium``, through Playwright) opens ``/library`` (the Library page's own address in the app's
navigation; its view "Unnamed groups" is the default), each visit in a fresh browser context (new
Streamlit session, empty browser cache):

1. ``first``: the first visit to a freshly started server, no face picture on disk yet
   (every shown face's photo is decoded and its 96 px face picture written to ``<cache>/thumbs``);
2. ``later`` (``--visits``, default 3): the same server, face pictures cached on disk;
3. ``restart``: one visit to a newly restarted server, pictures cached (``--no-restart`` leaves it out).

A visit's time is the page's own clock (``performance.now()``, zero at navigation start) at the first
moment, polled every 25 ms, when the app is connected, its script is not running, and every ``<img>``
inside the groups' ``.fr-faces`` blocks is complete with ``naturalWidth > 0``, at least as many as the
faces the shown groups hold (computed from the same library beforehand). The page shows at most
``GROUPS_SHOWN`` groups (read from facerec/app/library.py; 30 at the time of writing), the biggest, with
at most ``FACES_SHOWN`` faces each, and says how many groups there are; the library's own count of groups
(all, and of 2+ faces) is recorded beside the count of groups shown. Also recorded per visit, on the same
clock (``timeline_s``): when the app's shell appeared, its websocket connected, the script started, the
"Library" header and the "N group(s) of unnamed faces" caption appeared, the first face was displayed, all
the faces' ``<img>`` elements were in the page (loaded or not), and the script was first seen finished; and
how many script runs the page saw start (polled every 10 ms; the page's scan-progress fragment reruns
every second, and those runs count too), how many Streamlit elements the main area holds, and the browser
main thread's long tasks (over 50 ms; PerformanceObserver) until then, count and total seconds. A page
that shows an error ("Something went wrong: ...") instead of its groups is timed when its pictures are
loaded and the error is recorded (``page_error``).

The 1-, 5- and 15-minute load averages are recorded before and after; the machine may be shared.
Then (``--no-profile`` leaves it out) the page's Python side is timed on the same library without a
browser, in a fresh interpreter: the app run by Streamlit's AppTest, the Library page's first run there
(first-use imports included) and 5 reruns, each profiled with cProfile (top functions in the JSON), then
:class:`~facerec.library.Library` calls and the face pictures (made cold into a scratch folder, then
found cached) one by one.

    nice -n 10 .venv/bin/python benchmarks/library_page.py [--people 220] [--per-person 4] [--visits 3]
        [--json benchmarks/results/library_page.json] [--work DIR (kept; its library is reused)]
"""

from __future__ import annotations

import argparse
import ast
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

# the People page benchmark's headless server, browser visits and summary
from people_page import link_weights, timed_visit, visit_plan, visit_summary  # noqa: E402

PAGE_PATH = "/library"
GROUPS_CAPTION = "group(s) of unnamed faces"

DONE_JS = """(expected) => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.dataset.testConnectionState !== "CONNECTED" || app.dataset.testScriptState !== "notRunning")
        return false;
    const main = document.querySelector('[data-testid="stMain"]') || document;
    const imgs = [...new Set(main.querySelectorAll('.fr-faces img'))];
    const error = [...main.querySelectorAll('[data-testid="stAlert"], [data-testid="stException"]')]
        .map(e => e.innerText).find(t => /Something went wrong|Traceback|Error:/.test(t)) || null;
    if (!error && (imgs.length < expected || !imgs.every(i => i.complete && i.naturalWidth > 0))) return false;
    if (error && !imgs.every(i => i.complete && i.naturalWidth > 0)) return false;
    const long = window.__lpLong || {n: 0, ms: 0};
    return {ms: performance.now(), images: imgs.length, groups: main.querySelectorAll('.fr-faces').length, error,
            elements: main.querySelectorAll('[data-testid="stElementContainer"]').length,
            long_tasks: long.n, long_tasks_ms: long.ms,
            caption: [...main.querySelectorAll('[data-testid="stCaptionContainer"]')].map(e => e.innerText)
                     .find(t => t.includes("GROUPS_CAPTION")) || ""};
}""".replace("GROUPS_CAPTION", GROUPS_CAPTION)


TIMELINE_JS = """(() => {
    const t = window.__lpTimeline = {};
    const mark = (k, cond) => { if (t[k] === undefined && cond) t[k] = performance.now(); };
    let last = null;
    window.__lpRuns = 0;
    const long = window.__lpLong = {n: 0, ms: 0};  // the main thread's tasks over 50 ms
    try {
        new PerformanceObserver(list => { for (const e of list.getEntries()) { long.n += 1; long.ms += e.duration; } })
            .observe({type: "longtask", buffered: true});
    } catch (e) {}
    const tick = () => {
        const app = document.querySelector('[data-testid="stApp"]');
        mark("app_shell", !!app);
        if (!app) return;
        const state = app.dataset.testScriptState;
        if (state === "running" && last !== "running") window.__lpRuns += 1;
        last = state;
        mark("connected", app.dataset.testConnectionState === "CONNECTED");
        mark("script_running", state === "running");
        mark("header", [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stHeading"]')]
            .some(e => /Library/.test(e.innerText)));
        mark("caption", [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stCaptionContainer"]')]
            .some(e => e.innerText.includes("GROUPS_CAPTION")));
        mark("script_done", t.script_running !== undefined && state === "notRunning");
        const imgs = [...document.querySelectorAll('[data-testid="stMain"] .fr-faces img')];
        mark("first_image", imgs.some(i => i.complete && i.naturalWidth > 0));
        mark("all_img_elements", imgs.length >= EXPECTED);
    };
    setInterval(tick, 10);
})();""".replace("GROUPS_CAPTION", GROUPS_CAPTION)


def page_limits() -> dict[str, int]:
    """``GROUPS_SHOWN`` and ``FACES_SHOWN`` of the Library page (facerec/app/library.py), read without running it."""
    out = {"GROUPS_SHOWN": 10**9, "FACES_SHOWN": 10**9}
    for node in ast.parse((ROOT / "facerec" / "app" / "library.py").read_text()).body:
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if getattr(t, "id", None) in out:
                    out[t.id] = int(ast.literal_eval(node.value))
    return out


def settings_for(gallery: Path, cache: Path, roots: Path):
    """The settings the app will use (``effective_settings`` over the same ``FACEREC_*`` variables)."""
    from facerec.settings import effective_settings

    return effective_settings(dict(os.environ, FACEREC_GALLERY=str(gallery), FACEREC_CACHE_DIR=str(cache),
                                   FACEREC_PHOTO_ROOTS=str(roots), FACEREC_ICE_SERVERS=""))


def build_library(n: int, per_person: int, shared: Path, gallery: Path, cache: Path, roots: Path) -> dict:
    """Copy the photos of the first ``n`` lfw_dev people with 2+ photos into ``<roots>/library`` and scan it."""
    from facerec import FaceRecognizer
    from facerec.library import Library
    from facerec.storage import tag_cache_path
    from facerec.tagcache import TagCache

    folder = roots / "library"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    people, copied = [], 0
    for person in sorted(p for p in (shared / "lfw_dev").iterdir() if p.is_dir()):
        if len(people) >= n:
            break
        files = sorted(person.glob("*.jpg"))
        if len(files) < 2:
            continue
        for f in files[:per_person]:
            shutil.copyfile(f, folder / f.name)
            copied += 1
        people.append(person.name)
    rec = FaceRecognizer(settings_for(gallery, cache, roots))
    library = Library(rec)
    t0 = time.time()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.time() - last[0] > 20 or done == total:
            last[0] = time.time()
            print(f"scanned {done}/{total} photos ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)

    try:
        library.add_folder(folder, [roots.resolve()])
        with TagCache(tag_cache_path(cache)) as tc:
            report = library.scan(tc, progress, roots=[roots.resolve()])
    finally:
        library.close()
    return {"people": len(people), "photos": copied, "per_person_max": per_person, "first": people[:1],
            "last": people[-1:], "scan_seconds": round(time.time() - t0, 1),
            "scan_report": {"photos": report.photos, "processed": report.processed, "cached": report.cached,
                            "failed": [list(f) for f in report.failed]}}


def library_stats(gallery: Path, cache: Path, roots: Path, limits: dict[str, int]) -> dict:
    """What the page will show: groups (all, 2+), faces, and the faces of the groups shown."""
    from facerec import FaceRecognizer
    from facerec.library import Library

    rec = FaceRecognizer(settings_for(gallery, cache, roots))
    library = Library(rec)
    try:
        faces = library.faces()
        groups = library.groups()
        shown = groups[:limits["GROUPS_SHOWN"]]
        sizes = [len(g) for g in groups]

        def person(f) -> str:
            return f.path.name.rsplit("_", 1)[0]

        pure = sum(1 for g in groups if len(g) >= 2 and len({person(f) for f in g.faces}) == 1)
        return {"faces": len(faces), "unknown_faces": sum(1 for f in faces if f.kind == "unknown"),
                "photos": len({f.path for f in faces}), "groups": len(groups),
                "groups_2plus": sum(1 for s in sizes if s >= 2), "groups_2plus_one_lfw_person": pure,
                "group_sizes": dict(sorted(collections.Counter(sizes).items())),
                "groups_shown": len(shown), "threshold": library.threshold(),
                "faces_shown": sum(min(len(g), limits["FACES_SHOWN"]) for g in shown),
                # the page keys each group's widgets by group.key[:24] (facerec/app/library.py): the first 24
                # characters of its first face's photo hash, the same for two groups starting in one photo
                "shown_groups_sharing_a_widget_key": len(shown) - len({g.key[:24] for g in shown}),
                "groups_sharing_a_widget_key": len(groups) - len({g.key[:24] for g in groups})}
    finally:
        library.close()


def visit(browser, url: str, expected: int, shot: Path | None = None) -> dict:
    """One fresh-context visit of the Library page (people_page's :func:`timed_visit`)."""
    def more(page) -> dict:
        html_chars = page.evaluate("() => (document.querySelector('[data-testid=\"stMain\"]') || document.body)"
                                   ".innerHTML.length")
        if shot is not None:  # Streamlit scrolls inside its main block: a viewport as tall as it, for the whole page
            height = page.evaluate("() => Math.max(...[...document.querySelectorAll('[data-testid=\"stMain\"], "
                                   "[data-testid=\"stMainBlockContainer\"]')].map(e => e.scrollHeight), 1000)")
            page.set_viewport_size({"width": 1600, "height": min(int(height) + 100, 16000)})
            page.wait_for_timeout(500)
            page.screenshot(path=str(shot), full_page=True)
        return {"main_html_chars": html_chars}

    done, row = timed_visit(browser, url, expected, TIMELINE_JS, DONE_JS, "lp", more)
    if done.get("error"):
        print(f"the page shows an error: {done['error'][:300]}", file=sys.stderr, flush=True)
    row.update({"page_error": done.get("error"), "streamlit_elements": done["elements"],
                "long_tasks_until_done": done["long_tasks"],
                "long_tasks_until_done_s": round(done["long_tasks_ms"] / 1000, 3), "groups_shown": done["groups"]})
    return row


def _top(prof, top: int) -> dict:
    """The ``top`` functions of a cProfile by cumulative and by own time."""
    import io
    import pstats

    stats = pstats.Stats(prof, stream=io.StringIO()).stats

    def name(key) -> str:
        file, line, func = key
        return f"{Path(file).name}:{line}({func})"

    return {"by_cumulative": [{"function": name(k), "calls": v[1], "tottime_s": round(v[2], 4),
                               "cumtime_s": round(v[3], 4)} for k, v in sorted(stats.items(), key=lambda kv: -kv[1][3])[:top]],
            "by_own_time": [{"function": name(k), "calls": v[1], "tottime_s": round(v[2], 4)}
                            for k, v in sorted(stats.items(), key=lambda kv: -kv[1][2])[:top // 2]]}


def profile_python_side(env: dict, gallery: Path, cache: Path, roots: Path, limits: dict[str, int],
                        reruns: int = 5, top: int = 30) -> dict:
    """The page's Python side on the same library, in a fresh interpreter (run it through a spawned
    process): the app run by Streamlit's AppTest (the home page first, as a server's first session
    would not, but it makes the recogniser), then the Library page's first run in this process (first
    use imports included; cProfile on the wall clock) and ``reruns`` more (wall seconds each; one
    cProfile of them all on the script thread's CPU clock, so that other processes do not blur it); then
    Library calls and face pictures timed one by one (pictures cold into a scratch cache folder, then
    from the real cache)."""
    import cProfile

    os.environ.update({k: v for k, v in env.items() if k.startswith("FACEREC_")})
    from streamlit.testing.v1 import AppTest

    import facerec.app as app_module

    out: dict = {}
    original = app_module.main
    prof = [None]

    def profiled() -> None:  # AppTest runs the script in its own thread: profile inside it
        if prof[0] is None:
            return original()
        prof[0].enable()
        try:
            original()
        finally:
            prof[0].disable()

    app_module.main = profiled
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    t = time.perf_counter()
    at.run()  # the home page; registers the pages, makes the recogniser
    out["apptest_home_page_first_run_s"] = round(time.perf_counter() - t, 3)
    pages = {info.get("page_name"): h for h, info in (at._registered_pages or {}).items()}
    at._page_hash = pages["Library"]
    prof[0] = cProfile.Profile()
    t = time.perf_counter()
    at.run()
    out["apptest_library_first_run_s"] = round(time.perf_counter() - t, 3)
    if at.exception:
        raise RuntimeError(f"the Library page failed under AppTest: {at.exception}")
    out["cprofile_library_first_run_wall"] = _top(prof[0], top)
    prof[0] = cProfile.Profile(time.thread_time)
    walls = []
    for _ in range(reruns):
        t = time.perf_counter()
        at.run()
        walls.append(round(time.perf_counter() - t, 3))
    out["apptest_library_rerun_s"] = walls
    out["apptest_groups_caption"] = next((c.value for c in at.caption if GROUPS_CAPTION in c.value), "")
    out["cprofile_library_reruns_thread_cpu"] = dict(_top(prof[0], top), runs=reruns)
    app_module.main = original

    from facerec import FaceRecognizer, thumbs
    from facerec.app.library import face_grid_html
    from facerec.library import Library

    rec = FaceRecognizer(settings_for(gallery, cache, roots))
    steps: dict[str, float] = {}

    def timed(label: str, call):
        t = time.perf_counter()
        result = call()
        steps[label] = round(time.perf_counter() - t, 4)
        return result

    library = timed("Library(rec)", lambda: Library(rec))
    try:
        timed("folders()", library.folders)
        timed("faces() (new Library: every rerun pays it)", library.faces)
        timed("groups() (faces() memoised: clustering + arranging)", library.groups)
        library._faces = None  # as on a rerun: a new Library each run, nothing memoised
        groups = timed("groups() with faces() again", library.groups)
        timed("gallery.people()", rec.gallery.people)
        shown = [list(g.faces[:limits["FACES_SHOWN"]]) for g in groups[:limits["GROUPS_SHOWN"]]]
        with tempfile.TemporaryDirectory() as scratch:
            timed(f"{sum(map(len, shown))} face pictures made (cold, scratch folder)",
                  lambda: [thumbs.face_thumb(f.path, f.sha, f.box, Path(scratch), size=96) for fs in shown for f in fs])
        pictures = timed("face pictures found on disk (cached)",
                         lambda: [[thumbs.face_thumb(f.path, f.sha, f.box, cache, size=96) for f in fs] for fs in shown])
        blocks = timed("face_grid_html for the shown groups", lambda: [face_grid_html(p) for p in pictures])
        out["grid_html_chars"] = sum(map(len, blocks))
    finally:
        library.close()
    out["steps_s"] = steps
    out["loadavg_after"] = list(os.getloadavg())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=220, help="lfw_dev people with 2+ photos copied in")
    ap.add_argument("--per-person", type=int, default=4, help="at most this many photos each (2 at least)")
    ap.add_argument("--visits", type=int, default=3, help="visits after the first, face pictures cached")
    ap.add_argument("--no-restart", action="store_true", help="leave out the visit to a restarted server")
    ap.add_argument("--no-profile", dest="profile", action="store_false",
                    help="leave out the timing and cProfile of the page's Python side")
    ap.add_argument("--shared", type=Path, default=Path("/work/shared/faces"))
    ap.add_argument("--work", type=Path, default=None,
                    help="folder for the gallery, cache, photos and logs, kept afterwards (a library already built "
                         "there with the same --people and --per-person is reused); default: a temporary folder, removed")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "library_page.json")
    args = ap.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="facerec_library_page_"))
    work.mkdir(parents=True, exist_ok=True)
    work = work.resolve()
    gallery, cache, roots = work / "gallery", work / "cache", work / "photos"
    load_before = os.getloadavg()
    t_start = time.time()
    limits = page_limits()
    profile = None
    try:
        link_weights(cache)
        built = work / "built.json"
        prior = json.loads(built.read_text()) if built.is_file() else None
        wanted = {"people": args.people, "per_person": args.per_person}
        if prior is not None and prior.get("requested") == wanted and gallery.is_dir():
            library = dict(prior, reused=True)
            print(f"reusing the library in {work} ({library['photos']} photos)", file=sys.stderr)
        else:
            shutil.rmtree(gallery, ignore_errors=True)
            library = dict(build_library(args.people, args.per_person, args.shared, gallery, cache, roots),
                           requested=wanted)
            built.write_text(json.dumps(library, indent=2))
            library["reused"] = False
        stats = library_stats(gallery, cache, roots, limits)
        print(f"library: {stats['faces']} faces, {stats['groups']} groups ({stats['groups_2plus']} of 2+), "
              f"{stats['groups_shown']} shown with {stats['faces_shown']} faces", file=sys.stderr, flush=True)
        shutil.rmtree(cache / "thumbs", ignore_errors=True)  # the first visit makes them

        expected = stats["faces_shown"]
        env = dict(os.environ, FACEREC_GALLERY=str(gallery), FACEREC_CACHE_DIR=str(cache),
                   FACEREC_PHOTO_ROOTS=str(roots), FACEREC_ICE_SERVERS="")
        visits = visit_plan(env, work, PAGE_PATH, expected, args.visits, not args.no_restart, visit,
                            lambda v: f"{v['groups_shown']} groups, {v['images']} faces")
        load_after = os.getloadavg()
        if args.profile:  # in a fresh interpreter: a first run there pays what a fresh server's does
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(1) as pool:
                profile = pool.apply(profile_python_side, (env, gallery, cache, roots, limits))
            print("python side: " + json.dumps({k: v for k, v in profile.items() if k.startswith("apptest_")
                                                and "caption" not in k}) + " " + json.dumps(profile["steps_s"]),
                  file=sys.stderr, flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    summary = dict(visit_summary(visits),
                   visits_with_a_page_error=sum(1 for v in visits if v.get("page_error")))
    lines = [f"Library page, unnamed groups: {stats['groups']} groups in the library ({stats['groups_2plus']} of 2+ "
             f"faces), {stats['groups_shown']} shown with {expected} faces; {library['photos']} lfw_dev photos of "
             f"{library['people']} people; load {load_before[0]:.1f} -> {load_after[0]:.1f}", "",
             "| visit | server | face pictures on disk before | all shown faces rendered (s) | DOMContentLoaded (s) "
             "| connected (s) | groups caption (s) | first face (s) |",
             "|---|---|---|---|---|---|---|---|"]

    def at(v, key):
        x = v["timeline_s"].get(key)
        return "-" if x is None else f"{x:.2f}"

    for i, v in enumerate(visits):
        lines.append(f"| {i + 1} {v['kind']} | {v['server']} | {v['thumbs_on_disk_before']} | "
                     f"**{v['seconds']:.2f}** | {v['dom_content_loaded_s']:.2f} | {at(v, 'connected')} | "
                     f"{at(v, 'caption')} | {at(v, 'first_image')} |"
                     + (f" page error: {v['page_error'][:120]}" if v.get("page_error") else ""))
    table = "\n".join(lines)
    print(table)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    out = {"issue": 24,
           "target": "the Library page's unnamed groups, first paint with 200 unnamed groups in Chromium under 2 s",
           "protocol": "Throw-away library, nobody enrolled: the first N lfw_dev people (alphabetical) with 2+ photos, "
                       "their first 2-4 photos copied (250x250 JPEG) into one folder under FACEREC_PHOTO_ROOTS, added "
                       "and scanned with facerec.library.Library before the app starts. streamlit run app.py headless "
                       f"on localhost; headless Chromium (Playwright) opens {PAGE_PATH} (view 'Unnamed groups') in a "
                       "fresh context per visit. Time = performance.now() (0 at navigation start) when the app is "
                       "connected, its script not running, and every <img> of the .fr-faces blocks is complete with "
                       "naturalWidth > 0, their count = the faces of the groups shown (min(groups, GROUPS_SHOWN) "
                       "groups, FACES_SHOWN faces each at most). Visit 1: fresh server, no face pictures on disk; "
                       "'later': same server, pictures cached; 'restart': newly started server, pictures cached.",
           "commit": commit, "tree_dirty": dirty, "library": library, "library_stats": stats,
           "page_limits_in_app": limits, "faces_expected": expected,
           "command": "nice -n 10 python benchmarks/library_page.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "nice": os.nice(0), "loadavg_before": list(load_before), "loadavg_after": list(load_after),
           "cpus": os.cpu_count(), "seconds": round(time.time() - t_start, 1), "summary": summary,
           "visits": visits, "python_side": profile, "table_markdown": table}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
