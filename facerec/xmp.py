"""XMP sidecars with face regions and people keywords, merged into what is already there.

A sidecar sits beside the photo: ``PHOTO.jpg.xmp`` (style ``"ext"``: digiKam,
darktable, Immich) or ``PHOTO.xmp`` (style ``"stem"``: Lightroom). The photo
itself is never opened for writing. :func:`write_sidecar` writes:

* Metadata Working Group regions: ``mwg-rs:Regions`` with
  ``mwg-rs:AppliedToDimensions`` (``stDim:w``/``stDim:h`` in pixels) and a
  ``mwg-rs:RegionList`` of ``Type`` ``Face`` entries with ``Name`` and an
  ``mwg-rs:Area`` whose ``stArea:x``/``y`` is the box *centre* and ``w``/``h``
  its size, all normalised to [0, 1] (``stArea:unit="normalized"``);
* Microsoft People Tagging: ``MP:RegionInfo``/``MPRI:Regions`` entries with
  ``MPReg:PersonDisplayName`` and ``MPReg:Rectangle`` ``"x, y, w, h"``
  normalised, ``x, y`` the *top-left* corner;
* the names as keywords: ``dc:subject`` (``NAME``), ``digiKam:TagsList``
  (``People/NAME``) and ``lr:HierarchicalSubject`` (``People|NAME``).

Regions are in the coordinates of the photo as displayed (EXIF orientation
applied), the same pixels as :class:`facerec.types.Face` boxes.

Merging into an existing sidecar: every ``mwg-rs:Regions`` and
``MP:RegionInfo`` property in it is replaced wholly by facerec's (facerec owns
the face regions of a sidecar it writes); names are *added* to the three
keyword lists, skipping ones already there, and no keyword is ever removed;
every other property, namespace and description is kept. A sidecar that is
not well-formed XMP is never overwritten: :class:`MetadataError` is raised and
the file is left byte for byte as it was. Writes are atomic (a temporary file
in the same folder, then a rename).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from facerec.errors import MetadataError
from facerec.storage import write_atomic
from facerec.types import Face, Match

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "mwg-rs": "http://www.metadataworkinggroup.com/schemas/regions/",
    "stDim": "http://ns.adobe.com/xap/1.0/sType/Dimensions#",
    "stArea": "http://ns.adobe.com/xmp/sType/Area#",
    "MP": "http://ns.microsoft.com/photo/1.2/",
    "MPRI": "http://ns.microsoft.com/photo/1.2/t/RegionInfo#",
    "MPReg": "http://ns.microsoft.com/photo/1.2/t/Region#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "digiKam": "http://www.digikam.org/ns/1.0/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
}
for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)

STYLES = ("ext", "stem")
PEOPLE_ROOT = "People"
_XPACKET_BEGIN = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
_XPACKET_END = '\n<?xpacket end="w"?>\n'
_MAX_SIDECAR_BYTES = 64 * 1024 * 1024


def _q(prefix: str, local: str) -> str:
    return f"{{{NS[prefix]}}}{local}"


RDF_DESCRIPTION = _q("rdf", "Description")
RDF_LI = _q("rdf", "li")
RDF_PARSE_TYPE = _q("rdf", "parseType")
# Properties facerec replaces wholly, and the keyword lists it adds to:
# (property, container, value for a name).
REPLACED = (_q("mwg-rs", "Regions"), _q("MP", "RegionInfo"))
KEYWORDS = (
    (_q("dc", "subject"), _q("rdf", "Bag"), lambda name: name),
    (_q("digiKam", "TagsList"), _q("rdf", "Seq"), lambda name: f"{PEOPLE_ROOT}/{name}"),
    (_q("lr", "HierarchicalSubject"), _q("rdf", "Bag"), lambda name: f"{PEOPLE_ROOT}|{name}"),
)


# -- geometry (pure) -----------------------------------------------------------------


def clamp_box(box: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[float, float, float, float]:
    """A box cut to the image.

    Args:
        box: ``(x, y, w, h)`` in pixels.
        size: image ``(width, height)`` in pixels.

    Returns:
        ``(x, y, w, h)`` inside ``[0, width] x [0, height]``; ``w``/``h`` are 0
        when the box lies wholly outside.
    """
    W, H = size
    x, y, w, h = (float(v) for v in box)
    x0, y0 = min(max(x, 0.0), W), min(max(y, 0.0), H)
    x1, y1 = min(max(x + w, 0.0), W), min(max(y + h, 0.0), H)
    return x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    W, H = int(size[0]), int(size[1])
    if W <= 0 or H <= 0:
        raise ValueError(f"image size must be positive (width, height), got {size}")
    return W, H


def mwg_area(box: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[float, float, float, float]:
    """MWG ``stArea`` of a pixel box: ``(cx, cy, w, h)`` normalised to [0, 1], centre-based.

    Args:
        box: ``(x, y, w, h)`` in pixels of the displayed photo (clamped to it first).
        size: photo ``(width, height)`` in pixels.
    """
    W, H = _check_size(size)
    x, y, w, h = clamp_box(box, (W, H))
    return (x + w / 2) / W, (y + h / 2) / H, w / W, h / H


def mp_rectangle(box: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[float, float, float, float]:
    """Microsoft People Tagging rectangle of a pixel box: ``(x, y, w, h)`` normalised, top-left based.

    Args:
        box: ``(x, y, w, h)`` in pixels of the displayed photo (clamped to it first).
        size: photo ``(width, height)`` in pixels.
    """
    W, H = _check_size(size)
    x, y, w, h = clamp_box(box, (W, H))
    return x / W, y / H, w / W, h / H


def _num(v: float) -> str:
    """A real in plain decimal notation (no exponent), at most 6 decimals."""
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


# -- paths -----------------------------------------------------------------------------


def sidecar_path(photo: Path, style: str = "ext") -> Path:
    """Where a photo's sidecar goes: ``PHOTO.jpg.xmp`` (``"ext"``) or ``PHOTO.xmp`` (``"stem"``)."""
    photo = Path(photo)
    if style == "ext":
        return photo.with_name(photo.name + ".xmp")
    if style == "stem":
        return photo.with_suffix(".xmp")
    raise ValueError(f"unknown sidecar style {style!r}; choose one of {', '.join(STYLES)}")


