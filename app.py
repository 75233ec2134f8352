"""facerec in the browser: people (the home page), live video, identify, enrol, who was here,
tag photos, settings; one URL per page (``st.navigation``: ``/``, ``/live``, ``/identify``,
``/enrol``, ``/history``, ``/tag``, ``/settings``), drawn only after the sign-in gate.

Run with ``streamlit run app.py``. A thin layer over the facerec library: one
cached recogniser per settings (``st.cache_resource``), shared by all pages
and sessions; every FaceRecError reaches the user as ``st.error``. Matches are shown
as verdicts (facerec.verdict), enrolment checks come from facerec.enrolcheck, the People
page's pictures from facerec.thumbs (cached on disk), the who-was-here history from
facerec.history (written from Live's video thread through its non-blocking writer).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import tempfile
import time
import urllib.parse
import zipfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import streamlit as st
from PIL import Image

# WebRTC (aiortc) must be imported before anything loads TensorFlow: the other way
# round, aiortc's libsrtp and TensorFlow's bundled SSL symbols crash the process.
try:
    import av
    from streamlit_webrtc import WebRtcMode, webrtc_streamer
except ImportError as _exc:
    webrtc_streamer = None
    WEBRTC_MISSING = str(_exc)

from facerec import BACKBONES, FaceRecError, FaceRecognizer, Settings, auth
from facerec import history, photonames, thumbs
from facerec.enrolcheck import concerns, name_key, owners, resemblance, similar_names
from facerec.quality import face_quality
from facerec.errors import EmptyGalleryError, GalleryBusyError
from facerec.align import crop_box
from facerec.detect import rescale_face
from facerec.draw import draw_labels
from facerec.gallery import validate_name
from facerec.storage import content_hash, write_atomic
from facerec.images import is_image_path, load_photo, pixel_budget
from facerec.tagcache import TagCache
from facerec.tagging import csv_report, find_photos, identify_files, json_report, printable
from facerec.video import LiveProcessor, LiveSnapshot
from facerec.types import Match
from facerec.verdict import verdict

MAX_UPLOAD_MB = 20
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
PHOTO_HELP = f"JPEG, PNG, WebP or BMP, at most {MAX_UPLOAD_MB} MB each."
MAX_ZIP_UPLOAD_BYTES = 200 * 1024 * 1024  # an uploaded zip (.streamlit/config.toml: maxUploadSize)
MAX_ZIP_BYTES = 1024 * 1024 * 1024  # uncompressed total of an uploaded zip
MAX_ZIP_FILES = 5000
SETTINGS_FILE = ".facerec/app_settings.json"
IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp"]


def base_settings() -> Settings:
    """Settings from the environment plus the choices saved from the Settings page."""
    env = Settings.from_env()
    saved = env.gallery / SETTINGS_FILE
    try:
        choices = json.loads(saved.read_text()) if saved.is_file() else {}
        return env.replace(**{k: choices[k] for k in ("backbone", "detector", "threshold") if k in choices})
    except (ValueError, FaceRecError, OSError):
        return env


def save_choices(settings: Settings, **choices) -> None:
    """Persist the Settings page's choices next to the gallery index (atomic)."""
    path = settings.gallery / SETTINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(choices).encode())


@st.cache_resource(show_spinner="Loading face models...")
def recognizer(settings: Settings) -> FaceRecognizer:
    """One recogniser per settings for the whole server process (thread-safe)."""
    return FaceRecognizer(settings)


def read_upload(upload, limit: int = MAX_UPLOAD_BYTES) -> tuple[bytes, str]:
    """Bytes and name of an uploaded file, refusing ones over ``limit`` bytes; the size
    Streamlit reports (``UploadedFile.size``) is checked before the bytes are read."""
    size = getattr(upload, "size", None)
    if size is not None and size > limit:
        raise FaceRecError(f"{upload.name}: larger than {limit // 2**20} MB")
    data = upload.getvalue()
    if len(data) > limit:
        raise FaceRecError(f"{upload.name}: larger than {limit // 2**20} MB")
    return data, upload.name


def live_processor(rec: FaceRecognizer) -> LiveProcessor:
    """This browser session's processor (tracks belong to one video stream), for the current recogniser.
    It records who it names into the gallery's who-was-here history (from the video thread, through
    the history module's non-blocking writer: no st.* there)."""
    proc = st.session_state.get("live_processor")
    if proc is None or proc.recognizer is not rec:
        if proc is not None:
            proc.close()
        proc = LiveProcessor(rec, recorder=history.writer(rec.settings.gallery).observe)
        st.session_state["live_processor"] = proc
    return proc


def presence_text(snap: LiveSnapshot, now: float | None = None) -> str:
    """The who-is-in-view list as plain text, one person a line: verdict and for how long."""
    now = time.time() if now is None else now
    lines = []
    for p in snap.present:
        if snap.threshold is None:
            what = p.name
        else:
            v = verdict(Match(p.name, p.score), snap.threshold)
            what = v.headline if v.known else "unknown"
        lines.append(f"{what}  ·  for {history.format_duration(now - p.since)}")
    if lines:
        return "\n".join(lines)
    return "nobody" if snap.looked else "looking..."


