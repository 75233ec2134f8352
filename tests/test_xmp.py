import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from facerec.errors import FaceRecError, MetadataError
from facerec.types import UNKNOWN, Face, Match
from facerec.xmp import NS, clamp_box, mp_rectangle, mwg_area, sidecar_path, write_sidecar

SIZE = (400, 200)  # width, height as displayed
FACES = [
    (Face(box=(40.0, 20.0, 80.0, 100.0), score=0.99), Match("Ann Lee", 0.91)),
    (Face(box=(200.0, 50.0, 60.0, 60.0), score=0.98), Match(UNKNOWN, 0.2)),
    (Face(box=(360.0, 150.0, 80.0, 100.0), score=0.97), Match("Zoë", 0.88)),  # runs off the bottom-right corner
]

FOREIGN = """<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>
<x:xmpmeta xmlns:x='adobe:ns:meta/' x:xmptk='Image::ExifTool 12.57'>
<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>
 <rdf:Description rdf:about='' xmlns:xmp='http://ns.adobe.com/xap/1.0/' xmlns:darktable='http://darktable.sf.net/'
   xmp:Rating='4' darktable:xmp_version='5'>
  <darktable:history><rdf:Seq><rdf:li darktable:operation='exposure' darktable:enabled='1'/></rdf:Seq></darktable:history>
  <dc:title xmlns:dc='http://purl.org/dc/elements/1.1/'><rdf:Alt><rdf:li xml:lang='x-default'>Beach</rdf:li></rdf:Alt></dc:title>
 </rdf:Description>
 <rdf:Description rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/' xmlns:digiKam='http://www.digikam.org/ns/1.0/'>
  <dc:subject><rdf:Bag><rdf:li>Holiday</rdf:li><rdf:li>Ann Lee</rdf:li></rdf:Bag></dc:subject>
  <digiKam:TagsList><rdf:Seq><rdf:li>Places/Rome</rdf:li></rdf:Seq></digiKam:TagsList>
 </rdf:Description>
 <rdf:Description rdf:about='' xmlns:mwg-rs='http://www.metadataworkinggroup.com/schemas/regions/'
   xmlns:stArea='http://ns.adobe.com/xmp/sType/Area#' xmlns:MP='http://ns.microsoft.com/photo/1.2/'>
  <mwg-rs:Regions rdf:parseType='Resource'><mwg-rs:RegionList><rdf:Bag><rdf:li rdf:parseType='Resource'>
   <mwg-rs:Name>Old Name</mwg-rs:Name><mwg-rs:Type>Face</mwg-rs:Type>
   <mwg-rs:Area stArea:x='0.5' stArea:y='0.5' stArea:w='0.1' stArea:h='0.1' stArea:unit='normalized'/>
  </rdf:li></rdf:Bag></mwg-rs:RegionList></mwg-rs:Regions>
  <MP:RegionInfo rdf:parseType='Resource'/>
 </rdf:Description>
</rdf:RDF>
</x:xmpmeta>
<?xpacket end='w'?>
"""


def q(prefix, local):
    return f"{{{NS[prefix]}}}{local}"


def read(path):
    """(mwg regions [(name, (x, y, w, h))], mp regions [(name, rect)], keyword lists, root) of a sidecar."""
    root = ET.fromstring(path.read_bytes())
    mwg = []
    for li in root.iter(q("mwg-rs", "RegionList")):
        for item in li.iter(q("rdf", "li")):
            area = item.find(q("mwg-rs", "Area"))
            name = item.find(q("mwg-rs", "Name"))
            assert item.find(q("mwg-rs", "Type")).text == "Face"
            mwg.append((None if name is None else name.text,
                        tuple(float(area.get(q("stArea", k))) for k in "xywh")))
    mp = []
    for item in root.iter(q("MPRI", "Regions")):
        for li in item.iter(q("rdf", "li")):
            name = li.find(q("MPReg", "PersonDisplayName"))
            mp.append((None if name is None else name.text, li.find(q("MPReg", "Rectangle")).text))
    kw = {}
    for prop in [("dc", "subject"), ("digiKam", "TagsList"), ("lr", "HierarchicalSubject")]:
        kw[prop[1]] = [li.text for p in root.iter(q(*prop)) for li in p.iter(q("rdf", "li"))]
    return mwg, mp, kw, root


