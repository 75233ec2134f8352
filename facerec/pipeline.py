"""The whole recogniser: detect -> align -> embed -> match, over one gallery.

:class:`FaceRecognizer` loads its models lazily, refits its matcher whenever
the gallery's version changes, and is safe to share between threads (the app
keeps one per process).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from facerec.detect import Detector
from facerec.embed import Embedder
from facerec.errors import DiskFullError, EmptyGalleryError, GalleryBusyError, ImageError, ManyFacesError, NoFaceError
from facerec.facepath import (FacePath, Models, align_faces, decode_for_detection, find_faces,  # noqa: F401
                              find_faces_many, fit_matcher, match_threshold)
from facerec.gallery import Gallery, PhotoRecord
from facerec.storage import content_hash
from facerec.images import Photo
from facerec.quality import Quality, face_quality
from facerec.settings import Settings
from facerec.types import Face, Match, iou

if TYPE_CHECKING:  # scikit-learn is imported only when a matcher is fitted
    from facerec.classify import CosineMatcher


def pick_face(faces: list[Face], largest: bool = False, source: str = "photo") -> Face:
    """The single face of a photo meant for enrolment.

    Raises:
        NoFaceError: no face.
        ManyFacesError: several faces and ``largest`` is false.
    """
    if not faces:
        raise NoFaceError(f"{source}: no face found")
    if len(faces) > 1 and not largest:
        raise ManyFacesError(f"{source}: {len(faces)} faces found; use a photo of one person (or --largest)")
    return max(faces, key=lambda f: f.area)


@dataclass(frozen=True)
class Enrolled:
    """Outcome of enrolling one photo."""

    record: PhotoRecord
    face: Face
    duplicate: bool
    quality: Quality | None = None


class FaceRecognizer:
    """Detects, embeds and names faces against a :class:`Gallery`.

    Args:
        settings: configuration (gallery folder, backbone, detector, thresholds).
        detector: override the detector (tests); default from settings.
        embedder: override the embedder (tests); default from settings.
    """

    def __init__(self, settings: Settings, detector: Detector | None = None,
                 embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.gallery = Gallery(settings.gallery)
        self.models = Models(settings, detector, embedder)
        self.path = FacePath(settings, self.models)  # detect -> align -> embed, shared with the tagger's workers
        self._lock = threading.RLock()  # guards the fitted matcher; held only for moments
        self._refresh_lock = threading.Lock()  # one refresh (sync, embedding, fitting) at a time
        self._matcher: CosineMatcher | None = None
        self._fitted_version: int | None = None
        self._preparing: tuple[int, int] | None = None
        self._gallery_threshold: float | None = None  # calibrated for the fitted gallery

    @property
    def detector(self) -> Detector:
        return self.models.detector

    @property
    def embedder(self) -> Embedder:
        return self.models.embedder

    @property
    def threshold(self) -> float:
        """The recognition threshold in use: the setting, else the one calibrated for the base
        and head and, where the base ships a stranger curve, for the gallery as last fitted
        (:func:`facerec.thresholds.recognition_threshold`)."""
        if self.settings.threshold is not None:
            return self.settings.threshold
        with self._lock:
            fitted = self._gallery_threshold
        return self.embedder.threshold if fitted is None else fitted

    # -- faces -----------------------------------------------------------------------

    def align(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        """Faces with their aligned crops at the embedder's input size (:meth:`FacePath.align`)."""
        return self.path.align(image, faces)

    def embed(self, faces: list[Face]) -> list[Face]:
        """Faces (with crops) with their identity vectors (:meth:`FacePath.embed`)."""
        return self.path.embed(faces)

    def faces(self, image: np.ndarray) -> list[Face]:
        """Every face in an RGB uint8 photo, detected, aligned and embedded."""
        return self.path.image_faces([image])[0]

    def read(self, data: bytes, name: str = "photo") -> Photo:
        """Photo bytes decoded for recognition (see :func:`decode_for_detection`)."""
        return self.path.read(data, name)

    def find_faces(self, photo: Photo) -> list[Face]:
        """Every face of a decoded photo, aligned, in displayed-photo pixels (see :func:`find_faces`)."""
        return self.path.locate([photo], self.settings.retry_no_face)[0]

    # -- matching ----------------------------------------------------------------------

    @property
    def preparing(self) -> tuple[int, int] | None:
        """``(done, total)`` gallery photos embedded by a refresh in progress, else ``None``."""
        return self._preparing

    def refresh(self, progress: Callable[[Iterable], Iterable] | None = None, wait: bool = True) -> CosineMatcher:
        """Embed gallery photos that lack vectors for this embedder, then refit if anything changed.

        Photos dropped into person folders by hand are picked up here; ones with
        no usable face are left in place but not used. The matcher is marked with the
        gallery version read together with its vectors, so a change made meanwhile by
        anyone is seen by the next call.

        Only one refresh runs at a time; while one is embedding, other threads keep
        the matcher they have (a moment out of date) instead of waiting for it. With
        no matcher yet (the first refresh, e.g. after a base switch), they wait, or
        with ``wait=False`` get :class:`GalleryBusyError` with the progress.
        """
        with self._lock:
            matcher, fitted = self._matcher, self._fitted_version
        if matcher is not None and self.gallery.version == fitted:
            matcher.threshold = self.threshold
            return matcher
        if not self._refresh_lock.acquire(blocking=matcher is None and wait):
            if matcher is not None:
                matcher.threshold = self.threshold
                return matcher
            done, total = self._preparing or (0, 0)
            raise GalleryBusyError(f"the gallery is being prepared for this base network ({done} of {total} photos "
                                   "embedded); try again in a moment")
        try:
            with self._lock:
                if self._matcher is not None and self.gallery.version == self._fitted_version:
                    return self._matcher  # another thread refitted while this one waited
            self.gallery.sync()
            key = self.embedder.key
            version, X, names, missing = self.gallery.snapshot(key)
            if missing:
                self._preparing = (0, len(missing))
                for i, rec in enumerate(progress(missing) if progress else missing, start=1):
                    self._embed_record(rec, key)
                    self._preparing = (i, len(missing))
                version, X, names, _ = self.gallery.snapshot(key)
            if len(X) == 0:
                raise EmptyGalleryError(
                    f"nobody is enrolled in {self.gallery.root}; enrol people first (facerec enroll)")
            threshold, calibrated = match_threshold(self.settings, names, self.embedder.threshold)
            with self._lock:
                self._gallery_threshold = calibrated
            matcher = fit_matcher(X, names, threshold)
            with self._lock:
                self._matcher, self._fitted_version = matcher, version
            return matcher
        finally:
            self._preparing = None
            self._refresh_lock.release()

    def _embed_record(self, rec: PhotoRecord, key: str) -> None:
        try:
            photo = self.read(rec.path.read_bytes(), str(rec.path))
        except (OSError, ImageError):
            return
        faces = self.find_faces(photo)
        if rec.box is not None and faces:
            face = max(faces, key=lambda f: iou(f.box, rec.box))
            if iou(face.box, rec.box) < 0.3:
                return
        elif len(faces) >= 1:
            face = max(faces, key=lambda f: f.area)
        else:
            return
        face = self.embed([face])[0]
        self.gallery.set_face(rec, face.box, face.vector, key)

    def match(self, faces: list[Face]) -> list[Match]:
        """Names for embedded faces (``unknown`` for strangers)."""
        if not faces:
            return []
        matcher = self.refresh()
        return matcher.match(np.stack([f.vector for f in faces]))

    def identify(self, image: np.ndarray) -> list[tuple[Face, Match]]:
        """Every face in a photo with who it is, most confident detection first."""
        return self.identify_many([image])[0]

    def identify_photo(self, photo: Photo) -> list[tuple[Face, Match]]:
        """Every face of a decoded photo with who it is; boxes in displayed-photo pixels."""
        faces = self.embed(self.find_faces(photo))
        return list(zip(faces, self.match(faces)))

    def identify_many(self, images: list[np.ndarray]) -> list[list[tuple[Face, Match]]]:
        """:meth:`identify` for several photos: detection batched where the detector
        can (same-size photos), all faces embedded and matched together."""
        groups = self.path.image_faces(images)
        matches = iter(self.match([f for fs in groups for f in fs]))
        return [[(f, next(matches)) for f in fs] for fs in groups]

    # -- enrolment ---------------------------------------------------------------------

    def enrolment_face(self, data: bytes, source: str = "photo", face: Face | None = None,
                       largest: bool = False) -> Face:
        """The face of a photo to enrol, aligned and embedded: ``face`` (an already detected
        face in displayed-photo pixels, e.g. picked in the app; with its vector set nothing is
        decoded), or the only face found (with ``largest``: the largest).

        Raises:
            ImageError, NoFaceError, ManyFacesError.
        """
        if face is None or (face.vector is None and face.crop is None):
            photo = self.read(data, source)
            e = self.embedder
            if face is None:
                face = pick_face(self.find_faces(photo), largest, source)
            else:
                face = align_faces(photo, [face], e.input_size, e.backbone.zoom)[0]
        if face.vector is None:
            face = self.embed([face])[0]
        return face

    def enroll(self, name: str, data: bytes, source: str = "photo", largest: bool = False,
               face: Face | None = None, suffix: str | None = None) -> Enrolled:
        """Enrol one photo of ``name`` as it is, with no check for mistakes (front ends use
        ``facerec.people.People.enroll``, which makes them first).

        Args:
            name: the person (validated; created if new).
            data: the photo file's bytes (stored unchanged).
            source: the photo's name for messages.
            largest: with several faces, take the largest instead of refusing.
            face: see :meth:`enrolment_face`.
            suffix: file extension to keep; guessed from ``source`` by default.

        Raises:
            ImageError, NoFaceError, ManyFacesError, InvalidNameError, DiskFullError. The
            gallery is unchanged when anything is raised.
        """
        self.gallery.person_dir(name)  # validate before any work
        face = self.enrolment_face(data, source, face, largest)
        duplicate = self.gallery.has_photo(name, content_hash(data))
        rec = self.gallery.add_photo(name, data, face.box, face.vector, self.embedder.key,
                                     suffix or Path(source).suffix or ".jpg")
        from facerec import photonames

        try:
            photonames.remember(self.gallery.root, rec.sha, source)  # shown on the People page
        except DiskFullError:
            pass  # the photo is enrolled; only its original name is not shown
        return Enrolled(rec, face, duplicate, face_quality(face) if face.crop is not None else None)
