"""Naming every face in many photos, one result per photo, failures included.

Two entry points: :func:`identify_files` (simple, in-process batches) and
:func:`tag_photos`, the batch tagger behind ``facerec tag``: per photo it reads
the bytes and hashes them (main process), looks the hash up in a
:class:`~facerec.tagcache.TagCache`, and sends the photos it has not seen to
the per-photo work (:func:`prepare_photos`: decode, EXIF-rotate, detect,
align) run in-process, in worker processes or as Ray tasks; the aligned crops
come back and are embedded in batches in the main process, stored in the cache
one photo per transaction, and matched against the gallery.
"""

from __future__ import annotations

import contextvars
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

if TYPE_CHECKING:
    from facerec.detect import Detector
    from facerec.tagcache import TagCache

import numpy as np

from facerec.embed import get_backbone
from facerec.errors import EmptyGalleryError, FaceRecError, ImageError
from facerec.images import Photo, is_image_path, read_bytes
from facerec.pipeline import FaceRecognizer, Models, decode_for_detection, find_faces_many
from facerec.types import Face, Match


@dataclass(frozen=True)
class PhotoResult:
    """The faces of one photo, or why it failed.

    Attributes:
        path: the photo.
        faces: ``(face, match)`` pairs, boxes in original-photo pixels.
        error: one-line reason when the photo could not be processed.
        size: ``(width, height)`` of the photo as displayed (EXIF-rotated).
        cached: the faces came from the tag cache (the photo was not processed again).
        pixels: the photo as decoded for detection (RGB uint8 ``(h, w, 3)``, a large JPEG
            reduced), when asked for; boxes times :attr:`scale` are in its pixels.
    """

    path: Path
    faces: list[tuple[Face, Match]] = field(default_factory=list)
    error: str | None = None
    size: tuple[int, int] | None = None
    cached: bool = False
    pixels: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def scale(self) -> float:
        """:attr:`pixels` width / displayed width (1.0 without pixels)."""
        if self.pixels is None or not self.size:
            return 1.0
        return self.pixels.shape[1] / float(self.size[0])

    def to_json(self) -> dict:
        """``{"path", "faces": [{"box": [x, y, w, h], "name", "score"}]}`` (+ ``"error"``)."""
        out: dict = {"path": str(self.path), "faces": [
            {"box": list(f.int_box()), "name": m.name, "score": round(m.score, 4)} for f, m in self.faces
        ]}
        if self.error:
            out["error"] = self.error
        return out


CSV_COLUMNS = ("path", "face", "name", "score", "x", "y", "w", "h")


def printable(text: str) -> str:
    """``text`` with the bytes of a file name that is not valid UTF-8 (Python's surrogate
    escapes) written as ``\\udcXX``: valid UTF-8 for reports, tables and downloads."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def csv_report(results: Iterable[PhotoResult]) -> str:
    """CSV text, one row per face: ``path, face, name, score, x, y, w, h``.

    ``face`` numbers the faces of a photo from 1 (most confident detection first);
    ``x, y, w, h`` is the box in whole pixels of the photo as displayed (EXIF-rotated);
    ``score`` is the match score in [0, 1] with 4 decimals. Photos without faces or
    that failed have no row (see :func:`json_report` for those).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for res in results:
        writer.writerows(csv_rows(res))
    return printable(buf.getvalue())


def csv_rows(res: PhotoResult) -> list[list]:
    """The :func:`csv_report` rows of one photo (``CSV_COLUMNS``; none when it failed or has no face)."""
    return [[str(res.path), i, match.name, f"{match.score:.4f}", *face.int_box()]
            for i, (face, match) in enumerate(res.faces, start=1)]


