"""The Tag photos page: name every face in a folder under the photo roots or an uploaded zip;
download the results as CSV or JSON."""

from __future__ import annotations

import base64
import dataclasses
import io
import tempfile
import zipfile
from pathlib import Path

import streamlit as st
from PIL import Image

from facerec import FaceRecError, FaceRecognizer, auth, tagging
from facerec.align import crop_box
from facerec.app.common import MAX_ZIP_UPLOAD_BYTES, is_served_remotely, read_upload
from facerec.detect import rescale_face
from facerec.images import is_image_path, load_photo, pixel_budget
from facerec.tagcache import TagCache
from facerec.tagging import csv_report, find_photos, json_report, printable
from facerec.verdict import verdict

MAX_ZIP_BYTES = 1024 * 1024 * 1024  # uncompressed total of an uploaded zip
MAX_ZIP_FILES = 5000


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
    for i, res in enumerate(tagging.identify_files(rec, paths, cache=cache), start=1):
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
