"""The one face path: decode -> detect -> align -> embed -> match, written once.

Photos (:class:`facerec.pipeline.FaceRecognizer`), video frames (:mod:`facerec.video`),
the tagger's workers (:class:`facerec.tagging.PhotoWorker`) and evaluation
(:mod:`facerec.evaluate`) all go through :class:`FacePath`; the matcher and its
threshold are built by :func:`match_threshold` and :func:`fit_matcher` only.

Coordinates: boxes are ``(x, y, w, h)`` and landmarks ``(5, 2)`` ``(x, y)`` float32, in
the pixels of the photo *as displayed* (EXIF-rotated) unless said otherwise; crops are
RGB uint8 ``(S, S, 3)`` at the embedder's input size ``S``; vectors are ``(D,)`` float32,
L2-normalised.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable, Generic, Sequence, TypeVar

import numpy as np

from facerec.align import face_crop
from facerec.detect import Detector, downscale, make_detector, rescale_face
from facerec.embed import Embedder, load_embedder
from facerec.images import Photo, decode_photo
from facerec.settings import Settings
from facerec.types import Face

if TYPE_CHECKING:  # scikit-learn is imported only when a matcher is fitted
    from facerec.classify import CosineMatcher

T = TypeVar("T")


class Lazy(Generic[T]):
    """A value built by ``build`` on first :meth:`get`, once, safely from several threads
    (the lock is taken only while nothing is built yet, not on every use).

    Args:
        build: makes the value (called at most once, unless it raises).
        value: an already built value (``build`` is then never called).
    """

    def __init__(self, build: Callable[[], T], value: T | None = None) -> None:
        self._build = build
        self._value = value
        self._lock = threading.Lock()

    def get(self) -> T:
        """The value, built now if it is the first call."""
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value

    @property
    def built(self) -> bool:
        """Whether the value exists (no building)."""
        return self._value is not None


class Models:
    """A detector and an embedder, each built from ``settings`` on first use (thread-safe,
    each on its own so both can load at once). No gallery: Ray actors and worker processes
    hold one too.

    Args:
        settings: decides the detector and the embedder.
        detector, embedder: use these instead of building them (tests, evaluation).
    """

    def __init__(self, settings: Settings, detector: Detector | None = None,
                 embedder: Embedder | None = None) -> None:
        self.settings = settings
        self._detector: Lazy[Detector] = Lazy(self._make_detector, detector)
        self._embedder: Lazy[Embedder] = Lazy(self._make_embedder, embedder)

    def _make_detector(self) -> Detector:
        return make_detector(self.settings)  # imports TensorFlow (one thread at a time) only if it needs it

    def _make_embedder(self) -> Embedder:
        return load_embedder(self.settings)  # LiteRT for the default base: no TensorFlow

    @property
    def detector(self) -> Detector:
        return self._detector.get()

    @property
    def embedder(self) -> Embedder:
        return self._embedder.get()


# -- decode and locate ----------------------------------------------------------------

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


# -- match -----------------------------------------------------------------------------

def match_threshold(settings: Settings, names: Sequence[str], base_threshold: float) -> tuple[float, float]:
    """``(threshold in use, calibrated threshold)`` for a gallery whose enrolled vectors are
    named ``names`` (one name per vector): the setting when there is one, else the value
    calibrated for the base and head (``base_threshold``: the loaded embedder's own) and,
    where the base (or its head) has a stranger curve, for the gallery's photos per person."""
    from facerec.thresholds import recognition_threshold

    calibrated = recognition_threshold(settings.replace(threshold=None), names, base_threshold)
    return (calibrated if settings.threshold is None else float(settings.threshold)), calibrated


def fit_matcher(X: np.ndarray, names: Sequence[str], threshold: float) -> "CosineMatcher":
    """The gallery's matcher: ``X`` ``(N, D)`` float32 enrolled vectors named ``names``,
    ``unknown`` below ``threshold``."""
    from facerec.classify import CosineMatcher

    return CosineMatcher(threshold=threshold).fit(X, names)


# -- the path --------------------------------------------------------------------------

class FacePath:
    """Detect -> align -> embed for photos, images and video frames, over shared :class:`Models`.

    Safe to share between threads: a detector that is not ``thread_safe`` runs one call at a time.

    Args:
        settings: decoding size, detection retry, flip and batch size.
        models: the detector and embedder (built on first use); default from ``settings``.
    """

    def __init__(self, settings: Settings, models: Models | None = None) -> None:
        self.settings = settings
        self.models = models or Models(settings)
        self._detect_lock = threading.Lock()

    @property
    def detector(self) -> Detector:
        return self.models.detector

    @property
    def embedder(self) -> Embedder:
        return self.models.embedder

    def read(self, data: bytes, name: str = "photo") -> Photo:
        """Photo bytes decoded for recognition (:func:`decode_for_detection`)."""
        return decode_for_detection(data, name, self.settings)

    def locate(self, photos: Sequence[Photo], retry: bool | None = None) -> list[list[Face]]:
        """Every face of each decoded photo, aligned (:func:`find_faces_many`); boxes in
        displayed-photo pixels, crops at the embedder's input size.

        ``retry``: look again with the detector's ``finer()`` variant in photos where none was
        found; ``None`` (tagging, ``identify``, the app, enrolment alike): ``settings.retry_no_face``,
        so a photo gives the same faces whichever way it comes in."""
        retry = self.settings.retry_no_face if retry is None else retry
        det, emb = self.detector, self.embedder  # the detector first: the embedder may load meanwhile elsewhere
        if getattr(det, "thread_safe", False):
            return find_faces_many(list(photos), det, emb.input_size, emb.backbone.zoom, retry)
        with self._detect_lock:
            return find_faces_many(list(photos), det, emb.input_size, emb.backbone.zoom, retry)

    def align(self, image: np.ndarray, faces: Sequence[Face]) -> list[Face]:
        """``faces`` (in ``image``'s pixels) with aligned crops cut from the RGB uint8 ``image``."""
        e = self.embedder
        return [f.replace(crop=face_crop(image, f.box, f.landmarks, e.input_size, e.backbone.zoom)) for f in faces]

    def crops(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """Aligned crops of ``faces`` in ``image``: ``(n, S, S, 3)`` uint8."""
        return np.stack([f.crop for f in self.align(image, faces)])

    def embed_crops(self, crops: np.ndarray, flip: bool | None = None) -> np.ndarray:
        """Vectors ``(n, D)`` float32 of aligned crops ``(n, S, S, 3)`` uint8 (``flip``: the
        setting's, or the base's default, when ``None``)."""
        return self.embedder.embed(crops, flip=self.settings.flip if flip is None else flip,
                                   batch_size=self.settings.batch_size)

    def embed(self, faces: Sequence[Face]) -> list[Face]:
        """Faces (with crops) with their identity vectors, in one embedding run."""
        if not faces:
            return []
        vecs = self.embed_crops(np.stack([f.crop for f in faces]))
        return [f.replace(vector=v) for f, v in zip(faces, vecs)]

    def embed_groups(self, groups: Sequence[Sequence[Face]]) -> list[list[Face]]:
        """:meth:`embed` for several photos' faces at once, regrouped as given."""
        flat = self.embed([f for g in groups for f in g])
        out, i = [], 0
        for g in groups:
            out.append(flat[i:i + len(g)])
            i += len(g)
        return out

    def image_faces(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Every face of each RGB uint8 image, detected (batched over same-size images),
        aligned and embedded together; boxes in the image's pixels."""
        found = self.detector.detect_many(list(images))
        return self.embed_groups([self.align(image, fs) for image, fs in zip(images, found)])

    def frame_faces(self, frame: np.ndarray, detect_side: int) -> list[Face]:
        """Every face of a video frame (RGB uint8): detected on a copy shrunk to
        ``detect_side``, aligned and embedded from the full frame; boxes in frame pixels."""
        small, s = downscale(frame, detect_side)
        faces = [rescale_face(f, s) for f in self.detector.detect(small)]
        return self.embed(self.align(frame, faces))