# -- geometry ---------------------------------------------------------------------------


def test_mwg_area_is_normalised_and_centre_based():
    assert mwg_area((40, 20, 80, 100), (400, 200)) == pytest.approx((0.2, 0.35, 0.2, 0.5))
    assert mwg_area((0, 0, 400, 200), (400, 200)) == pytest.approx((0.5, 0.5, 1.0, 1.0))


def test_mp_rectangle_is_normalised_and_top_left_based():
    assert mp_rectangle((40, 20, 80, 100), (400, 200)) == pytest.approx((0.1, 0.1, 0.2, 0.5))


def test_geometry_is_clamped_to_the_image():
    assert clamp_box((-10, -20, 50, 60), (400, 200)) == (0, 0, 40, 40)
    assert mwg_area((360, 150, 80, 100), (400, 200)) == pytest.approx((0.95, 0.875, 0.1, 0.25))
    assert mp_rectangle((360, 150, 80, 100), (400, 200)) == pytest.approx((0.9, 0.75, 0.1, 0.25))
    assert mp_rectangle((-10, -20, 50, 60), (400, 200)) == pytest.approx((0, 0, 0.1, 0.2))
    assert clamp_box((500, 10, 20, 20), (400, 200))[2] == 0  # wholly outside: empty
    with pytest.raises(ValueError):
        mwg_area((0, 0, 1, 1), (0, 200))


def test_sidecar_paths():
    assert sidecar_path(Path("a/IMG_1.JPG")).name == "IMG_1.JPG.xmp"
    assert sidecar_path(Path("a/IMG_1.JPG"), "stem").name == "IMG_1.xmp"
    with pytest.raises(ValueError):
        sidecar_path(Path("a.jpg"), "darktable")


# -- writing ----------------------------------------------------------------------------


@pytest.fixture
def photo(tmp_path):
    p = tmp_path / "IMG_0001.jpg"
    p.write_bytes(b"\xff\xd8not really a jpeg but never opened\xff\xd9")
    return p


def test_new_sidecar_has_both_region_forms_and_keywords(photo):
    before = photo.read_bytes()
    out = write_sidecar(photo, SIZE, FACES)
    assert out == photo.with_name("IMG_0001.jpg.xmp")
    assert photo.read_bytes() == before
    mwg, mp, kw, root = read(out)
    assert [n for n, _ in mwg] == ["Ann Lee", "Zoë"]  # unknown left out
    assert mwg[0][1] == pytest.approx((0.2, 0.35, 0.2, 0.5))
    assert mwg[1][1] == pytest.approx((0.95, 0.875, 0.1, 0.25))
    assert mp == [("Ann Lee", "0.1, 0.1, 0.2, 0.5"), ("Zoë", "0.9, 0.75, 0.1, 0.25")]
    dims = next(root.iter(q("mwg-rs", "AppliedToDimensions")))
    assert (dims.get(q("stDim", "w")), dims.get(q("stDim", "h")), dims.get(q("stDim", "unit"))) == ("400", "200", "pixel")
    assert kw == {"subject": ["Ann Lee", "Zoë"], "TagsList": ["People/Ann Lee", "People/Zoë"],
                  "HierarchicalSubject": ["People|Ann Lee", "People|Zoë"]}
    assert not [p for p in photo.parent.iterdir() if p.name.endswith(".tmp")]


def test_unknown_faces_become_unnamed_regions_on_request(photo):
    out = write_sidecar(photo, SIZE, FACES, style="stem", include_unknown=True)
    assert out == photo.with_suffix(".xmp")
    mwg, mp, kw, _ = read(out)
    assert [n for n, _ in mwg] == ["Ann Lee", None, "Zoë"]
    assert [n for n, _ in mp] == ["Ann Lee", None, "Zoë"]
    assert UNKNOWN not in kw["subject"]


def test_nothing_to_write_creates_no_sidecar(photo):
    assert write_sidecar(photo, SIZE, [FACES[1]]) is None
    assert write_sidecar(photo, SIZE, []) is None
    assert sorted(p.name for p in photo.parent.iterdir()) == [photo.name]


