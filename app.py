"""facerec in the browser: identify, enrol, manage people, settings.

Run with ``streamlit run app.py``. A thin layer over the facerec library: one
cached recogniser per settings (``st.cache_resource``), shared by all pages
and sessions; every FaceRecError reaches the user as ``st.error``.
"""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from facerec import BACKBONES, FaceRecError, FaceRecognizer, Settings, decode_image, load_image
from facerec.align import crop_box
from facerec.draw import draw_matches
from facerec.gallery import content_hash

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
SETTINGS_FILE = ".facerec/app_settings.json"


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
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(choices))
    tmp.replace(path)


@st.cache_resource(show_spinner="Loading face models...")
def recognizer(settings: Settings) -> FaceRecognizer:
    """One recogniser per settings for the whole server process (thread-safe)."""
    return FaceRecognizer(settings)


def read_upload(upload) -> tuple[bytes, str]:
    """Bytes and name of an uploaded file, refusing oversize ones."""
    data = upload.getvalue()
    if len(data) > MAX_UPLOAD_BYTES:
        raise FaceRecError(f"{upload.name}: larger than {MAX_UPLOAD_BYTES // 2**20} MB")
    return data, upload.name


def thumbnail(path: Path, size: int = 96):
    """A square RGB thumbnail of a photo, or ``None`` when it cannot be read."""
    try:
        image = load_image(path)
    except FaceRecError:
        return None
    h, w = image.shape[:2]
    return crop_box(image, (0, 0, w, h), size, margin=0.0)


def page_identify(rec: FaceRecognizer) -> None:
    st.header("Identify")
    st.caption("Take a snapshot or upload a photo; every face is boxed with its name and score.")
    shot = st.camera_input("Camera snapshot")
    upload = st.file_uploader("...or upload a photo", type=["jpg", "jpeg", "png", "webp", "bmp"], key="identify_upload")
    source = shot or upload
    if source is None:
        return
    data, name = read_upload(source)
    image = decode_image(data, name)
    with st.spinner("Finding faces..."):
        results = rec.identify(image)
    st.image(draw_matches(image, results), caption=f"{len(results)} face(s)")
    for face, match in results:
        st.write(f"**{match.name}**, score {match.score:.2f}, box {list(face.int_box())}")
    if not results:
        st.info("No face found in this photo.")


def page_enroll(rec: FaceRecognizer) -> None:
    st.header("Enrol")
    name = st.text_input("Name", placeholder="e.g. Zoë Martin")
    uploads = st.file_uploader("Photos of this person", type=["jpg", "jpeg", "png", "webp", "bmp"],
                               accept_multiple_files=True, key="enroll_upload")
    shot = st.camera_input("...or take a photo", key="enroll_camera")
    files = list(uploads or []) + ([shot] if shot else [])
    if not files:
        return
    plans = []
    for i, f in enumerate(files):
        data, fname = read_upload(f)
        image = decode_image(data, fname)
        faces = rec.detector.detect(image)
        cols = st.columns([1, 3])
        if not faces:
            cols[1].warning(f"{fname}: no face found; it will not be saved.")
            continue
        if name and name.strip() in rec.gallery and rec.gallery.has_photo(name, content_hash(data)):
            cols[1].info(f"{fname}: already enrolled for {name}.")
            continue
        choice = 0
        if len(faces) > 1:
            labels = [f"face {j + 1}" for j in range(len(faces))]
            picked = cols[1].radio(f"{fname}: {len(faces)} faces; which one is {name or 'this person'}?",
                                   ["none"] + labels, key=f"pick_{i}_{fname}", horizontal=True)
            if picked == "none":
                cols[1].warning(f"{fname}: several faces; pick one or it will not be saved.")
                st.image([crop_box(image, fc.box, 96) for fc in faces], caption=labels)
                continue
            choice = labels.index(picked)
        face = faces[choice]
        cols[0].image(crop_box(image, face.box, 128), caption=fname)
        plans.append((data, fname, face))
    if st.button(f"Save {len(plans)} photo(s)", disabled=not (plans and name)):
        saved = 0
        for data, fname, face in plans:
            rec.enroll(name, data, source=fname, face=face)
            saved += 1
        st.success(f"Saved {saved} photo(s) of {name.strip()}.")


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


def page_settings(settings: Settings) -> None:
    st.header("Settings")
    names = list(BACKBONES)
    backbone = st.selectbox("Base network", names, index=names.index(settings.backbone),
                            help="Which frozen network turns faces into vectors; switching re-embeds the gallery once.")
    st.caption(BACKBONES[backbone].description)
    detector = st.selectbox("Detector", ["mtcnn", "opencv"], index=["mtcnn", "opencv"].index(settings.detector),
                            help="MTCNN finds landmarks for alignment (more accurate); OpenCV's Haar cascade is faster.")
    default = BACKBONES[backbone].threshold
    threshold = st.slider("Unknown threshold", 0.0, 1.0, float(settings.threshold or default), 0.01,
                          help="Faces scoring below this are called unknown: higher = fewer wrong names, more unknowns.")
    if st.button("Save settings"):
        save_choices(settings, backbone=backbone, detector=detector, threshold=threshold)
        st.success("Saved; they apply to every page now.")
        st.rerun()


PAGES = {"Identify": page_identify, "Enrol": page_enroll, "People": page_people, "Settings": None}


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


main()
