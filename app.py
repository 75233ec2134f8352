"""facerec in the browser: live video, identify, enrol, manage people, tag photos, settings.

Run with ``streamlit run app.py``. A thin layer over the facerec library: one
cached recogniser per settings (``st.cache_resource``), shared by all pages
and sessions; every FaceRecError reaches the user as ``st.error``.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import tempfile
import time
import zipfile
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

from facerec import BACKBONES, FaceRecError, FaceRecognizer, Settings
from facerec.align import crop_box
from facerec.detect import rescale_face
from facerec.draw import draw_matches
from facerec.embed import calibrated_threshold
from facerec.gallery import content_hash, validate_name, write_atomic
from facerec.images import is_image_path, load_photo
from facerec.tagcache import TagCache
from facerec.tagging import csv_report, find_photos, identify_files, json_report
from facerec.video import LiveProcessor, LiveSnapshot

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
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
    """Bytes and name of an uploaded file, refusing ones over ``limit`` bytes."""
    data = upload.getvalue()
    if len(data) > limit:
        raise FaceRecError(f"{upload.name}: larger than {limit // 2**20} MB")
    return data, upload.name


def thumbnail(path: Path, size: int = 96):
    """A square RGB thumbnail of a photo, or ``None`` when it cannot be read."""
    try:
        image = load_photo(path, size).pixels  # a large JPEG is decoded reduced (DCT scaling)
    except FaceRecError:
        return None
    h, w = image.shape[:2]
    return crop_box(image, (0, 0, w, h), size, margin=0.0)


def live_processor(rec: FaceRecognizer) -> LiveProcessor:
    """This browser session's processor (tracks belong to one video stream), for the current recogniser."""
    proc = st.session_state.get("live_processor")
    if proc is None or proc.recognizer is not rec:
        if proc is not None:
            proc.close()
        proc = LiveProcessor(rec)
        st.session_state["live_processor"] = proc
    return proc


def presence_text(snap: LiveSnapshot) -> str:
    """The who-is-in-view list as plain text, one person a line."""
    lines = [f"{p.name}  score {p.score:.2f}  since {datetime.fromtimestamp(p.since):%H:%M:%S}" for p in snap.present]
    return "\n".join(lines) if lines else "nobody"


def page_live(rec: FaceRecognizer) -> None:
    st.header("Live")
    if webrtc_streamer is None:
        st.warning(f"Live video is not available here ({WEBRTC_MISSING}); identifying single snapshots instead.")
        identify_picture(rec, st.camera_input("Camera snapshot", key="live_camera"))
        return
    st.caption("Every face is boxed with its name and score (strangers: unknown); "
               "a name appears once it has matched over a few frames.")
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
        fps_box, list_box, note_box = st.empty(), st.empty(), st.empty()
    if ctx.state.playing:
        with st.spinner("Loading face models..."):
            _ = rec.detector, rec.embedder  # now, rather than in the worker on the first frames
    while ctx.state.playing:
        snap = proc.snapshot()
        fps_box.text(f"{snap.fps:.1f} fps · {snap.detections_per_s:.1f} detections/s")
        list_box.text(presence_text(snap))
        if snap.error:
            note_box.warning(snap.error)
        else:
            note_box.empty()
        time.sleep(0.5)
    list_box.text("Press START to turn the camera on.")


def identify_picture(rec: FaceRecognizer, source) -> None:
    """Box and name every face of one uploaded or camera picture."""
    if source is None:
        return
    data, name = read_upload(source)
    photo = rec.read(data, name)
    with st.spinner("Finding faces..."):
        results = rec.identify_photo(photo)
    shown = [(rescale_face(f, 1.0 / photo.scale), m) for f, m in results]
    st.image(draw_matches(photo.pixels, shown), caption=f"{len(results)} face(s)")
    for face, match in results:
        st.write(f"**{match.name}**, score {match.score:.2f}, box {list(face.int_box())}")
    if not results:
        st.info("No face found in this photo.")


def page_identify(rec: FaceRecognizer) -> None:
    st.header("Identify")
    st.caption("Take a snapshot or upload a photo; every face is boxed with its name and score.")
    shot = st.camera_input("Camera snapshot")
    upload = st.file_uploader("...or upload a photo", type=IMAGE_TYPES, key="identify_upload")
    identify_picture(rec, shot or upload)