def json_report(results: Iterable[PhotoResult]) -> str:
    """JSON text: ``{"photos": [...], "failed": [...], "summary": {...}}``.

    ``photos`` holds one record per photo that was read: ``{"path", "width", "height",
    "faces": [{"face", "name", "score", "box": [x, y, w, h]}]}`` (boxes in whole pixels
    of the displayed photo); ``failed`` holds ``{"path", "error"}`` for each photo
    that could not be processed, with the one-line reason; ``summary`` counts them.
    """
    photos, failed = [], []
    faces = 0
    for res in results:
        if res.error:
            failed.append({"path": str(res.path), "error": res.error})
            continue
        w, h = res.size if res.size else (None, None)
        photos.append({"path": str(res.path), "width": w, "height": h, "faces": [
            {"face": i, "name": m.name, "score": round(float(m.score), 4), "box": list(f.int_box())}
            for i, (f, m) in enumerate(res.faces, start=1)]})
        faces += len(res.faces)
    summary = {"photos": len(photos) + len(failed), "tagged": len(photos), "failed": len(failed), "faces": faces}
    return printable(json.dumps({"photos": photos, "failed": failed, "summary": summary}, indent=1,
                                ensure_ascii=False)) + "\n"  # a \udcXX left by printable() is a JSON escape


def find_photos(paths: Iterable[Path], recursive: bool = True, exclude: Sequence[Path] = ()) -> Iterator[Path]:
    """Photo files among ``paths``; folders are walked (recursively by default), sorted.

    Files named explicitly are yielded whatever their suffix, so that a bad
    file given by hand is reported rather than ignored. Hidden files and
    folders, and anything under the ``exclude`` folders, are skipped.
    """
    skip = [Path(e).resolve() for e in exclude]
    for p in paths:
        p = Path(p)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            for f in sorted(it):
                if (f.is_file() or f.is_symlink()) and is_image_path(f) and not any(
                        part.startswith(".") for part in f.relative_to(p).parts):
                    if skip and any(f.resolve().is_relative_to(e) for e in skip):
                        continue
                    yield f
        else:
            yield p


def identify_files(recognizer: FaceRecognizer, paths: Iterable[Path],
                   refresh_progress: Callable[[Iterable], Iterable] | None = None,
                   cache: "TagCache | None" = None) -> Iterator[PhotoResult]:
    """Identify every face in each photo, in order; a failure becomes that photo's ``error``.

    The same staged path as :func:`tag_photos` (which see), keeping each face's aligned
    crop for display (except for photos found in ``cache``); ``refresh_progress`` wraps
    the gallery photos that must be (re-)embedded first.

    Raises:
        EmptyGalleryError, ModelUnavailableError: problems that concern every
            photo end the run instead of failing each one.
    """
    recognizer.refresh(refresh_progress)
    yield from tag_photos(recognizer, paths, cache=cache, keep_crops=True)