@st.fragment(run_every=1.0)
def live_panel(proc: LiveProcessor) -> None:
    """Who is in view and the frame rate, redrawn every second while the camera runs (only this
    part of the page reruns: no "Running..." for the whole page, no frozen list)."""
    snap = proc.snapshot()
    st.text(f"{snap.fps:.1f} fps · {snap.detections_per_s:.1f} detections/s")
    st.text(presence_text(snap))
    if snap.error:
        st.warning(snap.error)
    writer_error = history.writer(proc.recognizer.settings.gallery).error
    if writer_error:
        st.warning(writer_error)


def page_live(rec: FaceRecognizer) -> None:
    st.header("Live")
    if webrtc_streamer is None:
        st.warning(f"Live video is not available here ({WEBRTC_MISSING}); identifying single snapshots instead.")
        identify_picture(rec, st.camera_input("Camera snapshot", key="live_camera"))
        return
    st.caption("Press START and allow the camera. Every face is boxed and named (strangers: unknown; "
               "a name ending in ? is a possible match); who was here is kept on the Who was here page.")
    proc = live_processor(rec)

    def on_frame(frame):  # runs in the WebRTC thread: no st.* here
        out = proc.process(frame.to_ndarray(format="rgb24"))
        return av.VideoFrame.from_ndarray(out, format="rgb24")

    video, side = st.columns([3, 2])
    with video:
        rtc = {"iceServers": rec.settings.ice_server_list()}
        try:
            ctx = webrtc_streamer(
                key="live", mode=WebRtcMode.SENDRECV, rtc_configuration=rtc,
                media_stream_constraints={"video": {"width": 640, "height": 480}, "audio": False},
                video_frame_callback=on_frame, async_processing=True,
            )
        except Exception as exc:  # no WebRTC runtime (e.g. a test harness): fall back to snapshots
            st.warning(f"Live video could not start ({type(exc).__name__}: {exc}); "
                       "identifying single snapshots instead.")
            identify_picture(rec, st.camera_input("Camera snapshot", key="live_camera"))
            return
    with side:
        st.subheader("In view")
        if ctx.state.playing:
            with st.spinner("Loading face models..."):
                _ = rec.detector, rec.embedder  # now, rather than in the worker on the first frames
            live_panel(proc)
        else:
            st.text("Press START to turn the camera on.")


def identify_picture(rec: FaceRecognizer, source) -> None:
    """Box and name every face of one uploaded or camera picture: a verdict per face
    (match, possible match, unknown) drawn inside the photo, the similarity in small type."""
    if source is None:
        return
    data, name = read_upload(source)
    photo = rec.read(data, name)
    with st.spinner("Finding faces..."):
        results = rec.identify_photo(photo)
    threshold = rec.threshold
    verdicts = [verdict(m, threshold) for _, m in results]
    items = [(rescale_face(f, 1.0 / photo.scale).box, f"{i}. {v.label}", True if v.sure else (None if v.known else False))
             for i, ((f, _), v) in enumerate(zip(results, verdicts), start=1)]
    st.image(draw_labels(photo.pixels, items), caption=f"{len(results)} face(s)")
    for i, ((face, _), v) in enumerate(zip(results, verdicts), start=1):
        st.markdown(f"**{i}. {v.headline}**")
        quality = face_quality(face)
        why = f" A poor face for recognition ({quality.describe()}): that may be why." if quality.poor and not v.sure else ""
        st.caption(v.detail + why)
    if not results:
        st.info("No face found in this photo.")


def page_identify(rec: FaceRecognizer) -> None:
    st.header("Identify")
    st.caption("Upload a photo or take a snapshot: every face is boxed and named, with how sure the match is.")
    source = st.radio("Photo from", ["an uploaded photo", "the camera"], horizontal=True, key="identify_source")
    if source == "the camera":
        picture = st.camera_input("Camera snapshot", key="identify_camera")
    else:
        picture = st.file_uploader("Photo", type=IMAGE_TYPES, key="identify_upload",
                                   max_upload_size=MAX_UPLOAD_MB, help=PHOTO_HELP)
    if picture is not None:
        prepare_gallery(rec)
    identify_picture(rec, picture)


def enrol_faces(rec: FaceRecognizer, data: bytes, sha: str, fname: str):
    """Every face of an uploaded photo, aligned and embedded, kept in the session by content hash
    so that a rerun (typing a name, ticking a box) does not detect again."""
    cache = st.session_state.setdefault("enrol_faces", {})
    key = (sha, rec.embedder.key, rec.settings.detector)
    if key not in cache:
        if len(cache) > 64:
            cache.clear()
        cache[key] = rec.embed(rec.find_faces(rec.read(data, fname)))
    return cache[key]


