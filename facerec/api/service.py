"""What both HTTP dialects call: recognition through :class:`facerec.pipeline.FaceRecognizer`,
every change to people through :class:`facerec.people.People` (so a person enrolled through
the API is named on Live at once, and the other way round).

Boxes are ``(x, y, w, h)`` floats in pixels of the photo as displayed (EXIF-rotated).
Raw scores are cosine similarities clipped to [0, 1], judged against
:attr:`FaceService.threshold`; the dialects report them through
:func:`facerec.api.scores.client_score`.

Image ids: CompreFace names each stored face by a UUID. facerec derives it from what it
already stores, ``uuid5(sha256 of the photo + ":" + person)``, so listing, deleting and
verifying by id work across restarts without another file.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from facerec.api.batcher import EmbedBatcher
from facerec.classify import cosine_to_score
from facerec.errors import EmptyGalleryError, FaceRecError, NoFaceError, PersonNotFoundError
from facerec.gallery import PhotoRecord
from facerec.types import UNKNOWN, Face, Match

if TYPE_CHECKING:
    from facerec.images import Photo
    from facerec.pipeline import FaceRecognizer

_ID_SPACE = uuid.UUID("5f0c7a3e-6a43-4c1b-9a55-3c1f2f6d2a10")


class ImageNotFoundError(FaceRecError):
    """No enrolled photo has the given image id."""

    exit_code = 4


class BadRequestError(FaceRecError):
    """A request lacks a part it needs or has a malformed value (the message says which).

    ``kind``: ``"part"`` (a missing file), ``"param"`` (a missing parameter) or ``"value"``
    (a malformed one)."""

    exit_code = 2

    def __init__(self, message: str, kind: str = "value") -> None:
        super().__init__(message)
        self.kind = kind


def image_id(record: PhotoRecord) -> str:
    """The stable UUID of an enrolled photo (its content hash and person)."""
    return str(uuid.uuid5(_ID_SPACE, f"{record.sha}:{record.person}"))


@dataclass(frozen=True)
class Candidate:
    """One enrolled person a face may be: ``name`` and raw ``score`` in [0, 1]."""

    name: str
    score: float


@dataclass(frozen=True)
class Recognition:
    """One face of a photo: ``face`` (box in displayed pixels), facerec's ``match``
    (``unknown`` below the threshold), and the ``candidates`` most similar people,
    best first (empty when nobody is enrolled)."""

    face: Face
    match: Match
    candidates: tuple[Candidate, ...]


class FaceService:
    """The recogniser and the people service behind the HTTP routes (one per process,
    shared by every request; thread-safe as they are).

    Args:
        rec: the process's recogniser (models loaded once).
        people: the person-lifecycle service; default ``People(rec)``.
        history: record named faces in the who-was-here history (as Live does).
    """

    def __init__(self, rec: "FaceRecognizer", people: Any = None, history: bool = True,
                 batch: bool = True, max_batch: int = 32, max_queue: int = 256) -> None:
        self.rec = rec
        if people is None:
            from facerec.people import People

            people = People(rec)
        self.people = people
        self.history = history
        self.batcher = EmbedBatcher(rec.path.embed_crops, max_batch, max_queue) if batch else None

    def embed(self, faces: list[Face]) -> list[Face]:
        """Aligned faces with their identity vectors, embedded in one batch with the faces of
        every other request waiting at the moment (:mod:`facerec.api.batcher`)."""
        if not faces:
            return []
        if self.batcher is None:
            return self.rec.embed(faces)
        vecs = self.batcher.embed(np.stack([f.crop for f in faces]))
        return [f.replace(vector=v) for f, v in zip(faces, vecs)]

    def close(self) -> None:
        """End the embedding thread (after what is queued)."""
        if self.batcher is not None:
            self.batcher.close()

    @property
    def threshold(self) -> float:
        """The recognition threshold in use (calibrated unless set)."""
        return self.rec.threshold

    # -- faces -----------------------------------------------------------------------

    def _photo_faces(self, data: bytes, name: str, limit: int = 0,
                     min_score: float | None = None) -> tuple["Photo", list[Face]]:
        photo = self.rec.read(data, name)
        faces = self.rec.find_faces(photo)
        if min_score is not None:
            faces = [f for f in faces if f.score >= min_score]
        faces.sort(key=lambda f: -f.area)  # the biggest faces first, as CompreFace's `limit`
        return photo, faces[:limit] if limit > 0 else faces

    def detect(self, data: bytes, name: str = "file", limit: int = 0,
               min_score: float | None = None) -> list[Face]:
        """Every face in photo bytes (largest first; at most ``limit`` when > 0; detector
        score at least ``min_score``), aligned but not embedded.

        Raises:
            ImageError: not a photo, too large, truncated.
        """
        return self._photo_faces(data, name, limit, min_score)[1]

    def recognize(self, data: bytes, name: str = "file", limit: int = 0, min_score: float | None = None,
                  top: int = 1, source: str | None = None) -> list[Recognition]:
        """Who every face in photo bytes is (largest face first), with the ``top`` most
        similar people each; named faces enter the who-was-here history when ``history``,
        with ``source`` (the API key's name; ``"api"`` without keys) as where they were seen.

        Raises:
            ImageError: not a photo, too large, truncated.
        """
        photo, faces = self._photo_faces(data, name, limit, min_score)
        faces = self.embed(faces)
        if not faces:
            return []
        try:
            matcher = self.rec.refresh()
        except EmptyGalleryError:
            return [Recognition(f, Match(UNKNOWN, 0.0), ()) for f in faces]
        X = np.stack([f.vector for f in faces])
        matches = matcher.match(X)
        sims = cosine_to_score(matcher.similarities(X))
        out = []
        for i, (face, match) in enumerate(zip(faces, matches)):
            order = np.argsort(-sims[i])[:max(1, top)]
            out.append(Recognition(face, match, tuple(Candidate(str(matcher.classes_[j]), float(sims[i, j]))
                                                      for j in order)))
        self._remember(photo, out, source or "api")
        return out

    def _remember(self, photo: "Photo", results: list[Recognition], source: str) -> None:
        if not self.history:
            return
        named = [(r.match.name, tuple(v * photo.scale for v in r.face.box)) for r in results if r.match.known]
        if named:
            from facerec import history

            history.writer(self.rec.gallery.root).observe(named, photo.pixels, source=source)

    def compare(self, data1: bytes, data2: bytes) -> float:
        """Raw similarity of the largest face of two photos, in [0, 1].

        Raises:
            NoFaceError: a photo has no face; ImageError.
        """
        vecs = []
        for data, name in ((data1, "image1"), (data2, "image2")):
            faces = self.detect(data, name, limit=1)
            if not faces:
                raise NoFaceError(f"{name}: no face found")
            vecs.append(self.embed(faces)[0].vector)
        return float(cosine_to_score(np.float32(np.dot(vecs[0], vecs[1]))))

    def verify_photos(self, source: bytes, target: bytes, limit: int = 0,
                      min_score: float | None = None) -> tuple[Face, list[tuple[Face, float]]]:
        """The largest face of ``source`` and every face of ``target`` (largest first) with
        its raw similarity to it (CompreFace's verification service).

        Raises:
            NoFaceError: either photo has no face; ImageError.
        """
        src = self.detect(source, "source_image", 1, min_score)
        if not src:
            raise NoFaceError("source_image: no face")
        vec = self.embed(src)[0]
        faces = self.embed(self.detect(target, "target_image", limit, min_score))
        if not faces:
            raise NoFaceError("target_image: no face")
        return vec, [(f, float(cosine_to_score(np.float32(np.dot(f.vector, vec.vector))))) for f in faces]

    # -- people ----------------------------------------------------------------------

    def subjects(self) -> list[str]:
        """Names of everyone enrolled (with or without photos), sorted."""
        return sorted(p.name for p in self.people.list())

    def _require(self, name: str) -> str:
        if name not in set(self.subjects()):
            raise PersonNotFoundError(f"subject {name!r} not found")
        return name

    def add_subject(self, name: str) -> str:
        """Create an empty person; returns the name as stored."""
        return self.people.add_person(name)

    def rename_subject(self, old: str, new: str) -> str:
        """Rename ``old`` to ``new``, merging into ``new`` when it exists (CompreFace's rule)."""
        self._require(old)
        return self.people.rename(old, new, merge=True)

    def delete_subject(self, name: str) -> str:
        """Forget a person everywhere (photos, vectors, history).

        Raises:
            PersonNotFoundError; ForgetIncompleteError naming what is left.
        """
        self.people.forget(self._require(name))
        return name

    def delete_all_subjects(self) -> int:
        """Forget everyone; returns how many people were forgotten."""
        names = self.subjects()
        for name in names:
            self.people.forget(name)
        return len(names)

    def enroll(self, name: str, data: bytes, source: str = "file", largest: bool = False) -> tuple[PhotoRecord, bool]:
        """Add a photo of ``name`` (created if new); returns its record and whether it
        was already enrolled. An API client cannot answer the enrolment checks'
        questions, so a look-alike or poor photo is saved as the CLI's ``--yes`` would.

        Raises:
            ImageError, NoFaceError, ManyFacesError (unless ``largest``), InvalidNameError:
            nothing was changed.
        """
        done = self.people.enroll(name, data, source, largest=largest, confirm=True)
        return done.record, bool(done.duplicate)

    def photos(self, subject: str | None = None) -> list[PhotoRecord]:
        """Enrolled photos (of ``subject`` when given), by person then file name.

        Raises:
            PersonNotFoundError: ``subject`` is not enrolled.
        """
        if subject is not None:
            self._require(subject)
        return sorted(self.people.photos(subject), key=lambda r: (r.person, r.path.name))

    def find_image(self, image: str) -> PhotoRecord:
        """The enrolled photo with id ``image``.

        Raises:
            ImageNotFoundError.
        """
        for record in self.people.photos():
            if image_id(record) == image:
                return record
        raise ImageNotFoundError(f"image {image!r} not found")

    def delete_image(self, image: str) -> PhotoRecord:
        """Remove the enrolled photo with id ``image``; returns what it was."""
        record = self.find_image(image)
        self.people.remove_photo(record.person, record.path.name)
        return record

    def delete_images(self, ids: list[str]) -> list[tuple[str, PhotoRecord]]:
        """Remove the enrolled photos with these ids (unknown ids are skipped); returns
        ``(id, record)`` of each removed."""
        done = []
        for i in ids:
            try:
                done.append((i, self.delete_image(i)))
            except ImageNotFoundError:
                continue
        return done

    def delete_photos(self, subject: str | None = None) -> int:
        """Remove every photo of ``subject`` (everyone's when ``None``), keeping the
        people themselves; returns how many photos were removed."""
        records = self.photos(subject)
        for r in records:
            self.people.remove_photo(r.person, r.path.name)
        return len(records)

    def verify(self, image: str, data: bytes, name: str = "file", limit: int = 0,
               min_score: float | None = None) -> list[tuple[Face, float]]:
        """Every face of photo bytes (largest first) with its raw similarity to the
        enrolled face ``image``.

        Raises:
            ImageNotFoundError; ImageError.
        """
        target = self._vector_of(self.find_image(image))
        faces = self.embed(self._photo_faces(data, name, limit, min_score)[1])
        return [(f, float(cosine_to_score(np.float32(np.dot(f.vector, target))))) for f in faces]

    def _vector_of(self, record: PhotoRecord) -> np.ndarray:
        """The identity vector of an enrolled photo's face, embedded again from its file
        (the face whose box overlaps the enrolled box most; the largest without one)."""
        from facerec.images import read_bytes
        from facerec.types import iou

        faces = self.rec.find_faces(self.rec.read(read_bytes(record.path), record.path.name))
        if record.box is not None:
            faces = [f for f in faces if iou(f.box, record.box) >= 0.3]
            faces.sort(key=lambda f: -iou(f.box, record.box))
        else:
            faces.sort(key=lambda f: -f.area)
        if not faces:
            raise ImageNotFoundError(f"image {image_id(record)!r} has no usable face")
        return self.rec.embed(faces[:1])[0].vector

    # -- the native API ----------------------------------------------------------------

    def enroll_checked(self, name: str, photos: list[tuple[bytes, str]], confirm: bool = False,
                       largest: bool = False) -> "EnrolResult":
        """Enrol photos of ``name`` after the enrolment checks (:meth:`People.check`), as the
        CLI's ``enroll`` does: a photo with concerns (a face like someone else's, unlike the
        person's own photos, a photo enrolled for someone else, a poor face, a name like an
        enrolled one) is saved only with ``confirm``; without it it comes back
        ``needs_confirmation`` with its concerns. Photos that cannot be enrolled (no face,
        several faces without ``largest``, unreadable) come back ``refused`` with why.

        Raises:
            InvalidNameError: nothing was changed.
        """
        from facerec.errors import ConfirmationNeededError
        from facerec.gallery import validate_name

        name_concerns: tuple[str, ...] = ()
        try:
            target = self.people.resolve_name(name, confirm)
        except ConfirmationNeededError as exc:
            target, name_concerns = validate_name(name), exc.concerns
        checks = self.people.check(target, photos, largest=largest,
                                   faces=lambda data, source, _sha: self.embed(self.rec.find_faces(
                                       self.rec.read(data, source))))
        outcomes = []
        for (data, source), check in zip(photos, checks):
            concerns = tuple(check.concerns) + name_concerns
            if check.skip is not None:
                status = {"enrolled": "already_enrolled", "duplicate": "duplicate"}.get(check.kind, "refused")
                outcomes.append(EnrolOutcome(source, status, reason=check.skip, kind=check.kind))
            elif concerns and not confirm:
                outcomes.append(EnrolOutcome(source, "needs_confirmation", concerns=concerns, kind="confirm"))
            else:
                done = self.people.enroll(target, data, source, face=check.face, confirm=True)
                outcomes.append(EnrolOutcome(source, "already_enrolled" if done.duplicate else "saved",
                                             concerns=concerns, record=done.record, kind=check.kind))
        return EnrolResult(target, tuple(outcomes))

    def rename_person(self, old: str, new: str, merge: bool = False) -> tuple[str, bool]:
        """Rename ``old`` to ``new``; to an enrolled name (or one it can be mistaken for) only
        with ``merge``, and then the two become one. Returns the name as stored and whether
        it was a merge.

        Raises:
            PersonNotFoundError, InvalidNameError, PersonExistsError (without ``merge``).
        """
        self._require(old)
        before = set(self.subjects())
        stored = self.people.rename(old, new, merge=merge)
        return stored, stored in before and stored != old

    def forget(self, name: str) -> Any:
        """Forget ``name`` everywhere; returns the :class:`facerec.people.ForgetReport`.

        Raises:
            PersonNotFoundError; ForgetIncompleteError (its ``report`` says what is left).
        """
        return self.people.forget(name)


@dataclass(frozen=True)
class EnrolOutcome:
    """What became of one photo sent to :meth:`FaceService.enroll_checked`.

    Attributes:
        source: the photo's file name as sent.
        status: ``saved``, ``already_enrolled``, ``duplicate`` (the same photo earlier in the
            request: saved once), ``needs_confirmation`` or ``refused``.
        concerns: what must be confirmed (``needs_confirmation``), or what was confirmed.
        reason: why it was refused or skipped.
        record: the enrolled photo (``saved``, ``already_enrolled`` after saving).
        kind: :attr:`facerec.people.PhotoCheck.kind`.
    """

    source: str
    status: str
    concerns: tuple[str, ...] = ()
    reason: str | None = None
    record: PhotoRecord | None = None
    kind: str = "ready"


@dataclass(frozen=True)
class EnrolResult:
    """Every photo of one enrolment request: ``person`` (the name as stored) and each outcome."""

    person: str
    photos: tuple[EnrolOutcome, ...]
