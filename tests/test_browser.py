"""The app in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

``streamlit run app.py`` is started on a free localhost port with a fresh gallery;
Chromium's fake camera plays a clip of ../shared/faces/videos/one_person_clips
(converted to .y4m here). The test enrols the clip's person from a few of its
frames through the Enrol page's uploader, opens Live, and waits for the name in
the who-is-in-view list; a clip of someone not enrolled must show ``unknown``.
Screenshots of every page go to test-artifacts/. If the browser cannot start the
test fails with the reason; it skips only when ../shared is absent.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import SHARED

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.weights, pytest.mark.realdata]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CLIPS = SHARED / "videos" / "one_person_clips"
KNOWN_CLIP, STRANGER_CLIP = "d18.mp4", "d10.mp4"  # two different people; MTCNN finds one face in each
NAME = "Clip Person"
CHROMIUM = os.environ.get("FACEREC_CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 120_000


def clip_frames(clip: Path, start: int = 0, count: int = 60, step: int = 2) -> list[np.ndarray]:
    """``count`` BGR frames of ``clip`` (every ``step``-th from ``start``), letterboxed to 640x480."""
    cap = cv2.VideoCapture(str(clip))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames, i = [], 0
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        if i % step == 0:
            h, w = frame.shape[:2]
            s = min(640 / w, 480 / h)
            small = cv2.resize(frame, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
            canvas = np.zeros((480, 640, 3), np.uint8)
            y, x = (480 - small.shape[0]) // 2, (640 - small.shape[1]) // 2
            canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
            frames.append(canvas)
        i += 1
    cap.release()
    if not frames:
        raise RuntimeError(f"cannot read frames of {clip}")
    return frames


def write_y4m(frames: list[np.ndarray], path: Path, fps: int = 15) -> Path:
    """A raw YUV4MPEG2 (I420) file Chromium's fake camera can play (it loops)."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``streamlit run app.py`` on a free port with an empty gallery; yields its URL."""
    if not CLIPS.is_dir():
        pytest.skip("../shared/faces is absent")
    tmp = tmp_path_factory.mktemp("browser")
    port = free_port()
    env = dict(os.environ, FACEREC_GALLERY=str(tmp / "gallery"), FACEREC_ICE_SERVERS="")
    log = open(tmp / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start:\n{(tmp / 'streamlit.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, tmp
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "streamlit.log").write_bytes((tmp / "streamlit.log").read_bytes())


def launch(playwright, y4m: Path):
    """Headless system Chromium with a fake camera playing ``y4m``; fails with the reason if it cannot."""
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={y4m}"]
    try:
        return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
    except Exception as exc:
        pytest.fail(f"Chromium could not start ({CHROMIUM}; Debian: apt-get install chromium): {exc}")


def goto_page(page, name: str) -> None:
    page.get_by_test_id("stSidebar").get_by_text(name, exact=True).click()
    page.get_by_role("heading", name=name, exact=True).wait_for(timeout=TIMEOUT_MS)


def watch_live(page, url: str, wanted: str, shot: str) -> str:
    """Open Live, start the camera, wait until ``wanted`` is in the who-is-in-view list; returns the list."""
    page.goto(url)
    page.get_by_role("heading", name="Live", exact=True).wait_for(timeout=TIMEOUT_MS)
    start = page.frame_locator("iframe[title*='streamlit_webrtc']").get_by_role("button", name="START")
    start.click(timeout=TIMEOUT_MS)
    in_view = page.get_by_test_id("stText").filter(has_text="since")
    try:
        in_view.filter(has_text=wanted).first.wait_for(timeout=TIMEOUT_MS)
    finally:
        page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    return in_view.first.inner_text()


def test_enrol_then_live_names_the_person_and_calls_a_stranger_unknown(server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    url, tmp = server
    ARTIFACTS.mkdir(exist_ok=True)
    known = clip_frames(CLIPS / KNOWN_CLIP, start=0, count=45)
    photos = []
    for i, j in enumerate((0, 20, 40)):
        photos.append(tmp / f"enrol_{i}.png")
        cv2.imwrite(str(photos[-1]), known[j])
    known_y4m = write_y4m(clip_frames(CLIPS / KNOWN_CLIP, start=100, count=60), tmp / "known.y4m")
    stranger_y4m = write_y4m(clip_frames(CLIPS / STRANGER_CLIP, start=0, count=60), tmp / "stranger.y4m")

    with sync_api.sync_playwright() as pw:
        browser = launch(pw, known_y4m)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            page.get_by_role("heading", name="Live", exact=True).wait_for()
            page.screenshot(path=str(ARTIFACTS / "live_start.png"), full_page=True)
            for name in ("Identify", "People", "Tag photos", "Settings"):
                goto_page(page, name)
                page.screenshot(path=str(ARTIFACTS / f"{name.lower().replace(' ', '_')}.png"), full_page=True)

            goto_page(page, "Enrol")
            page.get_by_label("Name").fill(NAME)
            page.get_by_label("Name").press("Enter")
            page.locator("[data-testid='stFileUploader'] input[type=file]").first.set_input_files(
                [str(p) for p in photos])
            save = page.get_by_role("button", name=f"Save {len(photos)} photo(s)")
            save.wait_for()
            page.wait_for_function("() => document.querySelectorAll('[data-testid=stImage] img').length >= 3")
            page.screenshot(path=str(ARTIFACTS / "enrol_preview.png"), full_page=True)
            save.click()
            page.get_by_text(f"Saved {len(photos)} photo(s) of {NAME}.").wait_for()
            page.screenshot(path=str(ARTIFACTS / "enrol_saved.png"), full_page=True)

            tag_dir = tmp / "to_tag"
            tag_dir.mkdir()
            cv2.imwrite(str(tag_dir / "known.jpg"), known[30])
            cv2.imwrite(str(tag_dir / "stranger.jpg"), clip_frames(CLIPS / STRANGER_CLIP, start=50, count=1)[0])
            (tag_dir / "broken.jpg").write_bytes(b"not a photo")
            goto_page(page, "Tag photos")
            page.get_by_label("Folder path").fill(str(tag_dir))
            page.get_by_label("Folder path").press("Enter")
            page.get_by_role("button", name="Tag photos").click()
            page.get_by_text("2 face(s), 1 named.").wait_for()
            page.get_by_test_id("stDataFrame").wait_for()
            page.screenshot(path=str(ARTIFACTS / "tag_photos_results.png"), full_page=True)
            with page.expect_download() as dl:
                page.get_by_role("button", name="Download CSV").click()
            csv_text = Path(dl.value.path()).read_text()
            assert f"known.jpg,1,{NAME}," in csv_text and "stranger.jpg,1,unknown," in csv_text
            with page.expect_download() as dl:
                page.get_by_role("button", name="Download JSON").click()
            assert "broken.jpg" in Path(dl.value.path()).read_text()

            listing = watch_live(page, url, NAME, "live_known.png")
            assert NAME in listing
            goto_page(page, "People")
            page.get_by_text(f"{NAME} ({len(photos)} photo(s))").wait_for()
            page.screenshot(path=str(ARTIFACTS / "people.png"), full_page=True)
        finally:
            browser.close()

        browser = launch(pw, stranger_y4m)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            listing = watch_live(page, url, "unknown", "live_stranger.png")
            assert "unknown" in listing and NAME not in listing
        finally:
            browser.close()