def prepare_gallery(rec: FaceRecognizer) -> None:
    """Embed the enrolled photos that lack vectors for this base (after a base switch) with a
    progress bar; while another session is doing it, show its progress and look again in a moment."""
    bar = None

    def progress(items):
        nonlocal bar
        items = list(items)
        bar = st.progress(0.0, text=f"Preparing the gallery for {rec.settings.backbone}...")
        for i, item in enumerate(items, start=1):
            yield item
            bar.progress(i / len(items), text=f"Preparing the gallery for {rec.settings.backbone}: "
                                              f"{i} of {len(items)} photos")

    try:
        rec.refresh(progress, wait=False)
    except EmptyGalleryError:
        pass
    except GalleryBusyError:
        done, total = rec.preparing or (0, 0)
        st.info(f"The gallery is being prepared for {rec.settings.backbone} ({done} of {total} photos); "
                "this page continues when it is ready.")
        time.sleep(1.0)
        st.rerun()
    finally:
        if bar is not None:
            bar.empty()


def gallery_matcher(rec: FaceRecognizer):
    """The fitted matcher over everyone enrolled, or ``None`` with nobody (or not ready yet)."""
    try:
        return rec.refresh(wait=False)
    except (EmptyGalleryError, GalleryBusyError):
        return None


def page_enroll(rec: FaceRecognizer) -> None:
    st.header("Enrol")
    gen = st.session_state.get("enrol_gen", 0)  # new widgets (an empty uploader) after each save
    for kind, text in st.session_state.pop("enrol_done", []):
        getattr(st, kind)(text)
    people = {p.name: p.photos for p in rec.gallery.people()}
    name = st.text_input("Name", placeholder="e.g. Zoë Martin", key=f"enrol_name_{gen}")
    valid = False
    if name:
        try:
            name, valid = validate_name(name), True
        except FaceRecError as exc:
            st.error(f"This name cannot be used: {exc}".replace("\\", "\\\\"))  # markdown would eat a backslash
    if valid:
        similar = similar_names(name, people)
        if similar:
            other = similar[0]
            choice = st.radio(f"{other} is already enrolled ({people[other]} photo(s)). Is this the same person?",
                              [f"Yes, add these photos to {other}", f"No, {name} is someone else"],
                              key=f"enrol_similar_{gen}")
            if choice.startswith("Yes"):
                name = other
        if name in people:
            st.caption(f"Adding photos to {name}, who has {people[name]} photo(s).")
    uploads = st.file_uploader("Photos of this person", type=IMAGE_TYPES, accept_multiple_files=True,
                               key=f"enroll_upload_{gen}", max_upload_size=MAX_UPLOAD_MB, help=PHOTO_HELP)
    shot = None
    if st.toggle("Take a photo with the camera", key=f"enrol_camera_on_{gen}"):
        shot = st.camera_input("Camera", key=f"enroll_camera_{gen}")
    files = list(uploads or []) + ([shot] if shot else [])
    if not files:
        return
    if people:
        prepare_gallery(rec)
    matcher = gallery_matcher(rec) if people else None
    if people and matcher is None:
        st.caption("The enrolled people cannot be compared with these photos right now (the gallery is being "
                   "prepared); check the names with care.")
    threshold = rec.threshold
    records = rec.gallery.photos()
    seen: dict[str, str] = {}
    plans, waiting = [], 0
    for f in files:
        cols = st.columns([1, 3])
        try:
            data, fname = read_upload(f)
        except FaceRecError as exc:
            cols[1].error(f"{exc}; it will not be saved.")
            continue
        sha = content_hash(data)
        if sha in seen:
            cols[1].warning(f"{fname}: the same photo as {seen[sha]} in this batch; it is saved once.")
            continue
        seen[sha] = fname
        owned = owners(records, sha)
        if valid and name in owned:
            cols[1].info(f"{fname}: already enrolled for {name}.")
            continue
        try:
            faces = enrol_faces(rec, data, sha, fname)  # aligned and embedded: saving will not decode again
        except FaceRecError as exc:
            cols[1].error(f"{exc}; it will not be saved.")
            continue
        if not faces:
            cols[1].warning(f"{fname}: no face found; it will not be saved.")
            continue
        choice = 0
        if len(faces) > 1:
            labels = [f"face {j + 1}" for j in range(len(faces))]
            picked = cols[1].radio(f"{fname}: {len(faces)} faces; which one is {name or 'this person'}?",
                                   ["none"] + labels, key=f"pick_{gen}_{sha[:16]}", horizontal=True)
            if picked == "none":
                cols[1].warning(f"{fname}: several faces; pick one or it will not be saved.")
                cols[0].image([fc.crop for fc in faces], caption=labels, width=72)
                continue
            choice = labels.index(picked)
        face = faces[choice]
        cols[0].image(face.crop, caption=fname, width=128)
        worries = [f"This photo is already enrolled for {', '.join(o for o in owned if o != name)}."] if owned else []
        if valid:
            worries += concerns(resemblance(matcher, face.vector, name), name, threshold)
        quality = face_quality(face)
        if quality.poor:
            worries.append(f"A poor photo for recognition ({quality.describe()}): a sharp, frontal photo "
                           "names this person more reliably.")
        if worries:
            cols[1].warning(f"{fname}: " + " ".join(worries))
            if not cols[1].checkbox(f"Yes, this is {name or 'this person'}: save it anyway",
                                    key=f"confirm_{gen}_{sha[:16]}_{choice}"):
                waiting += 1
                continue
        else:
            cols[1].caption(f"{fname}: ready.")
        plans.append((data, fname, sha, face))
    if waiting:
        st.info(f"{waiting} photo(s) wait for your confirmation above; unconfirmed photos are not saved.")
    if st.button(f"Save {len(plans)} photo(s)", disabled=not (plans and valid), type="primary"):
        saved, done = 0, []
        for data, fname, sha, face in plans:
            try:
                rec.enroll(name, data, source=fname, face=face)
                saved += 1
            except FaceRecError as exc:
                done.append(("error", f"{fname}: {exc}"))
        if saved:
            done.insert(0, ("success", f"Saved {saved} photo(s) of {name}."))
            st.session_state["enrol_done"] = done
            st.session_state["enrol_gen"] = gen + 1
            st.rerun()
        for kind, text in done:
            getattr(st, kind)(text)