def test_merge_keeps_foreign_metadata_and_is_idempotent(photo):
    side = sidecar_path(photo)
    side.write_text(FOREIGN, encoding="utf-8")
    write_sidecar(photo, SIZE, FACES)
    first = side.read_bytes()
    mwg, mp, kw, root = read(side)
    assert [n for n, _ in mwg] == ["Ann Lee", "Zoë"]  # old regions replaced wholly
    assert len(list(root.iter(q("mwg-rs", "Regions")))) == 1
    assert len(list(root.iter(q("MP", "RegionInfo")))) == 1
    assert [n for n, _ in mp] == ["Ann Lee", "Zoë"]
    assert kw["subject"] == ["Holiday", "Ann Lee", "Zoë"]  # existing kept, no duplicate
    assert kw["TagsList"] == ["Places/Rome", "People/Ann Lee", "People/Zoë"]
    assert kw["HierarchicalSubject"] == ["People|Ann Lee", "People|Zoë"]
    text = first.decode()
    assert 'xmp:Rating="4"' in text and 'darktable:xmp_version="5"' in text  # foreign prefixes kept
    assert 'darktable:operation="exposure"' in text and ">Beach<" in text and 'xml:lang="x-default"' in text
    write_sidecar(photo, SIZE, FACES)
    assert side.read_bytes() == first  # idempotent, byte for byte
    mwg2, _, kw2, _ = read(side)
    assert len(mwg2) == 2 and kw2 == kw


def test_retag_with_fewer_faces_replaces_regions_but_keeps_keywords(photo):
    side = sidecar_path(photo)
    write_sidecar(photo, SIZE, FACES)
    write_sidecar(photo, SIZE, [FACES[2]])
    mwg, mp, kw, _ = read(side)
    assert [n for n, _ in mwg] == ["Zoë"] and [n for n, _ in mp] == ["Zoë"]
    assert kw["subject"] == ["Ann Lee", "Zoë"]
    write_sidecar(photo, SIZE, [])  # an existing sidecar loses facerec's regions, keeps the rest
    mwg, mp, kw, _ = read(side)
    assert mwg == [] and mp == [] and kw["subject"] == ["Ann Lee", "Zoë"]


@pytest.mark.parametrize("content", [
    b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF",  # truncated
    b"not xml at all",
    b"",
    b"<html><body>a page</body></html>",  # XML but not XMP
    b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]><x:xmpmeta xmlns:x='adobe:ns:meta/'>&a;</x:xmpmeta>",
])
def test_malformed_sidecar_is_left_untouched_and_reported(photo, content):
    side = sidecar_path(photo)
    side.write_bytes(content)
    with pytest.raises(MetadataError, match=str(side.name)) as info:
        write_sidecar(photo, SIZE, FACES)
    assert isinstance(info.value, FaceRecError)
    assert side.read_bytes() == content
    assert sorted(p.name for p in photo.parent.iterdir()) == sorted([photo.name, side.name])


def test_keyword_property_in_an_unexpected_form_is_refused(photo):
    side = sidecar_path(photo)
    bad = FOREIGN.replace("<dc:subject><rdf:Bag><rdf:li>Holiday</rdf:li><rdf:li>Ann Lee</rdf:li></rdf:Bag></dc:subject>",
                          "<dc:subject>Holiday</dc:subject>")
    side.write_text(bad, encoding="utf-8")
    with pytest.raises(MetadataError, match="subject"):
        write_sidecar(photo, SIZE, FACES)
    assert side.read_text(encoding="utf-8") == bad


# -- read back with exiftool ------------------------------------------------------------


@pytest.fixture
def exiftool():
    exe = shutil.which("exiftool")
    if exe is None:
        msg = "exiftool is not installed (Debian: apt-get install -y libimage-exiftool-perl)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + "; CI must install it")
        pytest.skip(msg)
    return exe


def exif_json(exe, path):
    out = subprocess.run([exe, "-j", "-struct", "-n", "-XMP:all", str(path)], capture_output=True, text=True,
                         check=True, timeout=60)
    return json.loads(out.stdout)[0]