def page_enroll(rec: FaceRecognizer) -> None:
    st.header("Enrol")
    name = st.text_input("Name", placeholder="e.g. Zoë Martin")
    valid = False
    if name:
        try:
            name, valid = validate_name(name), True
        except FaceRecError as exc:
            st.error(f"This name cannot be used: {exc}")
    uploads = st.file_uploader("Photos of this person", type=IMAGE_TYPES,
                               accept_multiple_files=True, key="enroll_upload")
    shot = st.camera_input("...or take a photo", key="enroll_camera")
    files = list(uploads or []) + ([shot] if shot else [])
    if not files:
        return
    plans = []
    for i, f in enumerate(files):
        cols = st.columns([1, 3])
        try:
            data, fname = read_upload(f)
            faces = rec.find_faces(rec.read(data, fname))  # aligned crops: saving will not decode again
        except FaceRecError as exc:
            cols[1].error(f"{exc}; it will not be saved.")
            continue
        if not faces:
            cols[1].warning(f"{fname}: no face found; it will not be saved.")
            continue
        if valid and name in rec.gallery and rec.gallery.has_photo(name, content_hash(data)):
            cols[1].info(f"{fname}: already enrolled for {name}.")
            continue
        choice = 0
        if len(faces) > 1:
            labels = [f"face {j + 1}" for j in range(len(faces))]
            picked = cols[1].radio(f"{fname}: {len(faces)} faces; which one is {name or 'this person'}?",
                                   ["none"] + labels, key=f"pick_{i}_{fname}", horizontal=True)
            if picked == "none":
                cols[1].warning(f"{fname}: several faces; pick one or it will not be saved.")
                st.image([fc.crop for fc in faces], caption=labels, width=96)
                continue
            choice = labels.index(picked)
        face = faces[choice]
        cols[0].image(face.crop, caption=fname, width=128)
        plans.append((data, fname, face))
    if st.button(f"Save {len(plans)} photo(s)", disabled=not (plans and valid)):
        saved = 0
        for data, fname, face in plans:
            try:
                rec.enroll(name, data, source=fname, face=face)
                saved += 1
            except FaceRecError as exc:
                st.error(f"{fname}: {exc}")
        if saved:
            st.success(f"Saved {saved} photo(s) of {name}.")


def page_people(rec: FaceRecognizer) -> None:
    st.header("People")
    people = rec.gallery.people()
    if not people:
        st.info("Nobody is enrolled yet: use the Enrol page.")
        return
    for person in people:
        photos = rec.gallery.photos(person.name)
        with st.expander(f"{person.name} ({person.photos} photo(s))"):
            thumbs = [(thumbnail(p.path), p.path.name) for p in photos]
            readable = [(t, n) for t, n in thumbs if t is not None]
            if readable:
                st.image([t for t, _ in readable], caption=[n for _, n in readable])
            for _, n in (x for x in thumbs if x[0] is None):
                st.warning(f"{n}: unreadable photo")
            to_remove = st.selectbox("Remove a photo", ["-"] + [p.path.name for p in photos], key=f"rm_{person.name}")
            if to_remove != "-" and st.button("Remove this photo", key=f"rmb_{person.name}"):
                rec.gallery.remove_photo(person.name, to_remove)
                st.rerun()
            new = st.text_input("Rename to", key=f"rn_{person.name}")
            if new and st.button("Rename", key=f"rnb_{person.name}"):
                rec.gallery.rename_person(person.name, new)
                st.rerun()
            sure = st.checkbox(f"Yes, forget {person.name} (photos and vectors)", key=f"fg_{person.name}")
            if st.button("Forget this person", key=f"fgb_{person.name}", disabled=not sure):
                rec.gallery.remove_person(person.name)
                st.rerun()


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
    def shown(path: Path) -> str:
        return str(path.relative_to(shown_root)) if shown_root in path.parents else str(path)

    bar = st.progress(0.0, text=f"0 / {len(paths)} photos")
    results, rows = [], []
    cache = tag_cache(rec.settings.cache_dir / "tags.sqlite")
    for i, res in enumerate(identify_files(rec, paths, cache=cache), start=1):
        results.append(res)
        if res.error or not res.faces:
            rows.append({"face": None, "photo": shown(res.path), "name": "", "score": None, "box": "",
                         "note": res.error or "no face"})
        for (face, match), thumb in zip(res.faces, face_thumbnails(res)):
            rows.append({"face": thumb, "photo": shown(res.path), "name": match.name, "score": round(match.score, 3),
                         "box": " ".join(map(str, face.int_box())), "note": ""})
        bar.progress(i / len(paths), text=f"{i} / {len(paths)} photos")
    results = [dataclasses.replace(r, path=Path(shown(r.path))) for r in results]  # report paths as shown
    st.session_state["tag_results"] = (rows, csv_report(results), json_report(results))


