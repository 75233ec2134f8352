"""The Library page: folders of photos scanned in the background, groups of unnamed faces to name
once, a person's faces to correct and "Is this NAME?" suggestions, and photos by people.

Everything it decides lives in :class:`facerec.library.Library`; what it draws is built by plain
functions (:func:`face_grid_html`, :func:`scan_status`, :func:`labelled_photo`) tested without
Streamlit. The scan runs in a :class:`facerec.library.BackgroundScan` thread shared by every
session of the server (it survives page reloads; a restarted app resumes from what was stored),
and never touches Streamlit: the page polls it.
"""

from __future__ import annotations

import base64
import hashlib
import html
from pathlib import Path

import numpy as np
import streamlit as st

from facerec import FaceRecError, FaceRecognizer, auth, thumbs
from facerec.app.common import is_served_remotely
from facerec.errors import ConfirmationNeededError
from facerec.images import load_photo
from facerec.library import BackgroundScan, Library, LibraryFace, Suggestion
from facerec.verdict import POSSIBLE

GROUPS_SHOWN = 12  # the biggest groups at first ("Show more groups" adds as many); naming them brings up the next
FACES_SHOWN = 24  # per group or person
PHOTOS_SHOWN = 60
GRID_CSS = """<style>
.fr-faces {display: flex; flex-wrap: wrap; gap: 4px;}
.fr-faces img {width: 72px; height: 72px; border-radius: 6px; object-fit: cover;}
</style>"""
VIEWS = ["Unnamed groups", "People", "Photos by people"]  # a radio, not tabs: it keeps its choice on reruns
SCANS: dict[str, BackgroundScan] = {}  # gallery -> its scan, shared by every session of this process


def face_grid_html(pictures: list[Path | None], more: int = 0) -> str:
    """A row of face pictures as one block of HTML (inlined JPEGs: one message, not a request each);
    ``more`` faces not shown are counted at the end."""
    tiles = [f'<img alt="face" src="data:image/jpeg;base64,{base64.b64encode(p.read_bytes()).decode()}">'
             for p in pictures if p is not None]
    tail = f"<span>+{more} more</span>" if more > 0 else ""
    return GRID_CSS + f'<div class="fr-faces">{"".join(tiles)}{tail}</div>'


def scan_status(scan: BackgroundScan | None) -> str | None:
    """One line on the library's scan (running or just finished), or ``None``."""
    if scan is None:
        return None
    if scan.running:
        return (f"Scanning the library: {scan.done} of {scan.total} photos" if scan.total
                else "Scanning the library: looking for photos...")
    if scan.error:
        return f"The library scan stopped: {scan.error}"
    r = scan.report
    if r is None:
        return None
    failed = f"; {len(r.failed)} could not be read" if r.failed else ""
    return (f"Library scanned: {r.photos} photo(s), {r.processed} tagged, {r.cached} from the cache, "
            f"{r.unchanged} unchanged, {r.removed} gone{failed}.")


def labelled_photo(library: Library, path: Path, longest: int = 1024) -> np.ndarray:
    """The photo (reduced to ``longest`` px) with every face boxed and numbered left to right:
    "1. Ann" (named), "2. Ann?" (a possible match), "3. unknown"."""
    from facerec.draw import draw_labels

    photo = load_photo(path, longest)
    s = photo.scale
    items = []
    for i, f in enumerate(library.photo_faces(path), start=1):
        text = f.name if f.named else (f"{f.guess}?" if f.guess != "unknown" else "unknown")
        items.append((tuple(v * s for v in f.box), f"{i}. {text}", True if f.named else (None if f.guess != "unknown" else False)))
    return draw_labels(photo.pixels, items)


def face_pictures(rec: FaceRecognizer, faces: list[LibraryFace]) -> list[Path | None]:
    """Cached face pictures (``thumbs``) of library faces."""
    return [thumbs.face_thumb(f.path, f.sha, f.box, rec.settings.cache_dir, size=96) for f in faces]


