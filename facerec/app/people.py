"""The People page (home): everyone enrolled as a round face, search by name; a person's page
(``/?person=NAME``) with their photos, remove a photo, rename, forget."""

from __future__ import annotations

import base64
import html
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

import streamlit as st

from facerec import FaceRecError, FaceRecognizer, photonames, thumbs
from facerec.errors import ForgetIncompleteError, PersonExistsError
from facerec.people import People
from facerec.app.common import PAGE_OBJECTS
from facerec.app.signin import session_query
from facerec.enrolcheck import name_key

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


def people_grid_html(cards: list[tuple[str, int, Path | None]], query: str = "") -> str:
    """The People grid as one block of HTML: for each ``(name, photos, face picture)`` a round
    face (inlined as a data URI: one message instead of a request per face) over the name,
    linking to ``?person=<name>``, the person's page (``query``: more parameters, the sign-in's). Names are escaped."""
    items = []
    for name, count, picture in cards:
        face = '<span class="fr-none"></span>'
        if picture is not None:
            face = f'<img alt="" src="data:image/jpeg;base64,{base64.b64encode(picture.read_bytes()).decode()}">'
        items.append(f'<a class="fr-person" href="?person={urllib.parse.quote(name, safe="")}{html.escape(query)}" target="_self">'
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
    unfinished_forgets(rec)
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
    st.markdown(people_grid_html(cards, session_query()), unsafe_allow_html=True)


def person_detail(rec: FaceRecognizer, name: str) -> None:
    """One person: every photo with the enrolled face boxed, remove (confirmed), rename, forget (confirmed)."""
    gallery, cache = rec.gallery, rec.settings.cache_dir
    if st.button("← Everyone", key="people_back"):
        st.query_params.pop("person", None)
        st.rerun()
    photos = gallery.photos(name)
    names = photonames.names(gallery.root)
    st.subheader(f"{name} ({len(photos)} photo(s))")
    try:
        odd = People(rec).outliers(name)
    except FaceRecError:  # no model to compare with (weights missing): the page works without the flags
        odd = {}
    if odd:
        st.warning(f"{len(odd)} photo(s) marked ⚠ do not look like {name}'s other photos: if one shows someone "
                   "else, remove it or move it to the right person (Remove…).")
    pending = st.session_state.get("people_remove")
    for start in range(0, len(photos), 4):
        cols = st.columns(4)
        for col, r in zip(cols, photos[start:start + 4]):
            label = person_label(r, names)
            caption = f"⚠ {label}: unlike the others ({odd[r.path.name]:.2f})" if r.path.name in odd else label
            with col:
                picture = thumbs.photo_thumb(r.path, r.sha, r.box, cache)
                if picture is None:
                    st.warning(f"{label}: unreadable photo")
                else:
                    st.image(str(picture), caption=caption)
                if st.button("Remove…", key=f"rm_{r.path.name}", disabled=pending == r.path.name):
                    st.session_state["people_remove"] = r.path.name
                    st.rerun()
                if r.path.name == pending:  # asked right under the photo, not below the whole grid
                    remove_confirmation(rec, name, r, label)
    st.divider()
    rename_form(rec, name)
    forget_form(rec, name)


def remove_confirmation(rec: FaceRecognizer, name: str, target, label: str) -> None:
    """Under the photo whose Remove… was pressed: remove it (confirmed), move it to someone else, or cancel."""
    gallery = rec.gallery
    with st.container():
        st.warning(f"Remove {label} from {name}? The photo and its face vectors are deleted.")
        yes, no = st.columns(2)
        if yes.button("Yes, remove it", key="rm_yes", type="primary"):
            st.session_state.pop("people_remove", None)
            People(rec).remove_photo(name, target.path.name)
            people_flash("success", f"Removed {label} from {name}.")
            st.rerun()
        move_to = st.selectbox(f"Or move {label} to", [""] + [p.name for p in gallery.people() if p.name != name],
                               key=f"mv_{target.path.name}", help="A photo enrolled for the wrong person")
        if move_to and st.button(f"Move to {move_to}", key="mv_yes"):
            st.session_state.pop("people_remove", None)
            People(rec).move_photo(name, target.path.name, move_to)
            people_flash("success", f"Moved {label} from {name} to {move_to}.")
            st.rerun()
        if no.button("Cancel", key="rm_no"):
            st.session_state.pop("people_remove", None)
            st.rerun()


def rename_form(rec: FaceRecognizer, name: str) -> None:
    """Rename; to an enrolled name (or a look-alike of one) it offers to merge the two."""
    new = st.text_input("Rename to", key=f"rn_{name}")
    merge = st.session_state.get("people_merge") == (name, new)
    if merge:
        st.warning(f"{new} is already enrolled. Merge {name} into them? All of {name}'s photos join theirs.")
    label = "Merge" if merge else "Rename"
    if st.button(label, key=f"rnb_{name}", disabled=not new):
        try:
            new = People(rec).rename(name, new, merge=merge)
        except PersonExistsError:
            st.session_state["people_merge"] = (name, new)
            st.rerun()
        except FaceRecError as exc:
            st.error(f"Not renamed: {exc}")
        else:
            st.session_state.pop("people_merge", None)
            st.query_params["person"] = new
            people_flash("success", f"Merged {name} into {new}." if merge else f"Renamed {name} to {new}.")
            st.rerun()


def forget_form(rec: FaceRecognizer, name: str) -> None:
    """Forget, after a tick; a forget that could not remove everything says what is left."""
    sure = st.checkbox(f"Yes, forget {name} (photos, vectors and who-was-here history)", key=f"fg_{name}")
    if st.button("Forget this person", key=f"fgb_{name}", disabled=not sure):
        forget_now(rec, name)


def forget_now(rec: FaceRecognizer, name: str) -> None:
    try:
        report = People(rec).forget(name)
    except ForgetIncompleteError as exc:
        st.query_params.pop("person", None)
        people_flash("error", str(exc))
    except FaceRecError as exc:
        st.error(f"Not forgotten: {exc}")
        return
    else:
        st.query_params.pop("person", None)
        people_flash("success", f"Forgot {name}: {report.photos} photo(s) and everything learnt from them removed.")
    st.rerun()


def unfinished_forgets(rec: FaceRecognizer) -> None:
    """People whose forget failed or was interrupted, each with a button to finish it."""
    for name in People(rec).unfinished():
        cols = st.columns([3, 1])
        cols[0].warning(f"{name} is half forgotten: a forget failed or was interrupted, and something of them "
                        "may be left.")
        if cols[1].button("Finish forgetting", key=f"finish_{name}"):
            forget_now(rec, name)
