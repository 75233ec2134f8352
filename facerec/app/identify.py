"""The Identify page: one uploaded photo or camera snapshot, every face boxed with its verdict."""

from __future__ import annotations

import streamlit as st

from facerec import FaceRecognizer
from facerec.app.common import (
    IMAGE_TYPES,
    MAX_UPLOAD_MB,
    PHOTO_HELP,
    prepare_gallery,
    read_upload,
)
from facerec.detect import rescale_face
from facerec.draw import draw_labels
from facerec.quality import face_quality
from facerec.verdict import verdict


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
