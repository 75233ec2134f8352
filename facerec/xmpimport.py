"""Importing the people a photo manager already named: XMP face regions -> enrolments.

A library tagged in digiKam, Lightroom or Immich carries its people as named face regions
(:func:`facerec.xmp.read_regions`: sidecars ``PHOTO.jpg.xmp`` / ``PHOTO.xmp`` and XMP inside the
photo; MWG regions and Microsoft People Tagging). :func:`import_xmp` enrols each named region's
face through :meth:`facerec.people.People.enroll` (every enrolment check applies): the region is
matched to a face facerec detects in the photo by overlap; a region over no detected face is
reported, never enrolled (facerec would learn whatever lies there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from facerec.errors import ConfirmationNeededError, FaceRecError
from facerec.people import People
from facerec.types import Face

if TYPE_CHECKING:
    from facerec.pipeline import FaceRecognizer

MIN_IOU = 0.3  # a region and a detected face at least this much overlapped are the same face


@dataclass
class ImportReport:
    """What :func:`import_xmp` did, one entry per named region.

    Attributes:
        enrolled: ``(photo, name)`` newly enrolled.
        already: ``(photo, name)`` already enrolled for that person.
        no_face: ``(photo, name)`` regions over no detected face (not enrolled).
        to_confirm: ``(photo, name, why)`` not enrolled: an enrolment check asks first (``--yes``).
        failed: ``(photo, why)``: unreadable photos or XMP, bad names.
        photos: photos with at least one named region.
    """

    enrolled: list[tuple[Path, str]] = field(default_factory=list)
    already: list[tuple[Path, str]] = field(default_factory=list)
    no_face: list[tuple[Path, str]] = field(default_factory=list)
    to_confirm: list[tuple[Path, str, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    photos: int = 0

    @property
    def complete(self) -> bool:
        """Every named region was enrolled (or already was)."""
        return not (self.no_face or self.to_confirm or self.failed)


def _covers(face_box, region) -> float:
    """How well a detected face matches a region: IoU, or (a region drawn looser or tighter than
    the detector's box) 0.3 when each box's centre lies inside the other."""
    from facerec.types import iou

    score = iou(face_box, region)
    fx, fy, fw, fh = face_box
    rx, ry, rw, rh = region
    inside = (rx <= fx + fw / 2 <= rx + rw and ry <= fy + fh / 2 <= ry + rh
              and fx <= rx + rw / 2 <= fx + fw and fy <= ry + rh / 2 <= fy + fh)
    return max(score, MIN_IOU if inside else 0.0)


def import_xmp(recognizer: FaceRecognizer, photos: Iterable[Path], confirm: bool = False,
               progress: Callable[[Path], None] | None = None) -> ImportReport:
    """Enrol the faces named in the XMP of ``photos`` (see the module's docstring).

    Args:
        recognizer: detects the faces and receives the enrolments.
        photos: photo files (their sidecars are found beside them).
        confirm: enrol despite the enrolment checks' concerns (a face like someone else's, a
            look-alike name: ``--yes``); without it those regions are reported, not enrolled.
        progress: told each photo as it is done.
    """
    from facerec.images import read_bytes
    from facerec.xmp import read_regions

    people = People(recognizer)
    report = ImportReport()
    for photo in photos:
        photo = Path(photo)
        regions, problems = read_regions(photo)
        report.failed += [(photo, p) for p in problems]
        if regions:
            report.photos += 1
            try:
                data = read_bytes(photo)
                decoded = recognizer.read(data, str(photo))
                faces = recognizer.find_faces(decoded)
                faces = recognizer.embed(faces) if faces else []
            except FaceRecError as exc:
                report.failed.append((photo, str(exc)))
                regions = []
            W, H = decoded.size if regions else (1, 1)
            taken: set[int] = set()
            for region in regions:
                box = (region.box[0] * W, region.box[1] * H, region.box[2] * W, region.box[3] * H)
                scored = [(_covers(f.box, box), i) for i, f in enumerate(faces) if i not in taken]
                best = max(scored, default=(0.0, -1))
                if best[0] < MIN_IOU:
                    report.no_face.append((photo, region.name))
                    continue
                taken.add(best[1])
                _enrol(people, report, photo, data, region.name, faces[best[1]], confirm)
        if progress:
            progress(photo)
    return report


def _enrol(people: People, report: ImportReport, photo: Path, data: bytes, name: str, face: Face,
           confirm: bool) -> None:
    """Enrol one region's face after the enrolment checks. The photo being enrolled for someone
    else already is no concern here: a group photo names each of its people on another face."""
    source = str(photo)
    try:
        name = people.resolve_name(name, confirm)
        (check,) = people.check(name, [(data, source)], faces=lambda *_: [face], shared=True)
        if check.kind == "enrolled":
            report.already.append((photo, name))
            return
        if check.skip:
            report.failed.append((photo, f"{name}: {check.skip}"))
            return
        if check.concerns and not confirm:
            report.to_confirm.append((photo, name, " ".join(check.concerns)))
            return
        done = people.enroll(name, data, source, face=face, confirm=True)
    except ConfirmationNeededError as exc:
        report.to_confirm.append((photo, name, " ".join(exc.concerns)))
        return
    except FaceRecError as exc:
        report.failed.append((photo, f"{name}: {exc}"))
        return
    (report.already if done.duplicate else report.enrolled).append((photo, name))