def _scan(rec: FaceRecognizer, roots: list[Path]) -> BackgroundScan:
    from facerec.app.tag import tag_cache
    from facerec.storage import tag_cache_path

    key = str(rec.settings.gallery)
    scan = SCANS.get(key)
    if scan is None:
        scan = SCANS[key] = BackgroundScan(lambda: Library(rec), tag_cache(tag_cache_path(rec.settings.cache_dir)),
                                           roots)
    scan.roots = roots
    return scan


def sidebar_scan_status(settings) -> None:
    """The library scan's progress on every page (the sidebar), while it runs."""
    scan = SCANS.get(str(settings.gallery))
    if scan is not None and scan.running:
        st.sidebar.caption(scan_status(scan))


def _flash(kind: str, text: str) -> None:
    st.session_state["library_flash"] = (kind, text)


def page_library(rec: FaceRecognizer) -> None:
    st.header("Library")
    st.caption("Add photo folders; facerec finds every face, groups the faces nobody is enrolled as, and you "
               "name each group once. Every photo of that person is then tagged.")
    flash = st.session_state.pop("library_flash", None)
    if flash:
        getattr(st, flash[0])(flash[1])
    library = Library(rec)
    try:
        roots = auth.photo_roots(rec.settings.photo_roots, remote=is_served_remotely())
        scan = _scan(rec, roots)
        folders_section(library, roots, scan)
        if not library.folders():
            return
        view = st.radio("Show", VIEWS, horizontal=True, key="library_view", label_visibility="collapsed")
        if view == "People":
            person_section(rec, library)
        elif view == "Photos by people":
            photos_section(library)
        else:
            groups_section(rec, library)
    finally:
        library.close()


def folders_section(library: Library, roots: list[Path], scan: BackgroundScan) -> None:
    if not roots:
        st.info("Reading folders on the server is off while the app is served to other machines; the admin "
                "can allow folders with FACEREC_PHOTO_ROOTS (separated by ':') and restart the app.")
        return
    st.caption("Folders under: " + ", ".join(map(str, roots)) + " (more with FACEREC_PHOTO_ROOTS)")
    folders = library.folders()
    if folders:
        st.write("In the library: " + ", ".join(f"`{f}`" for f in folders))
    left, right = st.columns([3, 1])
    folder = left.text_input("Folder to add", key="library_folder", placeholder=str(roots[0] / "Pictures"))
    right.write("")
    if right.button("Add folder", disabled=not folder, key="library_add"):
        try:
            path = library.add_folder(folder, roots)
        except FaceRecError as exc:
            st.error(str(exc))
        else:
            scan.start()
            _flash("success", f"Added {path}; scanning it now.")
            st.rerun()
    if folders and st.button("Rescan", key="library_rescan", disabled=scan.running,
                             help="Find new, changed and deleted photos; names and answers are kept."):
        scan.start()
        st.rerun()
    if folders:
        with st.expander("Import names from XMP (digiKam, Lightroom, Immich)"):
            st.caption("Faces already named in sidecars (PHOTO.jpg.xmp, PHOTO.xmp) or in the photos' own XMP are "
                       "enrolled; a region over no face is reported, not enrolled.")
            anyway = st.checkbox("Enrol despite the enrolment checks' concerns", key="library_xmp_yes")
            if st.button("Import names", key="library_xmp", disabled=scan.running):
                import_names(library, roots, anyway)
        with st.expander("Write names to XMP sidecars (for digiKam, Lightroom, Immich)"):
            write_sidecars_form(library, roots)
    if scan.running:
        scan_progress(scan)  # redrawn every second until the scan ends
    else:
        line = scan_status(scan)
        if line:
            (st.error if scan.error else st.caption)(line)


