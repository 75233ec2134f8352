"""The Enrol page: a name, photos (uploaded or from the camera), every photo checked before saving."""

from __future__ import annotations

import streamlit as st

from facerec import FaceRecError, FaceRecognizer
from facerec.app.common import (
    IMAGE_TYPES,
    PHOTO_HELP,
    gallery_matcher,
    prepare_gallery,
    read_upload,
)
from facerec.enrolcheck import similar_names
from facerec.gallery import validate_name
from facerec.people import People, PhotoCheck
from facerec.storage import content_hash


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


def enrol_name(people: dict[str, int], gen: int) -> tuple[str | None, bool]:
    """The name typed, validated, and whether photos can be saved under it: a name that
    differs from an enrolled one only in case, accents, spacing or look-alike letters is
    that person (``(existing name, True)`` once the user says so), never a second one."""
    typed = st.text_input("Name", placeholder="e.g. Zoë Martin", key=f"enrol_name_{gen}")
    if not typed:
        st.caption("Type the person's name to save their photos.")
        return None, False
    try:
        name = validate_name(typed)
    except FaceRecError as exc:
        st.error(f"This name cannot be used: {exc}".replace("\\", "\\\\"))  # markdown would eat a backslash
        return None, False
    similar = [name] if name in people and typed != name else similar_names(name, people)
    if similar:
        other = similar[0]
        choice = st.radio(f"{other} is already enrolled ({people[other]} photo(s)). Is this the same person?",
                          [f"Yes, add these photos to {other}", f"No: I will type a name that cannot be "
                                                                f"mistaken for {other}"],
                          key=f"enrol_similar_{gen}")
        if not choice.startswith("Yes"):
            st.warning(f"Choose another name: {name} would look the same as {other} everywhere.")
            return name, False
        name = other
    if name in people:
        st.caption(f"Adding photos to {name}, who has {people[name]} photo(s).")
    return name, True


def enrol_files(gen: int) -> list:
    """Uploaded photos, plus a camera shot when the camera is switched on."""
    uploads = st.file_uploader("Photos of this person", type=IMAGE_TYPES, accept_multiple_files=True,
                               key=f"enroll_upload_{gen}", help=PHOTO_HELP)
    # no max_upload_size: the browser would refuse a bigger photo with only a red icon (the reason in a
    # tooltip); read_upload refuses it here, with the reason on the page
    shot = None
    if st.toggle("Take a photo with the camera", key=f"enrol_camera_on_{gen}"):
        shot = st.camera_input("Camera", key=f"enroll_camera_{gen}")
    return list(uploads or []) + ([shot] if shot else [])


def show_check(check: PhotoCheck, data: bytes, name: str | None, gen: int) -> tuple | None:
    """One photo's row: what was found, what to confirm; returns ``(data, source, face)`` to save."""
    cols = st.columns([1, 3])
    who = name or "this person"
    if len(check.faces) > 1:
        labels = [f"face {j + 1}" for j in range(len(check.faces))]
        cols[1].radio(f"{check.source}: {len(check.faces)} faces; which one is {who}?", ["none"] + labels,
                      key=f"pick_{gen}_{check.sha[:16]}", horizontal=True)
    if check.kind == "pick":
        cols[1].warning(f"{check.source}: several faces; pick one or it will not be saved.")
        cols[0].image([fc.crop for fc in check.faces], caption=[f"face {j + 1}" for j in range(len(check.faces))],
                      width=72)
        return None
    if check.kind == "enrolled":
        cols[1].info(f"{check.source}: {check.skip}.")
        return None
    if check.kind in ("duplicate", "no-face"):
        cols[1].warning(f"{check.source}: {check.skip}; it will not be saved." if check.kind == "no-face"
                        else f"{check.source}: {check.skip}.")
        return None
    if check.face is None:
        cols[1].error(f"{check.skip}; it will not be saved.")
        return None
    cols[0].image(check.face.crop, caption=check.source, width=128)
    if check.concerns:
        cols[1].warning(f"{check.source}: " + " ".join(check.concerns))
        choice = check.faces.index(check.face) if check.face in check.faces else 0
        if not cols[1].checkbox(f"Yes, this is {who}: save it anyway", key=f"confirm_{gen}_{check.sha[:16]}_{choice}"):
            return None
    else:
        cols[1].caption(f"{check.source}: ready.")
    return data, check.source, check.face


def save_photos(rec: FaceRecognizer, name: str, plans: list[tuple], gen: int) -> None:
    """Save the checked (and confirmed) photos; then a fresh, empty form."""
    saved, done = 0, []
    for data, fname, face in plans:
        try:
            People(rec).enroll(name, data, source=fname, face=face, confirm=True)  # confirmed above
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


def save_blocked(ready: int, name: str | None, valid: bool, waiting: int = 0) -> str | None:
    """Why Save is greyed out, in one sentence shown beside it (``None``: it is not).

    Args:
        ready: photos that would be saved.
        name: the name typed (``None``: none, or one that cannot be used).
        valid: photos can be saved under it.
        waiting: photos waiting for a confirmation.
    """
    if name is None:
        return "type the person's name above (a name that can be used) first."
    if not valid:
        return "choose a name that cannot be mistaken for the enrolled person above."
    if not ready:
        if waiting:
            return "tick “save it anyway” on the photos above that wait for your confirmation."
        return "none of these photos can be saved (see the reason under each)."
    return None


def page_enroll(rec: FaceRecognizer) -> None:
    st.header("Enrol")
    gen = st.session_state.get("enrol_gen", 0)  # new widgets (an empty uploader) after each save
    for kind, text in st.session_state.pop("enrol_done", []):
        getattr(st, kind)(text)
    people = {p.name: p.photos for p in rec.gallery.people()}
    name, valid = enrol_name(people, gen)
    files = enrol_files(gen)
    if not files:
        return
    if people:
        prepare_gallery(rec)
        if gallery_matcher(rec) is None:
            st.caption("The enrolled people cannot be compared with these photos right now (the gallery is being "
                       "prepared); check the names with care.")
    photos, unreadable = [], []
    for f in files:
        try:
            photos.append(read_upload(f))
        except FaceRecError as exc:
            unreadable.append(str(exc))
    for text in unreadable:
        st.error(f"{text}; it will not be saved.")
    picks = {}
    for data, _ in photos:
        picked = st.session_state.get(f"pick_{gen}_{content_hash(data)[:16]}")
        if picked and picked != "none":
            picks[content_hash(data)] = int(picked.split()[-1]) - 1
    checks = People(rec).check(name if valid else None, photos, faces=lambda d, s, sha: enrol_faces(rec, d, sha, s),
                               picks=picks)
    by_sha = {content_hash(d): d for d, _ in photos}
    plans = [p for c in checks if (p := show_check(c, by_sha[c.sha], name, gen)) is not None]
    waiting = sum(c.kind == "confirm" for c in checks) - sum(1 for c in checks if c.kind == "confirm"
                                                             and any(p[1] == c.source for p in plans))
    if waiting:
        st.info(f"{waiting} photo(s) wait for your confirmation above; unconfirmed photos are not saved.")
    why = save_blocked(len(plans), name, valid, waiting)
    if st.button(f"Save {len(plans)} photo(s)", disabled=why is not None, type="primary", help=why):
        save_photos(rec, name, plans, gen)
    if why is not None:
        st.caption(f"Save is off: {why}")