PEOPLE_SHOWN = 120  # a search finds the others
PEOPLE_CSS = """<style>
.fr-grid {display: grid; grid-template-columns: repeat(auto-fill, minmax(128px, 1fr)); gap: 1rem 0.5rem;}
.fr-person {display: flex; flex-direction: column; align-items: center; text-decoration: none !important;
            color: inherit !important; text-align: center;}
.fr-person img, .fr-person .fr-none {width: 112px; height: 112px; border-radius: 50%; object-fit: cover;
            background: rgba(128, 128, 128, 0.2);}
.fr-person b {margin-top: 0.35rem; font-weight: 600;}
.fr-person small {opacity: 0.65;}
.fr-person:hover b {text-decoration: underline;}
</style>"""


def people_grid_html(cards: list[tuple[str, int, Path | None]]) -> str:
    """The People grid as one block of HTML: for each ``(name, photos, face picture)`` a round
    face (inlined as a data URI: one message instead of a request per face) over the name,
    linking to ``?person=<name>``, the person's page. Names are escaped."""
    items = []
    for name, count, picture in cards:
        face = '<span class="fr-none"></span>'
        if picture is not None:
            face = f'<img alt="" src="data:image/jpeg;base64,{base64.b64encode(picture.read_bytes()).decode()}">'
        items.append(f'<a class="fr-person" href="?person={urllib.parse.quote(name, safe="")}" target="_self">'
                     f'{face}<b>{html.escape(name)}</b><small>{count} photo(s)</small></a>')
    return PEOPLE_CSS + f'<div class="fr-grid">{"".join(items)}</div>'


def people_flash(kind: str, text: str) -> None:
    """A message shown once, after the rerun that follows a change."""
    st.session_state["people_flash"] = (kind, text)


def person_label(record, names: Mapping[str, str]) -> str:
    """A photo as the user knows it: the name it was uploaded under, else its file name."""
    return names.get(record.sha, record.path.name)


def page_people(rec: FaceRecognizer) -> None:
    st.header("People")
    flash = st.session_state.pop("people_flash", None)
    if flash:
        getattr(st, flash[0])(flash[1])
    people = rec.gallery.people()
    if not people:
        st.info("Nobody is enrolled yet: use the Enrol page.")
        if "enrol" in PAGE_OBJECTS:
            st.page_link(PAGE_OBJECTS["enrol"], label="Enrol someone", icon=":material/person_add:")
        return
    opened = st.query_params.get("person")  # each person's page has its own address: /?person=<name>
    if opened in {p.name for p in people}:
        person_detail(rec, opened)
        return
    query = st.text_input("Search by name", key="people_search", placeholder="Type part of a name")
    shown = [p for p in people if name_key(query) in name_key(p.name)] if query else people
    st.caption(f"{len(people)} {'person' if len(people) == 1 else 'people'} enrolled" + (f", {len(shown)} match “{query}”" if query else "")
               + (f"; the first {PEOPLE_SHOWN} are shown, search to find the others" if len(shown) > PEOPLE_SHOWN else ""))
    first: dict[str, object] = {}
    for r in rec.gallery.photos():  # one query; each person's first photo with a known face
        if r.person not in first or (first[r.person].box is None and r.box is not None):
            first[r.person] = r
    cache = rec.settings.cache_dir
    cards = []
    for person in shown[:PEOPLE_SHOWN]:
        r = first.get(person.name)
        cards.append((person.name, person.photos,
                       thumbs.face_thumb(r.path, r.sha, r.box, cache) if r is not None else None))
    st.markdown(people_grid_html(cards), unsafe_allow_html=True)


