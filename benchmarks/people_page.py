"""How long the People page (the app's home page, ``/``) takes to show its faces in a real browser (issue 14).

A throw-away gallery is built with N people (default 200), one photo each: for the first N people of
lfw_dev (alphabetical folder order) whose first photo (alphabetical) has a face the product finds, that
250x250 photo is upscaled to 1600x1200 (bicubic, JPEG quality 90, as real_photos.py makes its camera
photos) so that decoding it costs what a phone photo's would, and enrolled with
:meth:`facerec.FaceRecognizer.enroll` (``largest=True``: the largest face when LFW shows several; people
whose photo has no face found are skipped and counted). The gallery and its cache folder
(``FACEREC_GALLERY``, ``FACEREC_CACHE_DIR``) live in a temporary folder, removed at the end (``--work
DIR`` keeps them there, with the photos, Streamlit's log and two screenshots, and a later run with the
same ``--people`` reuses that gallery); the cache's ``weights`` is a symlink to the user's converted
weights (enrolment needs them, the People page does not).

Then ``streamlit run app.py`` is started headless on a free localhost port with that gallery (as
tests/test_browser.py does), and headless Chromium (Debian's ``chromium``, through Playwright) visits
``/``, each visit in a fresh browser context (new Streamlit session, empty browser cache):

1. ``first``: the first visit to a freshly started server, no face thumbnail on disk yet
   (every photo is decoded and its round face thumbnail written to ``<cache>/thumbs``);
2. ``later`` (``--visits``, default 3): the same server, thumbnails cached on disk;
3. ``restart``: one visit to a newly restarted server, thumbnails cached (server warm-up without
   thumbnail making; ``--no-restart`` leaves it out).

A visit's time is the page's own clock (``performance.now()``, zero at navigation start) at the first
moment, polled every 25 ms, when the app is connected, its script is no longer running, and every
``<img>`` of the main area (``st.image`` pictures, or the faces of the People grid's HTML block since
0.6) is complete with ``naturalWidth > 0``, at least as many as the people shown.
The page shows at most ``PEOPLE_SHOWN`` people (read from facerec/app/people.py; 120 at the time of writing) with a
caption "search to find the others", so with N above that the timed page holds that many face
thumbnails, not N (and only theirs are made on the first visit: the count of thumbnail files on disk
is recorded before and after each visit). Also recorded per visit, on the same clock: when the app's
shell appeared, its websocket connected, the script started, the header and the "N people enrolled"
caption appeared, the first face was displayed, all the faces' ``<img>`` elements were in the page
(loaded or not), and the script was first seen finished (``timeline_s`` in the JSON), and how many
script runs the page saw start (polled every 10 ms: a very short run may be missed).

The 1-, 5- and 15-minute load averages are recorded before and after; the machine may be shared.

    nice -n 10 .venv/bin/python benchmarks/people_page.py [--people 200] [--visits 3]
        [--json benchmarks/results/people_page.json] [--work DIR (kept; its gallery is reused)]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("FACEREC_CHROMIUM", "/usr/bin/chromium")
PHOTO_SIZE = (1600, 1200)
JPEG_QUALITY = 90
TIMEOUT_S = 300

DONE_JS = """(expected) => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.dataset.testConnectionState !== "CONNECTED" || app.dataset.testScriptState !== "notRunning")
        return false;
    const main = document.querySelector('[data-testid="stMain"]') || document;
    const imgs = [...main.querySelectorAll('[data-testid="stImage"] img, [data-testid="stImageContainer"] img, '
                                           + 'a.fr-person img')];
    const unique = [...new Set(imgs)];
    if (unique.length < expected || !unique.every(i => i.complete && i.naturalWidth > 0)) return false;
    return {ms: performance.now(), images: unique.length,
            caption: [...main.querySelectorAll('[data-testid="stCaptionContainer"]')].map(e => e.innerText)[0] || ""};
}"""


TIMELINE_JS = """(() => {
    const t = window.__ppTimeline = {};
    const mark = (k, cond) => { if (t[k] === undefined && cond) t[k] = performance.now(); };
    let last = null;
    window.__ppRuns = 0;
    const tick = () => {
        const app = document.querySelector('[data-testid="stApp"]');
        mark("app_shell", !!app);
        if (!app) return;
        const state = app.dataset.testScriptState;
        if (state === "running" && last !== "running") window.__ppRuns += 1;
        last = state;
        mark("connected", app.dataset.testConnectionState === "CONNECTED");
        mark("script_running", app.dataset.testScriptState === "running");
        mark("header", !!document.querySelector('[data-testid="stMain"] [data-testid="stHeading"]'));
        mark("caption", [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stCaptionContainer"]')]
            .some(e => / enrolled/.test(e.innerText)));
        mark("script_done", t.script_running !== undefined && app.dataset.testScriptState === "notRunning");
        const imgs = [...document.querySelectorAll('[data-testid="stMain"] img')];
        mark("first_image", imgs.some(i => i.complete && i.naturalWidth > 0));
        mark("all_img_elements", imgs.length >= EXPECTED);
    };
    setInterval(tick, 10);
})();"""


def people_shown_limit() -> int:
    """``PEOPLE_SHOWN`` of the People page (facerec/app/people.py), read without running it (the page shows at most that many people)."""
    for node in ast.parse((ROOT / "facerec" / "app" / "people.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PEOPLE_SHOWN" for t in node.targets):
            return int(ast.literal_eval(node.value))
    return 10**9


def build_gallery(n: int, shared: Path, gallery: Path, cache: Path, photos_dir: Path) -> dict:
    """Enrol the first ``n`` lfw_dev people with a face found, one upscaled photo each (see the docstring)."""
    import cv2

    from facerec import FaceRecognizer, Settings
    from facerec.errors import FaceRecError

    rec = FaceRecognizer(Settings.from_env(gallery=gallery, cache_dir=cache))
    photos_dir.mkdir(parents=True, exist_ok=True)
    enrolled, skipped, t0 = [], [], time.time()
    for folder in sorted(p for p in (shared / "lfw_dev").iterdir() if p.is_dir()):
        if len(enrolled) >= n:
            break
        files = sorted(folder.glob("*.jpg"))
        if not files:
            continue
        img = cv2.imread(str(files[0]))
        big = cv2.resize(img, PHOTO_SIZE, interpolation=cv2.INTER_CUBIC)
        ok, buf = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        data = buf.tobytes()
        (photos_dir / files[0].name).write_bytes(data)
        name = folder.name.replace("_", " ")
        try:
            rec.enroll(name, data, source=files[0].name, largest=True)
        except FaceRecError as exc:
            skipped.append({"person": folder.name, "why": f"{type(exc).__name__}: {exc}"})
            continue
        enrolled.append(name)
        if len(enrolled) % 20 == 0:
            print(f"enrolled {len(enrolled)}/{n} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    return {"people": len(enrolled), "skipped": skipped, "photo_bytes_mean": None,
            "seconds": round(time.time() - t0, 1), "first": enrolled[:1], "last": enrolled[-1:]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``streamlit run app.py`` headless on a free localhost port (as tests/test_browser.py's fixture)."""

    def __init__(self, env: dict, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
             "--server.port", str(self.port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        t0 = time.monotonic()
        while True:
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() - t0 > 60:
                self.stop()
                raise RuntimeError(f"streamlit did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        self.start_s = time.monotonic() - t0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def timed_visit(browser, url: str, expected: int, timeline_js: str, done_js: str, prefix: str,
                more=None) -> tuple[dict, dict]:
    """One fresh-context visit of ``url``, timed by the page's own clock (seconds from navigation start) until
    ``done_js(expected)`` holds; ``timeline_js`` records ``window.__<prefix>Timeline`` and ``__<prefix>Runs``.
    ``more(page)`` (screenshots, extra measures) runs before the context closes and its dict is merged in.
    Returns ``(what done_js returned, the row)``."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.add_init_script(timeline_js.replace("EXPECTED", str(int(expected))))
    try:
        page = context.new_page()
        t0 = time.monotonic()
        page.goto(url, wait_until="commit", timeout=TIMEOUT_S * 1000)
        done = page.wait_for_function(done_js, arg=expected, polling=25, timeout=TIMEOUT_S * 1000).json_value()
        wall = time.monotonic() - t0
        nav = page.evaluate("""() => { const n = performance.getEntriesByType('navigation')[0];
                                      return n ? {dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd} : {}; }""")
        timeline = page.evaluate(f"() => window.__{prefix}Timeline || {{}}")
        row = {"seconds": round(done["ms"] / 1000, 3), "seconds_python_clock": round(wall, 3),
               "dom_content_loaded_s": round(nav.get("dcl", 0) / 1000, 3), "images": done["images"],
               "script_runs_seen": page.evaluate(f"() => window.__{prefix}Runs"),
               "timeline_s": {k: round(v / 1000, 3) for k, v in sorted(timeline.items(), key=lambda kv: kv[1])},
               "caption": done["caption"]}
        row.update(more(page) if more is not None else {})
        return done, row
    finally:
        context.close()


def visit(browser, url: str, expected: int, shot: Path | None = None) -> dict:
    """One fresh-context visit of the People page (see :func:`timed_visit`)."""
    def screenshot(page) -> dict:
        if shot is not None:
            page.screenshot(path=str(shot), full_page=True)
        return {}

    return timed_visit(browser, url, expected, TIMELINE_JS, DONE_JS, "pp", screenshot)[1]


def link_weights(cache: Path) -> None:
    """Let a benchmark's own cache folder use the converted weights already cached for this user."""
    from facerec.settings import default_cache_dir

    cache.mkdir(exist_ok=True)
    weights = default_cache_dir() / "weights"
    if weights.is_dir() and not (cache / "weights").exists():
        (cache / "weights").symlink_to(weights)


def visit_plan(env: dict, work: Path, url_path: str, expected: int, later: int, restart: bool, visit,
               describe=lambda v: f"{v['images']} images") -> list[dict]:
    """Headless Chromium visits of one page: a first visit to a fresh server and ``later`` visits to it
    warm (face pictures then on disk), then, with ``restart``, one to a restarted server. ``visit(browser,
    url, expected, shot)`` makes one visit (screenshots of the first and last to ``work``); each row gains
    kind, server, its start time and the face pictures on disk before and after."""
    from playwright.sync_api import sync_playwright

    thumbs = Path(env["FACEREC_CACHE_DIR"]) / "thumbs"

    def thumb_count() -> int:
        return len(list(thumbs.glob("*_face.*"))) if thumbs.is_dir() else 0

    def one(browser, server, kind: str, shot: Path | None) -> dict:
        before = thumb_count()
        v = visit(browser, server.url + url_path, expected, shot)
        v.update(kind=kind, server="warm" if kind == "later" else "fresh", thumbs_on_disk_before=before,
                 server_start_s=None if kind == "later" else round(server.start_s, 2),
                 thumbs_on_disk_after=thumb_count())
        print(f"{kind}: {v['seconds']:.2f} s ({describe(v)})", file=sys.stderr, flush=True)
        return v

    visits = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            plan = ["first"] + ["later"] * later
            server = Server(env, work / "streamlit.log")
            try:
                for i, kind in enumerate(plan):
                    visits.append(one(browser, server, kind, work / f"visit{i}.png" if i in (0, len(plan) - 1) else None))
            finally:
                server.stop()
            if restart:
                server = Server(env, work / "streamlit.log")
                try:
                    visits.append(one(browser, server, "restart", None))
                finally:
                    server.stop()
        finally:
            browser.close()
    return visits


def visit_summary(visits: list[dict]) -> dict:
    """First, later (median, min, max) and restarted visits' seconds."""
    later = [v["seconds"] for v in visits if v["kind"] == "later"]
    return {"first_s": visits[0]["seconds"],
            "later_median_s": round(statistics.median(later), 3) if later else None,
            "later_min_s": min(later, default=None), "later_max_s": max(later, default=None),
            "restart_s": next((v["seconds"] for v in visits if v["kind"] == "restart"), None)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=200)
    ap.add_argument("--visits", type=int, default=3, help="visits after the first, thumbnails cached")
    ap.add_argument("--no-restart", action="store_true", help="leave out the visit to a restarted server")
    ap.add_argument("--shared", type=Path, default=Path("/work/shared/faces"))
    ap.add_argument("--work", type=Path, default=None,
                    help="folder for the gallery, cache and logs, kept afterwards (a gallery already built there "
                         "with the same --people is reused); default: a temporary folder, removed")
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "people_page.json")
    args = ap.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="facerec_people_page_"))
    work.mkdir(parents=True, exist_ok=True)
    gallery, cache = work / "gallery", work / "cache"
    load_before = os.getloadavg()
    t_start = time.time()
    try:
        link_weights(cache)
        built = work / "built.json"
        prior = json.loads(built.read_text()) if built.is_file() else None
        if prior is not None and prior.get("requested") == args.people and gallery.is_dir():
            enrolment = dict(prior, reused=True)
            print(f"reusing the gallery in {gallery} ({enrolment['people']} people)", file=sys.stderr)
        else:
            shutil.rmtree(gallery, ignore_errors=True)
            enrolment = dict(build_gallery(args.people, args.shared, gallery, cache, work / "photos"),
                             requested=args.people)
            sizes = [p.stat().st_size for p in (work / "photos").iterdir()]
            enrolment["photo_bytes_mean"] = round(sum(sizes) / max(1, len(sizes)))
            built.write_text(json.dumps(enrolment, indent=2))
            enrolment["reused"] = False
        shutil.rmtree(cache / "thumbs", ignore_errors=True)  # the first visit makes them

        n = enrolment["people"]
        limit = people_shown_limit()
        expected = min(n, limit)
        env = dict(os.environ, FACEREC_GALLERY=str(gallery), FACEREC_CACHE_DIR=str(cache), FACEREC_ICE_SERVERS="")
        visits = visit_plan(env, work, "/", expected, args.visits, not args.no_restart, visit)
        load_after = os.getloadavg()
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    summary = visit_summary(visits)
    lines = [f"People page, {n} people enrolled ({expected} thumbnails shown), photos "
             f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} JPEG; load {load_before[0]:.1f} -> {load_after[0]:.1f}", "",
             "| visit | server | face thumbnails on disk before | all shown faces rendered (s) | DOMContentLoaded (s) "
             "| connected (s) | first face (s) |",
             "|---|---|---|---|---|---|---|"]

    def at(v, key):
        x = v["timeline_s"].get(key)
        return "-" if x is None else f"{x:.2f}"

    for i, v in enumerate(visits):
        lines.append(f"| {i + 1} {v['kind']} | {v['server']} | {v['thumbs_on_disk_before']} | "
                     f"**{v['seconds']:.2f}** | {v['dom_content_loaded_s']:.2f} | {at(v, 'connected')} | "
                     f"{at(v, 'first_image')} |")
    table = "\n".join(lines)
    print(table)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    out = {"issue": 14,
           "protocol": "Throw-away gallery: first N lfw_dev people (alphabetical) whose first photo has a face found, "
                       f"that photo upscaled to {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} (bicubic, JPEG q{JPEG_QUALITY}), enrolled "
                       "with FaceRecognizer.enroll(largest=True). streamlit run app.py headless on localhost; headless "
                       "Chromium (Playwright) opens / in a fresh context per visit. Time = performance.now() (0 at "
                       "navigation start) when the app is connected, its script not running, and every <img> of the "
                       "main area is complete with naturalWidth > 0, their count = people shown (min(N, PEOPLE_SHOWN)). "
                       "Visit 1: fresh server, no thumbnails on disk; 'later': same server, thumbnails cached; "
                       "'restart': newly started server, thumbnails cached.",
           "commit": commit, "tree_dirty": dirty, "people": n, "people_requested": args.people,
           "people_shown": expected, "people_shown_limit_in_app": limit,
           "photo_size": list(PHOTO_SIZE), "jpeg_quality": JPEG_QUALITY, "enrolment": enrolment,
           "command": "nice -n 10 python benchmarks/people_page.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "loadavg_before": list(load_before), "loadavg_after": list(load_after), "cpus": os.cpu_count(),
           "seconds": round(time.time() - t_start, 1), "summary": summary, "visits": visits,
           "table_markdown": table}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