def page_tag(rec: FaceRecognizer) -> None:
    st.header("Tag photos")
    st.caption("Name every face in many photos at once; download the results as CSV or JSON.")
    source = st.radio("Photos from", ["a folder on this computer", "an uploaded zip"], horizontal=True)
    if source == "a folder on this computer":
        folder = st.text_input("Folder path", placeholder="/home/me/Pictures/party")
        if st.button("Tag photos", disabled=not folder):
            path = Path(folder).expanduser()
            if not path.is_dir():
                raise FaceRecError(f"{folder}: no such folder")
            run_tagger(rec, list(find_photos([path])), path)
    else:
        upload = st.file_uploader("Zip of photos", type=["zip"], key="tag_zip")
        if upload is not None and st.button("Tag photos"):
            data, _ = read_upload(upload, MAX_ZIP_UPLOAD_BYTES)
            with tempfile.TemporaryDirectory(prefix="facerec-tag-") as tmp:
                paths = extract_zip(data, Path(tmp))
                run_tagger(rec, paths, Path(tmp).resolve())
    if "tag_results" not in st.session_state:
        return
    rows, csv_text, json_text = st.session_state["tag_results"]
    named = sum(1 for r in rows if r["name"] and r["name"] != "unknown")
    st.write(f"{sum(1 for r in rows if r['name'])} face(s), {named} named.")
    st.dataframe(rows, use_container_width=True, column_config={
        "face": st.column_config.ImageColumn("face"), "score": st.column_config.NumberColumn(format="%.3f")})
    left, right = st.columns(2)
    left.download_button("Download CSV", csv_text, file_name="facerec_tags.csv", mime="text/csv", on_click="ignore")
    right.download_button("Download JSON", json_text, file_name="facerec_tags.json", mime="application/json",
                           on_click="ignore")


def page_settings(settings: Settings) -> None:
    st.header("Settings")
    names = list(BACKBONES)
    st.caption(f"Saved next to the gallery ({settings.gallery / SETTINGS_FILE}); they apply to every page and session.")
    backbone = st.selectbox("Base network", names, index=names.index(settings.backbone))
    st.caption("Which frozen network turns faces into identity vectors; switching re-embeds the enrolled photos "
               f"once. {BACKBONES[backbone].description}")
    detector = st.selectbox("Detector", ["mtcnn", "opencv"], index=["mtcnn", "opencv"].index(settings.detector))
    st.caption("What finds the faces: MTCNN also finds eyes, nose and mouth for alignment (more accurate); "
               "OpenCV's Haar cascade is faster but misses more faces and does not align them.")
    default = calibrated_threshold(settings.replace(backbone=backbone))
    current = default if settings.threshold is None else settings.threshold
    threshold = st.slider("Unknown threshold", 0.0, 1.0, float(current), 0.01)
    st.caption(f"Faces whose best match scores below this are called unknown: higher means fewer wrong names but "
               f"more unknowns (calibrated value for this base: {default:.2f}).")
    if st.button("Save settings"):
        save_choices(settings, backbone=backbone, detector=detector, threshold=threshold)
        st.session_state["settings_saved"] = True
        st.rerun()
    if st.session_state.pop("settings_saved", False):
        st.success("Saved; they apply to every page now.")


PAGES = {"Live": page_live, "Identify": page_identify, "Enrol": page_enroll, "People": page_people,
         "Tag photos": page_tag, "Settings": None}


def main() -> None:
    st.set_page_config(page_title="facerec", layout="wide")
    try:
        settings = base_settings()
        page = st.sidebar.radio("Page", list(PAGES))
        st.sidebar.caption(f"Gallery: {settings.gallery} · base: {settings.backbone}")
        if page == "Settings":
            page_settings(settings)
        else:
            PAGES[page](recognizer(settings))
    except FaceRecError as exc:
        st.error(str(exc))
    except Exception as exc:  # never a traceback in the browser (Streamlit's own rerun/stop are BaseException)
        st.error(f"Something went wrong: {type(exc).__name__}: {exc}")


main()