# -- the batch tagger ----------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """One photo after the per-photo work.

    Attributes:
        name: the photo's path, as text.
        size: ``(width, height)`` as displayed, or ``None`` on failure.
        faces: faces in displayed-photo pixels, with ``crop`` (``(S, S, 3)`` uint8) after
            alignment and ``vector`` after embedding.
        error: one-line reason when the photo could not be processed.
        pixels: the decoded (possibly reduced) photo, RGB uint8 ``(h, w, 3)``, kept only
            when asked for (drawing), else ``None``.
    """

    name: str
    size: tuple[int, int] | None = None
    faces: list[Face] = field(default_factory=list)
    error: str | None = None
    pixels: np.ndarray | None = None


class PhotoWorker:
    """The per-photo stages: decode -> detect -> align -> embed, each callable on its own.

    The local engine runs them in threads with queues between them; Ray actors and
    worker processes hold one worker each and run :meth:`process` on photo bytes.
    Models are built on first use (thread-safe).

    Args:
        settings: decides the detector, the embedder and the decoding size.
        detector, embedder: use these instead of building them from ``settings``.
        keep_pixels: keep each decoded photo in :attr:`Prepared.pixels` (for drawing).
    """

    def __init__(self, settings, detector: "Detector | None" = None, embedder=None,
                 keep_pixels: bool = False, models: Models | None = None) -> None:
        import threading

        self.settings = settings
        self.models = models or Models(settings, detector, embedder)
        self.keep_pixels = keep_pixels
        self._detect_lock = threading.Lock()  # for detectors that are not thread-safe

    @classmethod
    def for_recognizer(cls, recognizer: FaceRecognizer, keep_pixels: bool = False) -> "PhotoWorker":
        """A worker sharing the recogniser's models (loaded when first needed)."""
        return cls(recognizer.settings, keep_pixels=keep_pixels, models=recognizer.models)

    @property
    def detector(self) -> "Detector":
        return self.models.detector

    @property
    def embedder(self):
        return self.models.embedder

    def decode(self, name: str, data: bytes) -> Prepared:
        """Bytes -> a reduced decode (:attr:`Prepared.pixels`) and the displayed size."""
        try:
            photo = decode_for_detection(data, name, self.settings)
        except ImageError as exc:
            return Prepared(name, error=str(exc))
        except MemoryError:
            return Prepared(name, error=f"{name}: image too large for memory")
        return Prepared(name, photo.size, pixels=photo.pixels)

    def detect(self, batch: Sequence[Prepared]) -> list[Prepared]:
        """Faces found and aligned (crops at the embedder's input size), boxes in displayed
        pixels; same-size photos are detected together. A photo whose detection fails gets
        an ``error`` and the others go on."""
        det, emb = self.detector, self.embedder  # the detector first: the embedder loads meanwhile elsewhere
        todo = [p for p in batch if p.error is None]

        def run(ps: list[Prepared]) -> list[list[Face]]:
            photos = [Photo(p.pixels, p.size) for p in ps]
            if getattr(det, "thread_safe", False):
                return find_faces_many(photos, det, emb.input_size, emb.backbone.zoom)
            with self._detect_lock:
                return find_faces_many(photos, det, emb.input_size, emb.backbone.zoom)

        try:
            found: list = run(todo)
        except Exception:  # noqa: BLE001 - one bad photo must not sink the others: one by one
            found = []
            for p in todo:
                try:
                    found.append(run([p])[0])
                except Exception as exc:  # noqa: BLE001 - any detector failure becomes this photo's error
                    found.append(f"{p.name}: face detection failed ({type(exc).__name__}: {exc})")
        done = iter(found)
        out = []
        for p in batch:
            faces = next(done) if p.error is None else None
            if isinstance(faces, str):
                out.append(Prepared(p.name, error=faces))
            elif faces is None:
                out.append(p)
            else:
                out.append(Prepared(p.name, p.size, faces, pixels=p.pixels if self.keep_pixels else None))
        return out

    def embed(self, batch: Sequence[Prepared]) -> list[Prepared]:
        """Vectors for every face of ``batch`` in one embedding run."""
        faces = [f for p in batch for f in p.faces]
        if faces:
            vecs = self.embedder.embed(np.stack([f.crop for f in faces]), flip=self.settings.flip,
                                       batch_size=self.settings.batch_size)
            faces = [f.replace(vector=v) for f, v in zip(faces, vecs)]
        out, i = [], 0
        for p in batch:
            n = len(p.faces)
            out.append(dataclasses.replace(p, faces=faces[i:i + n]))
            i += n
        return out

    def process(self, items: Sequence[tuple[str, bytes]]) -> list[Prepared]:
        """Every stage for a batch of ``(name, bytes)``, in turn (what remote workers run);
        crops are dropped from the result, pixels too unless asked for."""
        done = self.embed(self.detect([self.decode(name, data) for name, data in items]))
        return [dataclasses.replace(p, faces=[f.replace(crop=None) for f in p.faces]) for p in done]


