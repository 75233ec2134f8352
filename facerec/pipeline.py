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

from facerec.align import face_crop
from facerec.detect import Detector, downscale, make_detector, rescale_face
from facerec.embed import Embedder, import_tensorflow, load_embedder
from facerec.errors import EmptyGalleryError, GalleryBusyError, ImageError, ManyFacesError, NoFaceError
from facerec.gallery import Gallery, PhotoRecord
from facerec.storage import content_hash
from facerec.images import Photo, decode_photo
from facerec.quality import Quality, face_quality
from facerec.settings import Settings
from facerec.types import Face, Match

if TYPE_CHECKING:  # scikit-learn is imported only when a matcher is fitted
    from facerec.classify import CosineMatcher


def iou(a, b) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


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


def decode_for_detection(data: bytes, name: str, settings: Settings) -> Photo:
    """Decode a photo at the size recognition needs: a large JPEG is reduced in the decoder
    (DCT scaling by 1/2, 1/4 or 1/8) to no less than 3/4 of the detector's working size
    (``settings.max_detect_side``): a 12 MP photo is decoded at 1008x756 (1/4), in 44 ms
    instead of 760 ms in full, and never exists in full in memory. A photo the decoder cannot
    reduce (PNG, TIFF, ...) and over twice that size is downscaled to the working size
    right after decoding, so no photo holds more than a few megabytes while it waits in
    the tagger's queues."""
    side = settings.max_detect_side * 3 // 4
    photo = decode_photo(data, name, side)
    if max(photo.pixels.shape[:2]) > 2 * side:
        photo = Photo(downscale(photo.pixels, settings.max_detect_side)[0], photo.size)
    return photo


def align_faces(photo: Photo, faces: list[Face], size: int, zoom: float) -> list[Face]:
    """``faces`` (displayed-photo pixels) with aligned ``(size, size, 3)`` crops cut from ``photo.pixels``."""
    s = photo.scale
    out = []
    for f in faces:
        g = rescale_face(f, 1.0 / s)  # into the decoded pixels
        out.append(f.replace(crop=face_crop(photo.pixels, g.box, g.landmarks, size, zoom)))
    return out


def find_faces(photo: Photo, detector: Detector, size: int, zoom: float, retry: bool = False) -> list[Face]:
    """Every face of a decoded photo, aligned: boxes and landmarks in displayed-photo pixels,
    crops ``(size, size, 3)`` uint8 cut from the decoded pixels (most confident first).
    ``retry``: when none is found, look again with the detector's ``finer()`` variant."""
    return find_faces_many([photo], detector, size, zoom, retry)[0]


def find_faces_many(photos: list[Photo], detector: Detector, size: int, zoom: float,
                    retry: bool = False) -> list[list[Face]]:
    """:func:`find_faces` for several photos, detected together (batched over same-size photos)."""
    found = detector.detect_many([p.pixels for p in photos], [p.scale for p in photos])
    empty = [i for i, faces in enumerate(found) if not faces]
    if retry and empty and hasattr(detector, "finer"):
        again = detector.finer().detect_many([photos[i].pixels for i in empty], [photos[i].scale for i in empty])
        for i, faces in zip(empty, again):
            found[i] = faces
    return [[rescale_face(f, p.scale).replace(crop=face_crop(p.pixels, f.box, f.landmarks, size, zoom))
             for f in faces] for p, faces in zip(photos, found)]


@dataclass(frozen=True)
class Enrolled:
    """Outcome of enrolling one photo."""

    record: PhotoRecord
    face: Face
    duplicate: bool
    quality: Quality | None = None