@pytest.mark.exiftool
@pytest.mark.parametrize("style", ["ext", "stem"])
def test_exiftool_reads_names_and_regions_back(photo, exiftool, style):
    out = write_sidecar(photo, SIZE, FACES, style=style, include_unknown=True)
    tags = exif_json(exiftool, out)
    info = tags["RegionInfo"]
    assert info["AppliedToDimensions"] == {"W": 400, "H": 200, "Unit": "pixel"}
    regions = info["RegionList"]
    assert [r.get("Name") for r in regions] == ["Ann Lee", None, "Zoë"]
    assert all(r["Type"] == "Face" and r["Area"]["Unit"] == "normalized" for r in regions)
    got = [tuple(r["Area"][k] for k in "XYWH") for r in regions]
    want = [mwg_area(f.box, SIZE) for f, _ in FACES]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, abs=1e-6)
    mp = tags["RegionInfoMP"]["Regions"]
    assert [r.get("PersonDisplayName") for r in mp] == ["Ann Lee", None, "Zoë"]
    for r, (f, _) in zip(mp, FACES):
        assert tuple(float(v) for v in r["Rectangle"].split(",")) == pytest.approx(mp_rectangle(f.box, SIZE), abs=1e-6)
    assert tags["Subject"] == ["Ann Lee", "Zoë"]
    assert tags["TagsList"] == ["People/Ann Lee", "People/Zoë"]
    assert tags["HierarchicalSubject"] == ["People|Ann Lee", "People|Zoë"]


@pytest.mark.exiftool
def test_exiftool_sees_merged_sidecar_with_its_own_metadata_kept(photo, exiftool):
    side = sidecar_path(photo)
    subprocess.run([exiftool, "-q", "-XMP-xmp:Rating=3", "-XMP-dc:Subject=Holiday", "-XMP-dc:Subject=Ann Lee",
                    "-XMP-digiKam:TagsList=Places/Rome",
                    "-XMP-mwg-rs:RegionInfo={AppliedToDimensions={W=10,H=10,Unit=pixel},RegionList=[{Area={X=0.5,"
                    "Y=0.5,W=0.1,H=0.1,Unit=normalized},Name=Old Name,Type=Face}]}", str(side)],
                   check=True, capture_output=True, timeout=60)
    write_sidecar(photo, SIZE, FACES)
    write_sidecar(photo, SIZE, FACES)
    tags = exif_json(exiftool, side)
    assert tags["Rating"] == 3
    assert [r["Name"] for r in tags["RegionInfo"]["RegionList"]] == ["Ann Lee", "Zoë"]
    assert tags["Subject"] == ["Holiday", "Ann Lee", "Zoë"]
    assert tags["TagsList"] == ["Places/Rome", "People/Ann Lee", "People/Zoë"]


def test_regions_follow_the_displayed_photo_of_an_exif_rotated_file(recognizer, tmp_path):
    """End to end: a photo stored sideways with EXIF orientation 6; regions are in displayed coordinates."""
    import numpy as np
    from PIL import Image

    from conftest import png_bytes, synthetic_photo
    from facerec.tagging import identify_files

    recognizer.enroll("Ann", png_bytes(synthetic_photo([1], seed=0)), source="ann.png")
    shown = synthetic_photo([9, 1], seed=3)  # stranger left, Ann right, as displayed
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; viewers turn it 90 degrees clockwise
    path = tmp_path / "rot.png"
    Image.fromarray(np.ascontiguousarray(np.rot90(shown, k=1))).save(path, exif=exif)
    (res,) = identify_files(recognizer, [path])
    assert res.size == (shown.shape[1], shown.shape[0])
    out = write_sidecar(path, res.size, res.faces)
    mwg, mp, kw, _ = read(out)
    H, W = shown.shape[:2]
    x, y = 108, 20  # Ann's 48x48 pattern in the displayed photo
    assert [n for n, _ in mwg] == ["Ann"] and kw["subject"] == ["Ann"]
    assert mwg[0][1] == pytest.approx(((x + 24) / W, (y + 24) / H, 48 / W, 48 / H), abs=0.01)