# -- reading and merging ---------------------------------------------------------------


def _parse(path: Path) -> tuple[ET.Element, ET.Element]:
    """The root element and the ``rdf:RDF`` element of an existing sidecar.

    Raises:
        MetadataError: unreadable, not XML, or not XMP.
    """
    try:
        if path.stat().st_size > _MAX_SIDECAR_BYTES:
            raise MetadataError(f"{path}: sidecar too large ({path.stat().st_size} bytes); left unchanged")
        data = path.read_bytes()
    except OSError as exc:
        raise MetadataError(f"{path}: cannot read sidecar ({exc.strerror or exc})") from None
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise MetadataError(f"{path}: sidecar declares a DTD or entities; not XMP, left unchanged")
    prefixes: list[tuple[str, str]] = []
    root = None
    try:
        parser = ET.XMLPullParser(events=("start-ns", "end"))
        parser.feed(data)
        parser.close()
        for event, item in parser.read_events():
            if event == "start-ns":
                prefixes.append(item)
            else:
                root = item
    except ET.ParseError as exc:
        raise MetadataError(f"{path}: malformed XMP sidecar ({exc}); left unchanged") from None
    if root is None:
        raise MetadataError(f"{path}: empty sidecar; left unchanged")
    if root.tag == _q("x", "xmpmeta"):
        rdf = root.find(_q("rdf", "RDF"))
    elif root.tag == _q("rdf", "RDF"):
        rdf = root
    else:
        rdf = None
    if rdf is None:
        raise MetadataError(f"{path}: not an XMP sidecar (no x:xmpmeta/rdf:RDF); left unchanged")
    _keep_prefixes(prefixes)
    return root, rdf


def _keep_prefixes(prefixes: list[tuple[str, str]]) -> None:
    """Register the file's own prefixes for namespaces facerec does not know, so they survive a rewrite."""
    known_uris = set(NS.values())
    taken = dict(NS)
    for prefix, uri in prefixes:
        if not prefix or uri in known_uris or prefix in taken or prefix.startswith(("ns", "xml")):
            continue
        try:
            ET.register_namespace(prefix, uri)
        except ValueError:
            continue
        taken[prefix] = uri


def _descriptions(rdf: ET.Element) -> list[ET.Element]:
    return rdf.findall(RDF_DESCRIPTION)


def _container_values(prop: ET.Element, container_tag: str, path: Path) -> tuple[ET.Element, set[str]]:
    """The ``rdf:Bag``/``rdf:Seq`` of a keyword property and the values it holds."""
    container = next((c for c in prop if c.tag in (_q("rdf", "Bag"), _q("rdf", "Seq"), _q("rdf", "Alt"))), None)
    if container is None:
        if len(prop) or (prop.text or "").strip():
            raise MetadataError(f"{path}: {prop.tag} is not a list; sidecar left unchanged")
        container = ET.SubElement(prop, container_tag)
    return container, {(li.text or "").strip() for li in container.iter(RDF_LI)}