class Models:
    """A detector and an embedder, each built from ``settings`` on first use (thread-safe,
    each under its own lock so both can load at once). No gallery: Ray actors and worker
    processes hold one too.

    Args:
        settings: decides the detector and the embedder.
        detector, embedder: use these instead of building them (tests).
    """

    def __init__(self, settings: Settings, detector: Detector | None = None,
                 embedder: Embedder | None = None) -> None:
        self.settings = settings
        self._detector, self._embedder = detector, embedder
        self._detector_lock, self._embedder_lock = threading.Lock(), threading.Lock()

    @property
    def detector(self) -> Detector:
        if self._detector is None:  # the lock only while loading, not on every photo or frame
            with self._detector_lock:
                if self._detector is None:
                    import_tensorflow()
                    self._detector = make_detector(self.settings)
        return self._detector

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            with self._embedder_lock:
                if self._embedder is None:
                    import_tensorflow()
                    self._embedder = load_embedder(self.settings)
        return self._embedder


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
        """Faces with their aligned crops at the embedder's input size."""
        e = self.embedder
        return [f.replace(crop=face_crop(image, f.box, f.landmarks, e.input_size, e.backbone.zoom)) for f in faces]

    def embed(self, faces: list[Face]) -> list[Face]:
        """Faces (with crops) with their identity vectors."""
        if not faces:
            return []
        vecs = self.embedder.embed(np.stack([f.crop for f in faces]), flip=self.settings.flip,
                                   batch_size=self.settings.batch_size)
        return [f.replace(vector=v) for f, v in zip(faces, vecs)]

    def faces(self, image: np.ndarray) -> list[Face]:
        """Every face in an RGB uint8 photo, detected, aligned and embedded."""
        return self.embed(self.align(image, self.detector.detect(image)))

    def read(self, data: bytes, name: str = "photo") -> Photo:
        """Photo bytes decoded for recognition (see :func:`decode_for_detection`)."""
        return decode_for_detection(data, name, self.settings)

    def find_faces(self, photo: Photo) -> list[Face]:
        """Every face of a decoded photo, aligned, in displayed-photo pixels (see :func:`find_faces`)."""
        e = self.embedder
        return find_faces(photo, self.detector, e.input_size, e.backbone.zoom, self.settings.retry_no_face)

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
            from facerec.classify import CosineMatcher
            from facerec.thresholds import recognition_threshold

            calibrated = recognition_threshold(self.settings.replace(threshold=None), names, self.embedder.threshold)
            with self._lock:
                self._gallery_threshold = calibrated
            matcher = CosineMatcher(threshold=self.threshold).fit(X, names)
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
        found = self.detector.detect_many(images)
        faces = self.embed([f for image, fs in zip(images, found) for f in self.align(image, fs)])
        matches = self.match(faces)
        out, i = [], 0
        for fs in found:
            out.append(list(zip(faces[i:i + len(fs)], matches[i:i + len(fs)])))
            i += len(fs)
        return out

    # -- enrolment ---------------------------------------------------------------------

    def enroll(self, name: str, data: bytes, source: str = "photo", largest: bool = False,
               face: Face | None = None, suffix: str | None = None) -> Enrolled:
        """Enrol one photo of ``name``.

        Args:
            name: the person (validated; created if new).
            data: the photo file's bytes (stored unchanged).
            source: the photo's name for messages.
            largest: with several faces, take the largest instead of refusing.
            face: an already detected face of this photo to use (the app's face picker), in
                displayed-photo pixels; with its crop or vector set, the photo is not decoded again.
            suffix: file extension to keep; guessed from ``source`` by default.

        Raises:
            ImageError, NoFaceError, ManyFacesError, InvalidNameError. The gallery
            is unchanged when anything is raised.
        """
        self.gallery.person_dir(name)  # validate before any work
        if face is None or (face.vector is None and face.crop is None):
            photo = self.read(data, source)
            e = self.embedder
            if face is None:
                face = pick_face(self.find_faces(photo), largest, source)
            else:
                face = align_faces(photo, [face], e.input_size, e.backbone.zoom)[0]
        if face.vector is None:
            face = self.embed([face])[0]
        duplicate = self.gallery.has_photo(name, content_hash(data))
        rec = self.gallery.add_photo(name, data, face.box, face.vector, self.embedder.key,
                                     suffix or Path(source).suffix or ".jpg")
        from facerec import photonames

        photonames.remember(self.gallery.root, rec.sha, source)  # shown on the People page
        return Enrolled(rec, face, duplicate, face_quality(face) if face.crop is not None else None)

    def rename(self, old: str, new: str) -> str:
        """Rename a person in the gallery and in the who-was-here history; returns the new
        name as stored (validated, NFC).

        Raises:
            InvalidNameError, PersonNotFoundError, PersonExistsError: nothing was changed.
        """
        from facerec import history
        from facerec.gallery import validate_name

        self.gallery.rename_person(old, new)
        new = validate_name(new)
        history.rename(self.gallery.root, validate_name(old), new)
        return new

    def remove_photo(self, name: str, file_name: str) -> None:
        """Remove one enrolled photo: its file, row and vector, its cached pictures and its
        remembered original name."""
        from facerec import photonames, thumbs

        sha = next((r.sha for r in self.gallery.photos(name) if r.path.name == file_name), None)
        self.gallery.remove_photo(name, file_name)
        if sha is not None and not any(r.sha == sha for r in self.gallery.photos()):
            thumbs.forget(self.settings.cache_dir, [sha])
            photonames.forget(self.gallery.root, [sha])

    def forget(self, name: str) -> int:
        """Forget a person everywhere facerec keeps something of them: photos, vectors under
        every base, tag cache entries and cluster groups (:meth:`Gallery.remove_person`),
        their who-was-here history, cached face pictures and original file names.
        Returns the number of photos removed.

        Raises:
            PersonNotFoundError; ForgetIncompleteError naming what could not be deleted.
        """
        from facerec import history, photonames, thumbs

        shas = [r.sha for r in self.gallery.photos(name)]
        n = self.gallery.remove_person(name, tag_caches=[self.settings.cache_dir / "tags.sqlite"])
        history.forget(self.gallery.root, name)
        kept = {r.sha for r in self.gallery.photos()}  # the same photo enrolled for someone else
        gone = [s for s in shas if s not in kept]
        thumbs.forget(self.settings.cache_dir, gone)
        photonames.forget(self.gallery.root, gone)
        return n