def person_detail(rec: FaceRecognizer, name: str) -> None:
    """One person: every photo with the enrolled face boxed, remove (confirmed), rename, forget (confirmed)."""
    gallery, cache = rec.gallery, rec.settings.cache_dir
    if st.button("← Everyone", key="people_back"):
        st.query_params.pop("person", None)
        st.rerun()
    photos = gallery.photos(name)
    names = photonames.names(gallery.root)
    st.subheader(f"{name} ({len(photos)} photo(s))")
    pending = st.session_state.get("people_remove")
    for start in range(0, len(photos), 4):
        cols = st.columns(4)
        for col, r in zip(cols, photos[start:start + 4]):
            label = person_label(r, names)
            with col:
                picture = thumbs.photo_thumb(r.path, r.sha, r.box, cache)
                if picture is None:
                    st.warning(f"{label}: unreadable photo")
                else:
                    st.image(str(picture), caption=label)
                if st.button("Remove…", key=f"rm_{r.path.name}", disabled=pending == r.path.name):
                    st.session_state["people_remove"] = r.path.name
                    st.rerun()
    target = next((r for r in photos if r.path.name == pending), None)
    if target is not None:
        label = person_label(target, names)
        st.warning(f"Remove {label} from {name}? The photo and its face vectors are deleted.")
        yes, no = st.columns(2)
        if yes.button("Yes, remove it", key="rm_yes", type="primary"):
            st.session_state.pop("people_remove", None)
            rec.remove_photo(name, target.path.name)
            people_flash("success", f"Removed {label} from {name}.")
            st.rerun()
        if no.button("Cancel", key="rm_no"):
            st.session_state.pop("people_remove", None)
            st.rerun()
    st.divider()
    new = st.text_input("Rename to", key=f"rn_{name}")
    if st.button("Rename", key=f"rnb_{name}", disabled=not new):
        try:
            new = rec.rename(name, new)
        except FaceRecError as exc:
            st.error(f"Not renamed: {exc}")
        else:
            st.query_params["person"] = new
            people_flash("success", f"Renamed {name} to {new}.")
            st.rerun()
    sure = st.checkbox(f"Yes, forget {name} (photos, vectors and who-was-here history)", key=f"fg_{name}")
    if st.button("Forget this person", key=f"fgb_{name}", disabled=not sure):
        n = rec.forget(name)
        st.query_params.pop("person", None)
        people_flash("success", f"Forgot {name}: {n} photo(s) and everything learnt from them removed.")
        st.rerun()


def page_history(rec: FaceRecognizer) -> None:
    st.header("Who was here")
    st.caption("Everyone the Live page named: when they came, when they were last seen and for how long. "
               "Kept in the gallery's folder; forgetting a person removes theirs too.")
    log = history.History(rec.settings.gallery)
    everyone = log.people()
    if not everyone:
        st.info("Nobody has been seen yet: people named on the Live page appear here.")
        return
    left, right = st.columns(2)
    day = left.date_input("Day", value=None, format="YYYY-MM-DD", key="history_day",
                          help="Leave empty for every day.")
    chosen = right.multiselect("People", everyone, key="history_people", placeholder="Everyone")
    rows = log.appearances(day, chosen or None)
    if not rows:
        st.info("Nobody was seen then.")
        return

    def face_url(jpeg: bytes | None) -> str | None:
        return None if jpeg is None else "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()

    table = [{"face": face_url(a.snapshot), "name": a.name,
              "first seen": datetime.fromtimestamp(a.first_seen).strftime("%Y-%m-%d %H:%M:%S"),
              "last seen": datetime.fromtimestamp(a.last_seen).strftime("%H:%M:%S"),
              "for": history.format_duration(a.duration)} for a in rows]
    st.write(f"{len(rows)} appearance(s).")
    st.dataframe(table, width="stretch", hide_index=True,
                 column_config={"face": st.column_config.ImageColumn("face")})
    st.download_button("Download CSV", history.to_csv(rows), file_name="facerec_who_was_here.csv",
                       mime="text/csv", on_click="ignore")