def _add_keywords(rdf: ET.Element, target: ET.Element, names: list[str], path: Path) -> None:
    for prop_tag, container_tag, value_of in KEYWORDS:
        prop = None
        for desc in _descriptions(rdf):
            if prop_tag in desc.attrib:
                raise MetadataError(f"{path}: {prop_tag} is not a list; sidecar left unchanged")
            prop = prop if prop is not None else desc.find(prop_tag)
        values = [value_of(n) for n in names]
        if prop is None:
            if not values:
                continue
            prop = ET.SubElement(target, prop_tag)
        container, present = _container_values(prop, container_tag, path)
        for v in values:
            if v not in present:
                ET.SubElement(container, RDF_LI).text = v
                present.add(v)


def _regions(size: tuple[int, int], faces: Sequence[tuple[Face, Match]]) -> list[ET.Element]:
    """The ``mwg-rs:Regions`` and ``MP:RegionInfo`` elements for these faces (none when no face)."""
    if not faces:
        return []
    W, H = size
    regions = ET.Element(_q("mwg-rs", "Regions"), {RDF_PARSE_TYPE: "Resource"})
    ET.SubElement(regions, _q("mwg-rs", "AppliedToDimensions"),
                  {_q("stDim", "w"): str(W), _q("stDim", "h"): str(H), _q("stDim", "unit"): "pixel"})
    mwg_bag = ET.SubElement(ET.SubElement(regions, _q("mwg-rs", "RegionList")), _q("rdf", "Bag"))
    info = ET.Element(_q("MP", "RegionInfo"), {RDF_PARSE_TYPE: "Resource"})
    mp_bag = ET.SubElement(ET.SubElement(info, _q("MPRI", "Regions")), _q("rdf", "Bag"))
    for face, match in faces:
        cx, cy, w, h = mwg_area(face.box, size)
        li = ET.SubElement(mwg_bag, RDF_LI, {RDF_PARSE_TYPE: "Resource"})
        ET.SubElement(li, _q("mwg-rs", "Area"), {
            _q("stArea", "x"): _num(cx), _q("stArea", "y"): _num(cy),
            _q("stArea", "w"): _num(w), _q("stArea", "h"): _num(h), _q("stArea", "unit"): "normalized"})
        ET.SubElement(li, _q("mwg-rs", "Type")).text = "Face"
        if match.known:
            ET.SubElement(li, _q("mwg-rs", "Name")).text = match.name
        li = ET.SubElement(mp_bag, RDF_LI, {RDF_PARSE_TYPE: "Resource"})
        if match.known:
            ET.SubElement(li, _q("MPReg", "PersonDisplayName")).text = match.name
        ET.SubElement(li, _q("MPReg", "Rectangle")).text = ", ".join(_num(v) for v in mp_rectangle(face.box, size))
    return [regions, info]


def _new_document() -> tuple[ET.Element, ET.Element]:
    root = ET.Element(_q("x", "xmpmeta"), {_q("x", "xmptk"): "facerec"})
    rdf = ET.SubElement(root, _q("rdf", "RDF"))
    return root, rdf


def _merge(root: ET.Element, rdf: ET.Element, size: tuple[int, int], faces: Sequence[tuple[Face, Match]],
           path: Path) -> None:
    descs = _descriptions(rdf)
    if not descs:
        descs = [ET.SubElement(rdf, RDF_DESCRIPTION, {_q("rdf", "about"): ""})]
    target, insert_at = descs[0], None
    for desc in descs:
        for child in list(desc):
            if child.tag in REPLACED:
                if desc is target and insert_at is None:
                    insert_at = list(desc).index(child)
                desc.remove(child)
    new = _regions(size, faces)
    at = len(target) if insert_at is None else insert_at
    for i, el in enumerate(new):
        target.insert(at + i, el)
    names = list(dict.fromkeys(m.name for _, m in faces if m.known))
    _add_keywords(rdf, target, names, path)


def _write_atomic(path: Path, text: str) -> None:
    try:
        write_atomic(path, text.encode("utf-8"))
    except OSError as exc:
        raise MetadataError(f"{path}: cannot write sidecar ({exc.strerror or exc})") from None


