"""Importing named face regions from XMP (issue 24, item 6): digiKam- and Lightroom-style sidecars,
Microsoft's regions embedded in a photo, a region over no face refused; `facerec import-xmp`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import synthetic_photo
from PIL import Image, PngImagePlugin

from facerec.xmp import read_regions

W, H = 186, 88  # synthetic_photo([a, b]): faces at x 30-78 and 108-156, y 20-68
CLEO = ((30 + 24) / W, (20 + 24) / H, 48 / W, 48 / H)  # centre-based (MWG)
DAN = ((108 + 24) / W, (20 + 24) / H, 48 / W, 48 / H)
EMPTY = (0.5, 0.9, 0.1, 0.15)  # the black strip under the faces: no face there

DIGIKAM = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:digiKam="http://www.digikam.org/ns/1.0/" xmlns:MP="http://ns.microsoft.com/photo/1.2/"
    xmlns:MPRI="http://ns.microsoft.com/photo/1.2/t/RegionInfo#"
    xmlns:MPReg="http://ns.microsoft.com/photo/1.2/t/Region#"
    xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
    xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#" xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#">
   <digiKam:TagsList><rdf:Seq><rdf:li>People/{a}</rdf:li><rdf:li>People/{b}</rdf:li></rdf:Seq></digiKam:TagsList>
   <MP:RegionInfo rdf:parseType="Resource">
    <MPRI:Regions><rdf:Bag>
     <rdf:li MPReg:PersonDisplayName="{a}" MPReg:Rectangle="{a_rect}"/>
     <rdf:li MPReg:PersonDisplayName="{b}" MPReg:Rectangle="{b_rect}"/>
    </rdf:Bag></MPRI:Regions>
   </MP:RegionInfo>
   <mwg-rs:Regions rdf:parseType="Resource">
    <mwg-rs:AppliedToDimensions stDim:w="{w}" stDim:h="{h}" stDim:unit="pixel"/>
    <mwg-rs:RegionList><rdf:Bag>
     <rdf:li><rdf:Description mwg-rs:Name="{a}" mwg-rs:Type="Face">
      <mwg-rs:Area stArea:x="{a_area[0]}" stArea:y="{a_area[1]}" stArea:w="{a_area[2]}" stArea:h="{a_area[3]}"
        stArea:unit="normalized"/></rdf:Description></rdf:li>
     <rdf:li><rdf:Description mwg-rs:Name="{b}" mwg-rs:Type="Face">
      <mwg-rs:Area stArea:x="{b_area[0]}" stArea:y="{b_area[1]}" stArea:w="{b_area[2]}" stArea:h="{b_area[3]}"
        stArea:unit="normalized"/></rdf:Description></rdf:li>
    </rdf:Bag></mwg-rs:RegionList>
   </mwg-rs:Regions>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

LIGHTROOM = """<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000 1.000000">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
    xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#" xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/" xmp:Rating="3">
   <mwg-rs:Regions rdf:parseType="Resource">
    <mwg-rs:AppliedToDimensions rdf:parseType="Resource">
     <stDim:w>{w}</stDim:w><stDim:h>{h}</stDim:h><stDim:unit>pixel</stDim:unit>
    </mwg-rs:AppliedToDimensions>
    <mwg-rs:RegionList><rdf:Bag>
     <rdf:li rdf:parseType="Resource">
      <mwg-rs:Area rdf:parseType="Resource">
       <stArea:h>{area[3]}</stArea:h><stArea:w>{area[2]}</stArea:w><stArea:x>{area[0]}</stArea:x><stArea:y>{area[1]}</stArea:y>
       <stArea:unit>normalized</stArea:unit>
      </mwg-rs:Area>
      <mwg-rs:Name>{name}</mwg-rs:Name>
      <mwg-rs:Type>Face</mwg-rs:Type>
     </rdf:li>
     <rdf:li rdf:parseType="Resource">
      <mwg-rs:Area stArea:x="0.5" stArea:y="0.5" stArea:w="0.2" stArea:h="0.2" stArea:unit="normalized"/>
      <mwg-rs:Name>Not a face</mwg-rs:Name>
      <mwg-rs:Type>Pet</mwg-rs:Type>
     </rdf:li>
    </rdf:Bag></mwg-rs:RegionList>
   </mwg-rs:Regions>
   <lr:hierarchicalSubject><rdf:Bag><rdf:li>People|{name}</rdf:li></rdf:Bag></lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

MICROSOFT = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
 <rdf:Description rdf:about="" xmlns:MP="http://ns.microsoft.com/photo/1.2/"
   xmlns:MPRI="http://ns.microsoft.com/photo/1.2/t/RegionInfo#" xmlns:MPReg="http://ns.microsoft.com/photo/1.2/t/Region#">
  <MP:RegionInfo><rdf:Description><MPRI:Regions><rdf:Bag>
   <rdf:li><rdf:Description MPReg:PersonDisplayName="{name}" MPReg:Rectangle="{rect}"/></rdf:li>
  </rdf:Bag></MPRI:Regions></rdf:Description></MP:RegionInfo>
 </rdf:Description></rdf:RDF></x:xmpmeta>"""


def _rect(area) -> str:
    """A centre-based MWG area as Microsoft's top-left rectangle."""
    cx, cy, w, h = area
    return ", ".join(f"{v:.6f}" for v in (cx - w / 2, cy - h / 2, w, h))


def _fmt(area) -> tuple[str, ...]:
    return tuple(f"{v:.6f}" for v in area)