def model_signature(settings) -> str:
    """What decides which embedder ``settings`` load, cheaply (no model is loaded).

    The tag cache remembers, per signature, the embedder key and threshold it
    gave, so that a run whose photos are all cached never loads TensorFlow.
    """
    from facerec.embed import head_paths, shipped_head

    stem = settings.head or shipped_head(settings.backbone)
    digest = "none"
    if stem is not None:
        files = [f for f in head_paths(Path(stem)) if f.is_file()]
        digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    import facerec

    from facerec.weights import configured_weights_digest

    weights = configured_weights_digest(settings.backbone, settings)  # content, not path
    return f"{facerec.__version__}|{settings.backbone}|{settings.head}|{digest}|{weights}"


def gallery_match_key(embedder_key: str, threshold: float, X: np.ndarray, names: Sequence[str]) -> str:
    """What decides the matches of stored vectors: a fingerprint of the gallery's vectors
    (``(N, D)`` float32) and their names, the base + head key, the threshold and the
    facerec version (whose matcher rule made the stored matches).

    Unlike ``Gallery.version`` (a counter that restarts with a recreated gallery), it
    depends only on content, so the tag cache can reuse a photo's stored matches
    whenever it is unchanged and re-match from the stored vectors whenever it is not.
    """
    from facerec import __version__

    h = hashlib.sha256(f"{__version__}|{embedder_key}|{float(threshold)!r}|{len(names)}|".encode())
    h.update("\0".join(names).encode())
    h.update(np.ascontiguousarray(X, dtype=np.float32).tobytes())
    return h.hexdigest()


def pipeline_key(settings, embedder_key: str, detector: str) -> str:
    """The cache key of everything that decides a photo's faces and vectors."""
    from facerec import __version__

    flip = get_backbone(settings.backbone).flip if settings.flip is None else settings.flip
    return (f"{embedder_key}|flip={int(flip)}|det={detector}|side={settings.max_detect_side}"
            f"|min={settings.min_face_size}|minf={settings.min_face_fraction}"
            f"|conf={settings.detection_confidence}|v={__version__}")


# -- engines: who runs the per-photo stages -----------------------------------------

SMALL_FILE_BYTES = 100_000
"""Files up to this size (photos of a few hundred pixels) go through the local engine
LOCAL_BATCH at a time, so their detection is batched; larger ones one by one."""
LOCAL_BATCH = 8


class _LocalEngine:
    """The stages in this process, overlapped: two decoding threads (Pillow releases the
    GIL), two detecting and aligning threads (TensorFlow releases it; a detector that is
    not ``thread_safe`` runs one photo at a time), and the caller's thread embedding
    whatever is ready in one batch. At most ``window`` photos are in flight, so memory is bounded
    whatever the folder; results come back in submission order."""

    def __init__(self, worker: PhotoWorker, window: int = 12, detect_threads: int = 2) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.worker = worker
        self.window = window
        self._decode = ThreadPoolExecutor(2, thread_name_prefix="facerec-decode")
        self._detect = ThreadPoolExecutor(detect_threads, thread_name_prefix="facerec-detect")

    def warm(self) -> None:
        """Start loading the detector now (while the embedder loads elsewhere)."""
        self._detect.submit(lambda: self.worker.detector)

    def decode(self, name: str, data: bytes):
        """Start decoding one photo (a future of :meth:`PhotoWorker.decode`)."""
        # in the caller's context, so a pixel budget it set (images.pixel_budget) is charged
        return self._decode.submit(contextvars.copy_context().run, self.worker.decode, name, data)

    def submit(self, items: list[tuple[str, bytes, object]]):
        """Decode each ``(name, bytes, decoding already started or None)``, then detect and align
        them together (a future of their :class:`Prepared`)."""
        decoded = [d or self.decode(name, data) for name, data, d in items]
        return self._detect.submit(lambda: self.worker.detect([d.result() for d in decoded]))

    @staticmethod
    def done(handle) -> bool:
        return handle.done()

    def results(self, handles: list) -> list[Prepared]:
        """Embedded results of finished handles (``handles[0]`` waited for)."""
        return self.worker.embed([p for h in handles for p in h.result()])

    def close(self) -> None:
        self._decode.shutdown(wait=True, cancel_futures=True)
        self._detect.shutdown(wait=True, cancel_futures=True)