def sidecar_xml(size: tuple[int, int], faces: Sequence[tuple[Face, Match]], include_unknown: bool = False,
                existing: Path | None = None) -> str:
    """The text of a sidecar for these faces, merged into ``existing`` when given.

    Args:
        size: photo ``(width, height)`` as displayed, in pixels.
        faces: ``(face, match)`` pairs, boxes in displayed-photo pixels.
        include_unknown: also write unnamed face regions for ``unknown`` faces.
        existing: a sidecar to merge into (read only).

    Raises:
        MetadataError: ``existing`` is malformed or unreadable.
    """
    size = _check_size(size)
    kept = [(f, m) for f, m in faces if (m.known or include_unknown)]
    kept = [(f, m) for f, m in kept if all(v > 0 for v in clamp_box(f.box, size)[2:])]
    if existing is not None:
        root, rdf = _parse(existing)
    else:
        root, rdf = _new_document()
    _merge(root, rdf, size, kept, existing or Path("sidecar"))
    ET.indent(root, space=" ")
    return _XPACKET_BEGIN + ET.tostring(root, encoding="unicode") + _XPACKET_END


def write_sidecar(photo: Path, size: tuple[int, int], faces: Sequence[tuple[Face, Match]], style: str = "ext",
                  include_unknown: bool = False) -> Path | None:
    """Write (or merge into) the XMP sidecar of a photo; the photo is never touched.

    Args:
        photo: the photo file.
        size: its ``(width, height)`` as displayed (EXIF-rotated), e.g. ``PhotoResult.size``.
        faces: ``(face, match)`` pairs, boxes in displayed-photo pixels.
        style: ``"ext"`` for ``PHOTO.jpg.xmp`` (digiKam, darktable, Immich) or
            ``"stem"`` for ``PHOTO.xmp`` (Lightroom).
        include_unknown: also write ``unknown`` faces, as face regions without a name.

    Returns:
        The sidecar's path, or ``None`` when there was nothing to write: no
        face to record and no sidecar yet (no empty sidecar is created).

    Raises:
        MetadataError: the existing sidecar is malformed or unreadable (it is
            left unchanged), or the sidecar cannot be written.
        ValueError: unknown ``style`` or a non-positive ``size``.
    """
    path = sidecar_path(photo, style)
    exists = path.exists()
    if not exists and path.is_symlink():
        raise MetadataError(f"{path}: sidecar is a broken link; left unchanged")
    kept = [(f, m) for f, m in faces if m.known or include_unknown]
    if not exists and not kept:
        return None
    text = sidecar_xml(size, faces, include_unknown, existing=path if exists else None)
    _write_atomic(path, text)
    return path


# -- reading named face regions (import) -------------------------------------------------


@dataclass(frozen=True)
class NamedRegion:
    """A named face region read from XMP.

    Attributes:
        name: the person's name as written there.
        box: ``(x, y, w, h)`` normalised to [0, 1] of the photo as displayed, top-left based.
        source: where it was read (a sidecar's path, or ``"PHOTO (embedded XMP)"``).
        form: ``"mwg"`` (Metadata Working Group regions) or ``"mp"`` (Microsoft People Tagging).
    """

    name: str
    box: tuple[float, float, float, float]
    source: str
    form: str


def _parse_packet(data: bytes, where: str) -> ET.Element:
    """The ``rdf:RDF`` element of an XMP packet.

    Raises:
        MetadataError: not well-formed, declares a DTD or entities, or not XMP.
    """
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise MetadataError(f"{where}: XMP declares a DTD or entities; not read")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise MetadataError(f"{where}: malformed XMP ({exc})") from None
    rdf = root if root.tag == _q("rdf", "RDF") else root.find(f".//{_q('rdf', 'RDF')}")
    if rdf is None:
        raise MetadataError(f"{where}: not XMP (no rdf:RDF)")
    return rdf


def _struct(el: ET.Element) -> ET.Element:
    """The element holding a structure's fields: ``el`` itself (``rdf:parseType="Resource"`` or
    fields as attributes), or its ``rdf:Description`` child."""
    desc = el.find(RDF_DESCRIPTION)
    return el if desc is None else desc


def _field(el: ET.Element, tag: str) -> str | None:
    """A simple field of a structure, written as an attribute or as a child element."""
    s = _struct(el)
    if tag in s.attrib:
        return s.attrib[tag].strip()
    child = s.find(tag)
    if child is None:
        return None
    alt = child.find(f".//{RDF_LI}")  # a language alternative: its first value
    text = (alt.text if alt is not None else child.text) or ""
    return text.strip() or None