def digikam(a: str, a_area, b: str, b_area) -> str:
    return DIGIKAM.format(a=a, b=b, a_area=_fmt(a_area), b_area=_fmt(b_area), a_rect=_rect(a_area),
                          b_rect=_rect(b_area), w=W, h=H)


@pytest.fixture
def library(tmp_path) -> Path:
    """party.png (Cleo and Dan; digiKam's PHOTO.jpg.xmp), dan.png (Dan, Lightroom's PHOTO.xmp),
    cleo.png (Cleo, Microsoft's regions inside the PNG), ghost.png (a region over no face)."""
    d = tmp_path / "pictures"
    d.mkdir()
    Image.fromarray(synthetic_photo([9, 7], seed=1)).save(d / "party.png")
    (d / "party.png.xmp").write_text(digikam("Cleo Park", CLEO, "Dan Ruiz", DAN))
    Image.fromarray(synthetic_photo([7, 5], seed=2)).save(d / "dan.png")
    (d / "dan.xmp").write_text(LIGHTROOM.format(name="Dan Ruiz", area=_fmt(CLEO), w=W, h=H))
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", MICROSOFT.format(name="Cleo Park", rect=_rect(DAN)))
    Image.fromarray(synthetic_photo([5, 9], seed=3)).save(d / "cleo.png", pnginfo=info)
    Image.fromarray(synthetic_photo([5, 8], seed=4)).save(d / "ghost.png")
    (d / "ghost.png.xmp").write_text(digikam("Ghost", EMPTY, "Eve", DAN))
    return d


def test_regions_are_read_from_digikam_lightroom_and_embedded_xmp(library):
    regions, problems = read_regions(library / "party.png")
    assert problems == []
    assert [(r.name, r.form) for r in regions] == [("Cleo Park", "mwg"), ("Dan Ruiz", "mwg")]  # MP duplicates merged
    assert regions[0].box == pytest.approx((30 / W, 20 / H, 48 / W, 48 / H), abs=1e-5)
    regions, _ = read_regions(library / "dan.png")
    assert [r.name for r in regions] == ["Dan Ruiz"]  # the "Pet" region is not a face
    regions, _ = read_regions(library / "cleo.png")
    assert [(r.name, r.form) for r in regions] == [("Cleo Park", "mp")]
    assert "embedded" in regions[0].source
    assert regions[0].box == pytest.approx((108 / W, 20 / H, 48 / W, 48 / H), abs=1e-5)


def test_import_enrols_named_faces_and_refuses_a_region_over_no_face(library, recognizer):
    from facerec.tagging import find_photos
    from facerec.xmpimport import import_xmp

    before = {p.name: p.read_bytes() for p in library.iterdir()}
    report = import_xmp(recognizer, find_photos([library]))
    assert sorted((p.name, n) for p, n in report.enrolled) == [
        ("cleo.png", "Cleo Park"), ("dan.png", "Dan Ruiz"), ("ghost.png", "Eve"), ("party.png", "Cleo Park"),
        ("party.png", "Dan Ruiz")]
    assert [(p.name, n) for p, n in report.no_face] == [("ghost.png", "Ghost")]
    assert not report.complete
    people = {p.name: p.photos for p in recognizer.gallery.people()}
    assert people == {"Cleo Park": 2, "Dan Ruiz": 2, "Eve": 1}
    assert "Ghost" not in people
    # each enrolled face is the one under the region: Cleo's two photos show pattern 9
    party = next(r for r in recognizer.gallery.photos("Dan Ruiz") if r.box[0] > 100)
    assert party.box == pytest.approx((108, 20, 48, 48), abs=1)
    assert {p.name: p.read_bytes() for p in library.iterdir()} == before  # photos and sidecars untouched
    again = import_xmp(recognizer, find_photos([library]))
    assert again.enrolled == [] and len(again.already) == 5


def test_cli_import_xmp(library, recognizer, monkeypatch, capsys, tmp_path):
    from facerec import cli
    from facerec.pipeline import FaceRecognizer

    monkeypatch.setattr(cli, "_recognizer", lambda args: FaceRecognizer(cli._settings(args), detector=recognizer.detector,
                                                                        embedder=recognizer.embedder))
    gallery = tmp_path / "g2"
    assert cli.main(["import-xmp", str(library), "--gallery", str(gallery), "-q"]) == 1  # the ghost region
    out, err = capsys.readouterr()
    assert f"{library / 'party.png'},Cleo Park,enrolled" in out.splitlines()
    assert "the region named Ghost is over no face" in err
    assert sorted(p.name for p in (gallery).iterdir() if not p.name.startswith(".")) == ["Cleo Park", "Dan Ruiz", "Eve"]


@pytest.mark.exiftool
def test_exiftool_reads_the_test_sidecars_as_real_tools_write_them(library):
    """The hand-written digiKam and Lightroom sidecars are valid XMP that exiftool reads the same way."""
    exe = shutil.which("exiftool")
    if exe is None:
        pytest.skip("exiftool is not installed")
    for side, names in (("party.png.xmp", ["Cleo Park", "Dan Ruiz"]), ("dan.xmp", ["Dan Ruiz", "Not a face"])):
        out = subprocess.run([exe, "-j", "-struct", "-n", "-XMP:RegionInfo", str(library / side)],
                             capture_output=True, text=True, check=True, timeout=60)
        info = json.loads(out.stdout)[0]["RegionInfo"]
        assert [r["Name"] for r in info["RegionList"]] == names
        assert info["RegionList"][0]["Area"]["W"] == pytest.approx(48 / W, abs=1e-5)
        assert info["AppliedToDimensions"]["W"] == W