def _pool_init(factory: Callable[[], PhotoWorker]) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import cv2

        cv2.setNumThreads(1)
    except Exception:  # pragma: no cover - optional tuning
        pass
    _POOL_WORKER["worker"] = factory()


_POOL_WORKER: dict = {}


def _pool_process(items: list[tuple[str, bytes]]) -> list[Prepared]:
    return _POOL_WORKER["worker"].process(items)


class _PoolEngine:
    """:meth:`PhotoWorker.process` in worker processes (``forkserver``/``spawn``: TensorFlow
    does not survive ``fork`` after import); each builds its worker once."""

    def __init__(self, factory: Callable[[], PhotoWorker], workers: int) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context(method), initializer=_pool_init,
                                        initargs=(factory,))
        self.window = 2 * workers

    def submit(self, items):
        return self.pool.submit(_pool_process, items)

    @staticmethod
    def done(handle) -> bool:
        return handle.done()

    def results(self, handles: list) -> list[Prepared]:
        return [p for h in handles for p in h.result()]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _RayWorker:
    """A Ray actor holding one :class:`PhotoWorker` (detector and embedder); it receives
    photo bytes, so cluster nodes need facerec installed, not the photos' folder."""

    def __init__(self, factory: Callable[[], PhotoWorker]) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        self.worker = factory()

    def process(self, items: list[tuple[str, bytes]]) -> list[Prepared]:
        return self.worker.process(items)


class _RayEngine:
    """:meth:`PhotoWorker.process` on Ray actors, embedding included, so throughput grows
    with the cluster; the driver only reads files, matches, caches and writes. Uses
    the Ray instance already initialised in this process, else ``address`` (or
    ``$RAY_ADDRESS``), else a local one."""

    def __init__(self, factory: Callable[[], PhotoWorker], workers: int, address: str | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise FaceRecError("--engine ray needs Ray: pip install 'facerec[ray]'") from exc
        self._ray = ray
        self._own = not ray.is_initialized()
        if self._own:
            ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1)(_RayWorker)
        self.actors = [actor.remote(factory) for _ in range(n)]
        self._next = 0
        self.window = 2 * n

    def submit(self, items):
        self._next = (self._next + 1) % len(self.actors)
        return self.actors[self._next].process.remote(items)

    def done(self, ref) -> bool:
        return bool(self._ray.wait([ref], timeout=0)[0])

    def results(self, handles: list) -> list[Prepared]:
        return [p for batch in self._ray.get(list(handles)) for p in batch]

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)
        if self._own:
            self._ray.shutdown()