def _floats(values: Sequence[str | None]) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in values)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if all(0.0 <= v <= 1.0 for v in out) else None


def _items(prop: ET.Element | None) -> list[ET.Element]:
    """The ``rdf:li`` items of a list property (its Bag or Seq)."""
    if prop is None:
        return []
    return list(prop.iter(RDF_LI))


def regions_in(rdf: ET.Element, where: str) -> list[NamedRegion]:
    """The named face regions of a parsed XMP packet, in both forms (MWG and Microsoft's).

    MWG areas are centre-based (``stArea:x/y`` the centre); Microsoft's rectangles are
    top-left based; both normalised. Regions that are not faces (``mwg-rs:Type`` other than
    ``Face``), unnamed, or with an area outside [0, 1] are left out.
    """
    out = []
    for desc in rdf.iter(RDF_DESCRIPTION):
        for regions in desc.findall(_q("mwg-rs", "Regions")):
            holder = _struct(regions).find(_q("mwg-rs", "RegionList"))
            for li in _items(holder):
                kind = _field(li, _q("mwg-rs", "Type"))
                name = _field(li, _q("mwg-rs", "Name"))
                area = _struct(li).find(_q("mwg-rs", "Area"))
                if not name or (kind and kind.lower() != "face") or area is None:
                    continue
                vals = _floats([_field(area, _q("stArea", k)) for k in ("x", "y", "w", "h")])
                if vals is None or vals[2] <= 0 or vals[3] <= 0:
                    continue
                cx, cy, w, h = vals
                out.append(NamedRegion(name, (max(0.0, cx - w / 2), max(0.0, cy - h / 2), w, h), where, "mwg"))
        for info in desc.findall(_q("MP", "RegionInfo")):
            holder = _struct(info).find(_q("MPRI", "Regions"))
            for li in _items(holder):
                name = _field(li, _q("MPReg", "PersonDisplayName"))
                rect = _field(li, _q("MPReg", "Rectangle"))
                vals = _floats([v.strip() for v in rect.split(",")]) if name and rect and rect.count(",") == 3 else None
                if vals is None or vals[2] <= 0 or vals[3] <= 0:
                    continue
                out.append(NamedRegion(name, vals, where, "mp"))
    return out


def _embedded_packet(photo: Path, limit: int = 16 * 1024 * 1024) -> bytes | None:
    """The XMP packet inside a photo file (JPEG APP1, PNG iTXt, TIFF, WebP...: stored as plain
    text), or ``None``; only the first ``limit`` bytes are searched."""
    try:
        with open(photo, "rb") as f:
            data = f.read(limit)
    except OSError:
        return None
    start = data.find(b"<x:xmpmeta")
    end = data.find(b"</x:xmpmeta>", start + 1) if start >= 0 else -1
    return data[start:end + len(b"</x:xmpmeta>")] if start >= 0 and end > start else None


def read_regions(photo: Path) -> tuple[list[NamedRegion], list[str]]:
    """Every named face region recorded for a photo: in its sidecars (``PHOTO.jpg.xmp`` and
    ``PHOTO.xmp``) and in the XMP embedded in the photo, in the MWG form (digiKam, Lightroom,
    Immich) and Microsoft's. The same face named in both forms or in several places is given
    once (the first found: sidecars before the embedded XMP, MWG before Microsoft's).

    Returns:
        ``(regions, problems)``: problems name the XMP that could not be read, one line each.
    """
    photo = Path(photo)
    found: list[NamedRegion] = []
    problems: list[str] = []
    packets: list[tuple[str, bytes | None]] = []
    for style in STYLES:
        side = sidecar_path(photo, style)
        if side.is_file():
            try:
                if side.stat().st_size > _MAX_SIDECAR_BYTES:
                    problems.append(f"{side}: sidecar too large; not read")
                    continue
                packets.append((str(side), side.read_bytes()))
            except OSError as exc:
                problems.append(f"{side}: cannot read sidecar ({exc.strerror or exc})")
    packets.append((f"{photo} (embedded XMP)", _embedded_packet(photo)))
    for where, data in packets:
        if data is None:
            continue
        try:
            regions = regions_in(_parse_packet(data, where), where)
        except MetadataError as exc:
            problems.append(str(exc))
            continue
        for r in regions:
            if not any(o.name == r.name and _overlap(o.box, r.box) >= 0.5 for o in found):
                found.append(r)
    return found, problems


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - iw * ih
    return iw * ih / union if union > 0 else 0.0