def extract_zip(data: bytes, dest: Path) -> list[Path]:
    """Unpack the photos of an uploaded zip into ``dest``, safely.

    Only image files are written, each under ``dest`` (members whose path is
    absolute or climbs out with ``..`` are refused, links are never created), and
    the archive is refused when it is not a zip or unpacks to more than
    ``MAX_ZIP_BYTES`` or ``MAX_ZIP_FILES`` files.

    Raises:
        FaceRecError: with the reason.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise FaceRecError("the upload is not a zip archive") from None
    root = dest.resolve()
    members = [m for m in archive.infolist() if not m.is_dir() and is_image_path(Path(m.filename))]
    if len(members) > MAX_ZIP_FILES:
        raise FaceRecError(f"the zip holds {len(members)} photos; at most {MAX_ZIP_FILES} at once")
    if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
        raise FaceRecError(f"the zip unpacks to more than {MAX_ZIP_BYTES // 2**20} MB")
    out, written = [], 0
    for m in members:
        name = m.filename.replace("\\", "/")
        target = (root / name).resolve()
        if name.startswith("/") or ".." in Path(name).parts or root not in target.parents:
            raise FaceRecError(f"the zip entry {m.filename!r} would leave its folder; refusing the archive")
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(m) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > MAX_ZIP_BYTES:  # sizes in the header can lie
                    raise FaceRecError(f"the zip unpacks to more than {MAX_ZIP_BYTES // 2**20} MB")
                dst.write(chunk)
        out.append(target)
    return sorted(out)


def face_thumbnails(result) -> list[str]:
    """A small PNG data URL of each face of a tagging result: its aligned crop when the
    tagger made one; for a photo whose faces came from the tag cache, cut from a small
    reduced decode of the photo (the only time that photo is decoded)."""
    photo = None
    urls = []
    for face, _ in result.faces:
        tile = face.crop
        if tile is None:
            try:
                photo = photo or load_photo(result.path, 256)
            except FaceRecError:
                urls.append(None)
                continue
            tile = crop_box(photo.pixels, rescale_face(face, 1.0 / photo.scale).box, 64)
        buf = io.BytesIO()
        Image.fromarray(tile).resize((64, 64)).save(buf, format="PNG")
        urls.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode())
    return urls


@st.cache_resource
def tag_cache(path: Path) -> TagCache:
    """The tag cache ``facerec tag`` uses too (one per server process; it is thread-safe)."""
    return TagCache(path)


def run_tagger(rec: FaceRecognizer, paths: list[Path], shown_root: Path) -> None:
    """Tag ``paths`` with a progress bar; keep rows and reports in the session for the downloads."""
    if not paths:
        st.warning("No photos found there.")
        return
    def shown(path: Path) -> str:  # printable: a file name that is not UTF-8 breaks the table
        return printable(str(path.relative_to(shown_root)) if shown_root in path.parents else str(path))

    bar = st.progress(0.0, text=f"0 / {len(paths)} photos")
    results, rows, notes = [], [], []
    cache = tag_cache(rec.settings.cache_dir / "tags.sqlite")
    threshold = None
    for i, res in enumerate(identify_files(rec, paths, cache=cache), start=1):
        results.append(res)
        if res.error or not res.faces:  # listed under the table, with the reason
            notes.append(printable(f"{shown(res.path)}: {res.error or 'no face found'}"))
        if res.faces and threshold is None:
            threshold = rec.threshold
        for (face, match), thumb in zip(res.faces, face_thumbnails(res)):
            v = verdict(match, threshold)
            rows.append({"face": thumb, "photo": shown(res.path), "name": match.name, "verdict": v.kind,
                         "score": round(match.score, 3), "box": " ".join(map(str, face.int_box()))})
        bar.progress(i / len(paths), text=f"{i} / {len(paths)} photos")
    results = [dataclasses.replace(r, path=Path(shown(r.path))) for r in results]  # report paths as shown
    st.session_state["tag_results"] = (rows, csv_report(results), json_report(results), notes)


def page_tag(rec: FaceRecognizer) -> None:
    st.header("Tag photos")
    st.caption("Name every face in many photos at once; download the results as CSV or JSON.")
    source = st.radio("Photos from", ["a folder on this computer", "an uploaded zip"], horizontal=True)
    if source == "a folder on this computer":
        roots = auth.photo_roots(rec.settings.photo_roots, remote=is_served_remotely())
        if not roots:
            st.info("Reading folders on the server is off while the app is served to other machines; "
                    "upload a zip instead (the admin can allow folders with FACEREC_PHOTO_ROOTS).")
        else:
            st.caption("Folders under: " + ", ".join(map(str, roots)))
            folder = st.text_input("Folder path", placeholder=str(roots[0] / "Pictures" / "party"))
            if st.button("Tag photos", disabled=not folder):
                path = auth.allowed_folder(folder, roots)  # real path; refused outside the roots
                photos = [p for p in find_photos([path]) if auth.within_roots(p, roots)]  # no symlinks out
                run_tagger(rec, photos, path)
    else:
        upload = st.file_uploader("Zip of photos", type=["zip"], key="tag_zip",
                                  help=f"At most {MAX_ZIP_UPLOAD_BYTES // 2**20} MB; only its photos are unpacked.")
        if upload is not None and st.button("Tag photos"):
            data, _ = read_upload(upload, MAX_ZIP_UPLOAD_BYTES)
            with tempfile.TemporaryDirectory(prefix="facerec-tag-") as tmp, pixel_budget():
                paths = extract_zip(data, Path(tmp))  # a budget of decoded pixels for the whole zip:
                run_tagger(rec, paths, Path(tmp).resolve())  # its photos past it fail one by one
    if "tag_results" not in st.session_state:
        return
    rows, csv_text, json_text, notes = st.session_state["tag_results"]
    named = sum(1 for r in rows if r["verdict"] != "unknown")
    st.write(f"{len(rows)} face(s), {named} named.")
    if rows:
        st.dataframe(rows, width="stretch", hide_index=True, column_config={
            "face": st.column_config.ImageColumn("face"),
            "score": st.column_config.NumberColumn("similarity", format="%.3f"),
            "box": st.column_config.TextColumn("box (x y w h)")})
    if notes:
        with st.expander(f"{len(notes)} photo(s) without a named face or not read", expanded=True):
            st.text("\n".join(notes))
    left, right = st.columns(2)
    left.download_button("Download CSV", csv_text, file_name="facerec_tags.csv", mime="text/csv", on_click="ignore")
    right.download_button("Download JSON", json_text, file_name="facerec_tags.json", mime="application/json",
                           on_click="ignore")


def page_settings(settings: Settings) -> None:
    """Base network, detector and unknown threshold, saved next to the gallery.

    The threshold is saved per base (and head): switching base shows that base's own
    threshold (its calibrated one unless one was saved for it), on a slider spanning the
    base's useful range, and "Use the calibrated threshold" restores the calibrated one.
    A base whose weights cannot be loaded here is not saved; the page says what to do.
    """
    from facerec import weights
    from facerec.classify import threshold_range
    from facerec.thresholds import recognition_threshold
    from facerec.embed import build_architecture, get_backbone
    from facerec.settings import DETECTORS, saved_thresholds, threshold_key, with_threshold

    st.header("Settings")
    names = list(BACKBONES)
    path = settings.gallery / SETTINGS_FILE
    st.caption(f"Saved next to the gallery ({path}); they apply to every page and session.")
    try:
        choices = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        choices = {}
    choices = choices if isinstance(choices, dict) else {}
    backbone = st.selectbox("Base network", names, index=names.index(settings.backbone))
    st.caption("Which frozen network turns faces into identity vectors; switching re-embeds the enrolled photos "
               f"once. {BACKBONES[backbone].description}")
    detector = st.selectbox("Detector", list(DETECTORS), index=DETECTORS.index(settings.detector))
    st.caption("What finds the faces: YuNet (the default) and MTCNN also find eyes, nose and mouth for alignment; "
               "YuNet is several times faster and finds more small faces. OpenCV's Haar cascade misses more faces "
               "and does not align them.")

    key = threshold_key(backbone, settings.head)
    enrolled = [r.person for r in recognizer(settings).gallery.photos()]  # no model is loaded for this
    default = recognition_threshold(settings.replace(backbone=backbone, threshold=None), enrolled)
    saved = saved_thresholds(choices)
    mine = saved[key] if key in saved else settings.threshold if backbone == settings.backbone else None
    current = default if mine is None else mine
    lo, hi = threshold_range(default)
    step = 0.005 if hi - lo <= 0.3 else 0.01
    lo = round(max(0.0, math.floor(min(lo, current) / step) * step), 3)
    hi = round(min(1.0, math.ceil(max(hi, current) / step) * step), 3)
    generation = st.session_state.get("threshold_generation", 0)  # a new slider after "use the calibrated"
    threshold = st.slider("Unknown threshold", lo, hi, float(current), step, format="%.3f",
                          key=f"threshold_{key}_{generation}")
    people = len(set(enrolled))
    state = f"calibrated value for this base and {people} {'person' if people == 1 else 'people'}: {default:.3f}, " + (
        "in use" if mine is None else f"in use: {mine:.3f}, saved for {backbone}")
    st.caption(f"Faces whose best match scores below this are called unknown: higher means fewer wrong names but "
               f"more unknowns ({state}). Each base keeps its own threshold.")

    def save(value: float | None) -> None:
        base = get_backbone(backbone)
        try:  # a base that cannot load its weights would break every page
            weights.load_weights(backbone, build_architecture(base, base.input_size), settings)
        except FaceRecError as exc:
            how = getattr(weights, "how_to_get_weights", None)
            what = how(backbone) if how else f"run `facerec fetch-weights {backbone}` on the server"
            st.error(f"Not saved: the weights of {backbone} cannot be loaded here; to use it, {what}.")
            with st.expander("What was tried"):
                st.text(str(exc))
            return
        save_choices(settings, **with_threshold(choices, key, value, backbone=backbone, detector=detector))
        st.session_state["settings_saved"] = True
        st.session_state["threshold_generation"] = generation + 1
        st.rerun()

    at_calibrated = mine is None and threshold == float(current)  # an untouched slider keeps "calibrated"
    left, right = st.columns(2)
    if left.button("Save settings"):
        with st.spinner(f"Checking that {backbone} can load its weights..."):
            save(None if at_calibrated else threshold)
    if right.button(f"Use the calibrated threshold ({default:.3f})", disabled=at_calibrated):
        with st.spinner(f"Checking that {backbone} can load its weights..."):
            save(None)
    if st.session_state.pop("settings_saved", False):
        st.success("Saved; they apply to every page now.")


SIGNED_IN_KEY = "facerec_signed_in"  # the password hash this session signed in with
CONFIGURE_HELP = """This app holds people's faces. It is served to other machines, so it needs a sign-in first;
until one is set up it shows nothing else. Choose one (README, "Sign-in"), then reload this page:

- **An admin password**: on the server, `facerec admin set-password` (with the same `--gallery` or
  `FACEREC_GALLERY` as the app).
- **OpenID Connect** (Google, Microsoft, Okta, Keycloak...): an `[auth]` section in `.streamlit/secrets.toml`
  and the emails allowed in, `[facerec] allowed_emails = ["ann@example.org", "*@example.org"]`;
  needs `pip install Authlib`.
- **This machine only**: start it with `--server.address localhost` (the default in `.streamlit/config.toml`).
"""


def is_served_remotely() -> bool:
    """Whether other machines may reach this app: it listens beyond loopback
    (``server.address``), or the request came through a reverse proxy."""
    try:
        headers = dict(st.context.headers)
    except Exception:  # no request context (a test harness)
        headers = {}
    return auth.served_remotely(st.get_option("server.address"), headers)


def oidc_settings() -> tuple[list[str | None], list[str]] | None:
    """The OpenID Connect providers of secrets.toml's ``[auth]`` (``None`` is its default
    provider) and ``[facerec] allowed_emails``; ``None`` when ``[auth]`` is not configured."""
    try:
        section = st.secrets.get("auth")
        allowed = (st.secrets.get("facerec") or {}).get("allowed_emails", [])
    except Exception:  # no secrets.toml, or one that cannot be read
        return None
    if not section:
        return None
    named = [k for k, v in section.items() if isinstance(v, Mapping)]
    providers = ([None] if "client_id" in section or not named else []) + named
    return providers, [allowed] if isinstance(allowed, str) else [str(a) for a in allowed]


def sign_in_gate(settings: Settings) -> bool:
    """True when this session may see the app; otherwise draw the sign-in (or how to set one up).

    Any configured sign-in (admin password, OpenID Connect) is required wherever the app
    listens; with none, a local app is open and a remotely served one shows only how to
    configure sign-in (facerec.auth.gate).
    """
    encoded = auth.stored_hash(settings.gallery)
    oidc = oidc_settings()
    oidc_user = oidc is not None and bool(getattr(st.user, "is_logged_in", False))
    oidc_ok = oidc_user and auth.email_allowed(st.user.get("email"), oidc[1], st.user.get("email_verified"))
    password_ok = encoded is not None and st.session_state.get(SIGNED_IN_KEY) == encoded
    state = auth.gate(remote=is_served_remotely(), password_set=encoded is not None,
                      oidc_configured=oidc is not None, signed_in=password_ok or oidc_ok)
    if state == "open":
        if (password_ok or oidc_ok) and st.sidebar.button("Sign out"):
            st.session_state.pop(SIGNED_IN_KEY, None)
            if oidc_user:
                st.logout()
            st.rerun()
        return True
    st.title("facerec")
    if state == "configure":
        st.warning("Sign-in is not set up.")
        st.markdown(CONFIGURE_HELP)
        return False
    if oidc_user and not oidc_ok:
        st.error(f"{st.user.get('email') or 'This account'} may not use this app; ask its admin.")
        if st.button("Sign out"):
            st.logout()
    if encoded is not None:
        with st.form("sign_in"):
            password = st.text_input("Admin password", type="password")
            submitted = st.form_submit_button("Sign in")
        if submitted:
            result = auth.attempt_sign_in(settings.gallery, password)
            if result.ok:
                st.session_state[SIGNED_IN_KEY] = encoded
                st.rerun()
            wait = math.ceil(result.wait_s)
            if not result.checked:
                st.error(f"Too many wrong passwords: try again in {wait} s.")
            else:
                st.error("Wrong password." + (f" Wait {wait} s before the next try." if wait else ""))
    if oidc is not None:
        for provider in oidc[0]:
            if st.button(f"Sign in with {provider or 'your identity provider'}", key=f"login_{provider}"):
                st.login(provider)
    return False


PAGES = [  # (title, url path, icon, page function); People is the home page
    ("People", "people", ":material/groups:", page_people),
    ("Live", "live", ":material/videocam:", page_live),
    ("Identify", "identify", ":material/image_search:", page_identify),
    ("Enrol", "enrol", ":material/person_add:", page_enroll),
    ("Who was here", "history", ":material/history:", page_history),
    ("Tag photos", "tag", ":material/photo_library:", page_tag),
    ("Settings", "settings", ":material/settings:", None),
]
PAGE_OBJECTS: dict = {}  # url path -> st.Page of this run (for st.page_link)


def make_page(settings: Settings, title: str, url: str, icon: str, draw):
    """One st.Page with its own URL (``/live``...; the home page is ``/``)."""
    def run() -> None:
        if draw is None:
            page_settings(settings)
        else:
            draw(recognizer(settings))

    run.__name__ = f"page_{url}"
    return st.Page(run, title=title, url_path=url, icon=icon, default=url == "people")


def main() -> None:
    st.set_page_config(page_title="facerec", page_icon=":material/face:", layout="wide")
    try:
        settings = base_settings()
        if not sign_in_gate(settings):  # first: nothing else is drawn before sign-in
            return
        PAGE_OBJECTS.clear()
        PAGE_OBJECTS.update({url: make_page(settings, *spec) for spec in PAGES for url in [spec[1]]})
        page = st.navigation(list(PAGE_OBJECTS.values()))
        st.sidebar.caption(f"Gallery: {settings.gallery} · base: {settings.backbone}")
        page.run()
    except FaceRecError as exc:
        st.error(str(exc))
    except Exception as exc:  # never a traceback in the browser (Streamlit's own rerun/stop are BaseException)
        st.error(f"Something went wrong: {type(exc).__name__}: {exc}")


main()