def tag_photos(recognizer: FaceRecognizer, paths: Iterable[Path], *, cache: "TagCache | None" = None,
               workers: int = 0, engine: str = "local",
               worker_factory: Callable[[], PhotoWorker] | None = None,
               model: tuple[str, float] | None = None, batch_size: int = 8,
               refresh_progress: Callable[[Iterable], Iterable] | None = None,
               ray_address: str | None = None, keep_pixels: bool = False, keep_crops: bool = False,
               on_model: Callable[[str, float], None] | None = None) -> Iterator[PhotoResult]:
    """Name every face in each photo, using and filling the tag cache; failures become results.

    The stages (read -> decode -> detect -> align -> embed -> match -> write to the
    cache) overlap: reading and decoding start while the models load, and at most a few dozen photos
    are in flight at once, so memory stays bounded whatever the folder holds.

    Args:
        recognizer: detector, embedder and gallery to use.
        paths: the photos.
        cache: skip photos whose faces are stored for this pipeline; store new ones.
        workers: worker processes for the per-photo work (0: threads in this process).
        engine: ``"local"`` or ``"ray"``: the per-photo work, embedding included, on
            Ray actors (one per worker; ``workers=0``: one per CPU of the cluster).
        worker_factory: builds a :class:`PhotoWorker` in each worker process or actor
            (picklable); defaults to one built from the recogniser's settings.
        model: ``(embedder key, threshold)`` when known without loading the
            embedder (from :meth:`TagCache.model`); the embedder is then loaded
            only if some photo needs embedding.
        batch_size: photos per unit of work sent to worker processes or actors.
        refresh_progress: wraps gallery photos that must be (re-)embedded first.
        ray_address: Ray cluster address for ``engine="ray"`` (default: ``RAY_ADDRESS`` or a local instance).
        keep_pixels: keep each processed photo's decoded (reduced) pixels in
            :attr:`PhotoResult.pixels`, boxes scaled to them by :attr:`PhotoResult.scale` (for drawing).
        keep_crops: keep each face's aligned crop (local engine; not for cached photos).
        on_model: called with the loaded embedder's ``(key, threshold)`` whenever this
            run had to load it (to remember it with :meth:`TagCache.set_model`).

    Yields:
        One :class:`PhotoResult` per photo, in the order of ``paths``.

    Raises:
        EmptyGalleryError, ModelUnavailableError: problems that concern every
            photo end the run instead of failing each one.
    """
    from collections import deque

    from facerec.storage import content_hash

    settings = recognizer.settings
    gallery = recognizer.gallery
    local = engine != "ray" and workers <= 0
    runner = None
    if local and worker_factory is None:  # threads only: no model is loaded before a photo needs one
        runner = _LocalEngine(PhotoWorker.for_recognizer(recognizer, keep_pixels=keep_pixels))
    paths = iter(paths)
    early: list[tuple[Path, bytes | ImageError, object]] = []  # read (and decoding) while the models load
    try:
        if model is None:
            def load() -> tuple[str, float]:
                return recognizer.embedder.key, recognizer.embedder.threshold

            if isinstance(runner, _LocalEngine):
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(1, thread_name_prefix="facerec-load") as pool:
                    loading = pool.submit(load)
                    runner.warm()
                    while not loading.done() and len(early) < runner.window:
                        path = next(paths, None)
                        if path is None:
                            break
                        try:
                            data = read_bytes(Path(path))
                        except ImageError as exc:
                            early.append((Path(path), exc, None))
                            continue
                        early.append((Path(path), data, runner.decode(str(path), data)))
                    model = loading.result()
            else:
                model = load()
            if on_model:
                on_model(*model)
        key, fixed = model
        gallery.sync()
        X, names, missing = gallery.vectors(key)
        matcher = None
        if missing:
            recognizer.refresh(refresh_progress)
            X, names, _ = gallery.vectors(key)
        elif len(X) == 0:
            raise EmptyGalleryError(f"nobody is enrolled in {gallery.root}; enrol people first (facerec enroll)")
        from facerec.thresholds import recognition_threshold

        threshold = recognition_threshold(settings, names, fixed)
        gal = gallery_match_key(key, threshold, X, names)
        pipe = pipeline_key(settings, key, settings.detector)

        def matched(path: Path, sha: str, size, faces: list[Face], cached: bool,
                    pixels: np.ndarray | None = None) -> PhotoResult:
            nonlocal matcher
            matches = cache.get_matches(sha, pipe, gal) if cached else None
            if matches is None or len(matches) != len(faces):
                if matcher is None and faces:  # fitted only when some photo's matches are not stored
                    from facerec.classify import CosineMatcher

                    matcher = CosineMatcher(threshold=threshold).fit(X, names)
                matches = matcher.match(np.stack([f.vector for f in faces])) if faces else []
                if cache is not None:
                    cache.put_matches(sha, pipe, gal, matches)
            return PhotoResult(path, list(zip(faces, matches)), size=size, cached=cached, pixels=pixels)

        loaded = False

        def start() -> None:
            nonlocal runner, loaded
            if loaded:
                return
            loaded = True
            emb = recognizer.embedder
            if on_model:
                on_model(emb.key, emb.threshold)
            if emb.key != key:
                raise FaceRecError(f"the tag cache remembered embedder {key} but it is now {emb.key}; "
                                   "the cache is updated: run again")
            if runner is not None:
                return
            factory = worker_factory or partial(PhotoWorker, settings)
            if engine == "ray":
                runner = _RayEngine(factory, workers, address=ray_address)
            elif workers > 0:
                runner = _PoolEngine(factory, workers)
            else:
                runner = _LocalEngine(factory())  # a worker_factory given for the local engine

        # photos in input order: ("done", result) or ("work", handle, [(path, sha), ...])
        order: deque = deque()
        pending: list[tuple[Path, str, bytes, object]] = []  # path, sha, bytes, decoding already started
        inflight = 0

        def finish(block: bool) -> Iterator[PhotoResult]:
            """Yield the finished photos at the front of ``order`` (waiting for the first if ``block``);
            consecutive finished units are embedded together."""
            nonlocal inflight
            while order:
                if order[0][0] == "done":
                    yield order.popleft()[1]
                    continue
                ready = []
                for entry in order:
                    if entry[0] != "work" or not (runner.done(entry[1]) or (block and not ready)):
                        break
                    ready.append(entry)
                if not ready:
                    return
                block = False
                for _ in ready:
                    order.popleft()
                inflight -= len(ready)
                prepared = runner.results([e[1] for e in ready])
                for (path, sha), p in zip([it for e in ready for it in e[2]], prepared):
                    if p.error is not None:
                        yield PhotoResult(path, error=p.error)
                        continue
                    fs = [f.replace(crop=None) for f in p.faces]
                    if cache is not None:
                        cache.put(sha, pipe, p.size, fs)
                    res = matched(path, sha, p.size, fs, False, p.pixels)
                    if keep_crops:
                        res = dataclasses.replace(res, faces=[(f, m) for f, (_, m) in zip(p.faces, res.faces)])
                    yield res

        def flush() -> None:
            nonlocal inflight
            if pending:
                if runner is None:
                    start()
                if isinstance(runner, _LocalEngine):
                    handle = runner.submit([(str(p), data, decoded) for p, _, data, decoded in pending])
                else:
                    handle = runner.submit([(str(p), data) for p, _, data, _ in pending])
                start()  # the local engine decodes (and loads the detector) while the embedder loads
                order.append(("work", handle, [(p, sha) for p, sha, _, _ in pending]))
                pending.clear()
                inflight += 1

        # a unit of work: one photo for the local engine, except small files (250x250 crops and the
        # like: detecting several same-size photos at once is faster); batch_size for remote workers
        unit = 1 if local else batch_size
        for path, data, decoded in itertools.chain(early, ((Path(p), None, None) for p in paths)):
            try:
                data = read_bytes(path) if data is None else data
                if isinstance(data, ImageError):
                    raise data
            except ImageError as exc:
                order.append(("done", PhotoResult(path, error=str(exc))))
                continue
            sha = content_hash(data)
            hit = cache.get(sha, pipe) if cache is not None else None
            if hit is not None:
                order.append(("done", matched(path, sha, hit[0], hit[1], True)))
            else:
                pending.append((path, sha, data, decoded))
                small = local and len(data) <= SMALL_FILE_BYTES
                if len(pending) >= (LOCAL_BATCH if small else unit):
                    flush()
            while runner is not None and inflight >= runner.window:
                yield from finish(block=True)
            yield from finish(block=False)
        flush()
        while order:
            yield from finish(block=True)
    finally:
        if runner is not None:
            runner.close()