def xmp_summary(report) -> str:
    """One paragraph on an XMP import (:class:`facerec.xmpimport.ImportReport`)."""
    parts = [(f"{report.photos} photo(s) with named faces: {len(report.enrolled)} face(s) enrolled, "
              f"{len(report.already)} already enrolled.")]
    if report.no_face:
        parts.append("Over no face (not enrolled): " + ", ".join(f"{n} in {p.name}" for p, n in report.no_face) + ".")
    if report.to_confirm:
        parts.append("To confirm: " + "; ".join(f"{n} in {p.name}: {why}" for p, n, why in report.to_confirm))
    if report.failed:
        parts.append("Problems: " + "; ".join(f"{p.name}: {why}" for p, why in report.failed))
    return " ".join(parts)


def sidecar_summary(report) -> str:
    """One paragraph on :meth:`Library.write_sidecars`'s report."""
    parts = [f"{len(report.written)} sidecar(s) written", f"{report.nothing} photo(s) with no name to write"]
    text = ", ".join(parts) + "."
    if report.failed:
        text += " Left unchanged: " + "; ".join(f"{Path(p).name}: {why}" for p, why in report.failed)
    return text


def write_sidecars_form(library: Library, roots: list[Path]) -> None:
    st.caption("Names go into face regions next to each photo (the photos are never changed); regions and "
               "keywords other tools wrote are kept. Only sure matches and faces you named are written.")
    style = st.radio("Sidecar name", ["PHOTO.jpg.xmp (digiKam, darktable, Immich)", "PHOTO.xmp (Lightroom)"],
                     key="library_xmp_style")
    possible = st.checkbox("Also name possible matches (less sure)", key="library_xmp_possible")
    if st.button("Write sidecars", key="library_xmp_write"):
        with st.spinner("Writing sidecars..."):
            report = library.write_sidecars("stem" if style.startswith("PHOTO.xmp") else "ext",
                                            include_possible=possible, roots=roots)
        _flash("warning" if report.failed else "success", sidecar_summary(report))
        st.rerun()


def import_names(library: Library, roots: list[Path], confirm: bool) -> None:
    """Enrol the faces named in the XMP of the library's photos, then name them in the library."""
    with st.spinner("Reading XMP and enrolling named faces..."):
        report = library.import_xmp(roots, confirm=confirm)
    _flash("success" if report.complete else "warning", xmp_summary(report))
    st.rerun()


@st.fragment(run_every=1.0)
def scan_progress(scan: BackgroundScan) -> None:
    """The scan's progress, redrawn every second while it runs; the whole page reruns when it ends."""
    if scan.running:
        st.progress(scan.done / scan.total if scan.total else 0.0, text=scan_status(scan))
    else:
        st.rerun()


def groups_section(rec: FaceRecognizer, library: Library) -> None:
    left, right = st.columns([1, 1])
    smallest = left.number_input("Hide groups smaller than", min_value=1, max_value=50, value=1, step=1,
                                 key="library_min_group",
                                 help="Faces seen only once or twice are often people in the background.")
    hidden = right.toggle("Show hidden groups", key="library_hidden")
    groups = library.groups(min_size=int(smallest), hidden=hidden)
    if not groups:
        st.info("No hidden groups." if hidden else
                "No unnamed faces to name." if library.faces() else "No faces yet: add a folder above.")
        return
    shown = groups[:st.session_state.get("library_groups_shown", GROUPS_SHOWN)]
    st.caption(f"{len(groups)} {'hidden ' if hidden else ''}group(s) of unnamed faces, biggest first."
               + ("" if hidden else " Tick groups of one person and merge them; hide people in the background."))
    merge_bar(library, shown)
    people = [p.name for p in rec.gallery.people()]
    for n, group in enumerate(shown, start=1):
        with st.container(border=True):
            group_card(rec, library, n, group, people, hidden)
    if len(groups) > len(shown) and st.button(f"Show more groups ({len(groups) - len(shown)} more)",
                                              key="library_more"):
        st.session_state["library_groups_shown"] = len(shown) + GROUPS_SHOWN
        st.rerun()


