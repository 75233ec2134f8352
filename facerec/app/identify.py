"""The Identify page: one uploaded photo or camera snapshot, every face boxed with its verdict."""

from __future__ import annotations

import streamlit as st

from facerec import FaceRecognizer
from facerec.app.common import (
    IMAGE_TYPES,
    PAGE_OBJECTS,
    PHOTO_HELP,
    prepare_gallery,
    read_upload,
)
from facerec.detect import rescale_face
from facerec.draw import draw_labels
from facerec.quality import face_quality
from facerec.verdict import verdict


def left_to_right(results: list) -> list:
    """``(face, match)`` pairs numbered the way a photo is read: left to right (then top to bottom)."""
    return sorted(results, key=lambda fm: (fm[0].box[0], fm[0].box[1]))


def identify_picture(rec: FaceRecognizer, source) -> None:
    """Box and name every face of one uploaded or camera picture: a verdict per face
    (match, possible match, unknown) drawn inside the photo, the similarity in small type."""
    if source is None:
        return
    data, name = read_upload(source)
    photo = rec.read(data, name)
    with st.spinner("Finding faces..."):
        results = left_to_right(rec.identify_photo(photo))
    threshold = rec.threshold
    verdicts = [verdict(m, threshold) for _, m in results]
    items = [(rescale_face(f, 1.0 / photo.scale).box, f"{i}. {v.label}", True if v.sure else (None if v.known else False))
             for i, ((f, _), v) in enumerate(zip(results, verdicts), start=1)]
    st.image(draw_labels(photo.pixels, items), caption=f"{len(results)} face(s)")
    for i, ((face, _), v) in enumerate(zip(results, verdicts), start=1):
        picture, text = st.columns([1, 9], vertical_alignment="center")
        if face.crop is not None:  # the face itself, so that "3. unknown" can be told apart in a group
            picture.image(face.crop, width=64)
        text.markdown(f"**{i}. {v.headline}**")
        quality = face_quality(face)
        why = f" A poor face for recognition ({quality.describe()}): that may be why." if quality.poor and not v.sure else ""
        text.caption(v.detail + why)
    if not results:
        st.info("No face found in this photo.")


def page_identify(rec: FaceRecognizer) -> None:
    st.header("Identify")
    st.caption("Upload a photo or take a snapshot: every face is boxed and named, with how sure the match is.")
    if not rec.gallery.people():
        st.info("Nobody is enrolled yet, so nobody can be named: enrol people on the Enrol page first "
                "(or name the faces of a photo folder on the Library page).")
        if "enrol" in PAGE_OBJECTS:
            st.page_link(PAGE_OBJECTS["enrol"], label="Enrol someone", icon=":material/person_add:")
        return
    source = st.radio("Photo from", ["an uploaded photo", "the camera"], horizontal=True, key="identify_source")
    if source == "the camera":
        picture = st.camera_input("Camera snapshot", key="identify_camera")
    else:
        picture = st.file_uploader("Photo", type=IMAGE_TYPES, key="identify_upload", help=PHOTO_HELP)
    if picture is not None:
        prepare_gallery(rec)
    identify_picture(rec, picture)