def group_id(group) -> str:
    """A short widget key for a group, unique per group (its key names its first face: photo hash and box)."""
    return hashlib.sha1(group.key.encode()).hexdigest()[:16]


def merge_bar(library: Library, groups: list) -> None:
    """"Merge N groups" for the groups ticked on the page."""
    ticked = [g for g in groups if st.session_state.get(f"gpick_{group_id(g)}")]
    if len(ticked) < 2:
        return
    if st.button(f"Merge the {len(ticked)} ticked groups", key="library_merge", type="primary"):
        library.merge_groups(ticked)
        for g in ticked:
            st.session_state.pop(f"gpick_{group_id(g)}", None)
        _flash("success", f"Merged {len(ticked)} groups ({sum(map(len, ticked))} faces).")
        st.rerun()


def group_card(rec: FaceRecognizer, library: Library, n: int, group, people: list[str], hidden: bool) -> None:
    """One group: its faces, a name to give them (or a person to add them to), tick to merge, hide,
    and a closer look where single faces can be taken out."""
    key = group_id(group)
    head, tick, hide = st.columns([4, 1, 1])
    head.markdown(f"**Group {n}** · {len(group)} face(s)")
    tick.checkbox("Merge", key=f"gpick_{key}", help="Tick two or more groups of one person, then merge them.")
    if hide.button("Show" if hidden else "Hide", key=f"ghide_{key}",
                   help="Hidden groups (people in the background) stay out of this list."):
        library.hide(group.faces, hidden=not hidden)
        _flash("success", f"Group of {len(group)} face(s) {'shown again' if hidden else 'hidden'}.")
        st.rerun()
    faces = list(group.faces[:FACES_SHOWN])
    st.markdown(face_grid_html(face_pictures(rec, faces), len(group) - len(faces)), unsafe_allow_html=True)
    left, mid, right = st.columns([2, 1, 2])
    name = left.text_input("Who is this?", key=f"gname_{key}", placeholder="Name")
    confirm = st.session_state.get("library_confirm") == key
    if mid.button("Confirm name" if confirm else "Name them", key=f"gsave_{key}", disabled=not name.strip()):
        _name_group(library, group, name, confirm, key)
    if people:
        into = right.selectbox("Or add to", people, index=None, key=f"ginto_{key}", placeholder="a person")
        if into and right.button(f"Add to {into}", key=f"gadd_{key}"):
            _name_group(library, group, into, True, key)
    if confirm:
        st.warning(st.session_state.get("library_confirm_why", "") + " Press “Confirm name” to go on.")
    if len(group) < 2:
        return
    if st.session_state.get("library_review") != key:  # face by face only on demand: the page stays light
        if st.button("Someone else among them?", key=f"greview_{key}", help="Take single faces out of this group"):
            st.session_state["library_review"] = key
            st.rerun()
        return
    _face_buttons(rec, faces, "Not in this group", library.take_out, f"gout_{key}")
    if st.button("Done", key=f"gdone_{key}"):
        st.session_state.pop("library_review", None)
        st.rerun()


def _name_group(library: Library, group, name: str, confirm: bool, key: str) -> None:
    try:
        with st.spinner(f"Naming {len(group)} face(s)..."):
            result = library.name_group(group.faces, name, confirm=confirm)
    except ConfirmationNeededError as exc:
        st.session_state["library_confirm"] = key
        st.session_state["library_confirm_why"] = " ".join(exc.concerns)
        st.rerun()
    except FaceRecError as exc:
        st.error(str(exc))
        return
    st.session_state.pop("library_confirm", None)
    skipped = f"; {len(result.skipped)} skipped" if result.skipped else ""
    _flash("success", f"Named {len(result.enrolled) + len(result.duplicates)} face(s) {result.name}{skipped}.")
    st.rerun()


def suggestion_caption(s: Suggestion) -> str:
    """The similarity under a suggested face; one under the threshold (not a possible match) is
    marked "less likely": those were right 3 times in 648 (benchmarks/suggestions.py)."""
    return f"{s.score:.2f}" if s.face.kind == POSSIBLE else f"{s.score:.2f} · less likely"


def person_section(rec: FaceRecognizer, library: Library) -> None:
    counts = library.people_counts()
    enrolled = [p.name for p in rec.gallery.people()]
    names = list(counts) + [n for n in enrolled if n not in counts]
    if not names:
        st.info("Nobody is named yet: name a group first.")
        return
    st.caption(" · ".join(f"{n} ({counts.get(n, 0)} photo(s))" for n in names))
    who = st.selectbox("Person", names, key="library_person")
    faces = library.person_faces(who)
    st.markdown(f"**{who}: {len(faces)} face(s) in the library.** Take out any face that is not {who}.")
    _face_buttons(rec, faces[:FACES_SHOWN], f"Not {who}", lambda f: library.reject(f, who), "pnot")
    suggestions = library.suggestions(who)
    if suggestions:
        st.markdown(f"**Is this {who}?** Faces close to {who} but not sure matches.")
        for start in range(0, len(suggestions), 6):
            cols = st.columns(6)
            for col, s in zip(cols, suggestions[start:start + 6]):
                with col:
                    picture = face_pictures(rec, [s.face])[0]
                    if picture is not None:
                        st.image(str(picture), caption=suggestion_caption(s))
                    yes, no = st.columns(2)
                    if yes.button("Yes", key=f"syes_{s.face.key}"):
                        why = library.confirm(s.face, who)
                        _flash("success" if why is None else "info",
                               f"Named {who}." + (f" Not added to the enrolment: {why}" if why else ""))
                        st.rerun()
                    if no.button("No", key=f"sno_{s.face.key}"):
                        library.reject(s.face, who)
                        _flash("success", f"Remembered: not {who}.")
                        st.rerun()


def _face_buttons(rec: FaceRecognizer, faces: list[LibraryFace], label: str, action, prefix: str) -> None:
    for start in range(0, len(faces), 6):
        cols = st.columns(6)
        for col, f in zip(cols, faces[start:start + 6]):
            with col:
                picture = face_pictures(rec, [f])[0]
                if picture is not None:
                    st.image(str(picture), caption=f.path.name)
                if st.button(label, key=f"{prefix}_{f.key}"):
                    action(f)
                    _flash("success", f"Remembered: {label.lower()} ({f.path.name}).")
                    st.rerun()


def photos_section(library: Library) -> None:
    counts = library.people_counts()
    if not counts:
        st.info("Nobody is named in the library yet.")
        return
    chosen = st.multiselect("Photos with", list(counts), key="library_with", placeholder="Choose people")
    alone = st.checkbox("Only them (nobody else named)", key="library_alone")
    if not chosen:
        return
    paths = library.photos_with(chosen, alone=alone)
    st.caption(f"{len(paths)} photo(s) with {' and '.join(chosen)}" + (" only" if alone else ""))
    opened = st.session_state.get("library_open")
    if opened is not None and Path(opened) in paths:
        st.image(labelled_photo(library, Path(opened)), caption=html.escape(Path(opened).name))
        if st.button("Close photo", key="library_close"):
            st.session_state.pop("library_open", None)
            st.rerun()
    cache = library.rec.settings.cache_dir
    shas = {f.path: f.sha for f in library.faces()}
    for start in range(0, min(len(paths), PHOTOS_SHOWN), 4):
        cols = st.columns(4)
        for col, p in zip(cols, paths[start:start + 4]):
            with col:
                picture = thumbs.photo_thumb(p, shas.get(p, ""), None, cache)
                if picture is not None:
                    st.image(str(picture), caption=p.name)
                if st.button("Open", key=f"open_{p}"):
                    st.session_state["library_open"] = str(p)
                    st.rerun()
