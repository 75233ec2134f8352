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

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from itertools import islice
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

if TYPE_CHECKING:
    from facerec.detect import Detector
    from facerec.tagcache import TagCache

import numpy as np

from facerec.align import face_crop
from facerec.embed import get_backbone
from facerec.errors import EmptyGalleryError, FaceRecError, ImageError
from facerec.images import decode_image, is_image_path, load_image, read_bytes
from facerec.pipeline import FaceRecognizer
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
    """

    path: Path
    faces: list[tuple[Face, Match]] = field(default_factory=list)
    error: str | None = None
    size: tuple[int, int] | None = None
    cached: bool = False

    def to_json(self) -> dict:
        """``{"path", "faces": [{"box": [x, y, w, h], "name", "score"}]}`` (+ ``"error"``)."""
        out: dict = {"path": str(self.path), "faces": [
            {"box": list(f.int_box()), "name": m.name, "score": round(m.score, 4)} for f, m in self.faces
        ]}
        if self.error:
            out["error"] = self.error
        return out


CSV_COLUMNS = ("path", "face", "name", "score", "x", "y", "w", "h")


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
    return buf.getvalue()


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
    return json.dumps({"photos": photos, "failed": failed, "summary": summary}, indent=1, ensure_ascii=False) + "\n"


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
                   batch_size: int = 8) -> Iterator[PhotoResult]:
    """Identify every face in each photo; a failure becomes that photo's ``error``.

    Photos are read ``batch_size`` at a time so detection and embedding run in
    batches; ``refresh_progress`` wraps the gallery photos that must be
    (re-)embedded first. Results keep the input order, except that the photos of a
    batch that could not be read are reported first.

    Raises:
        EmptyGalleryError, ModelUnavailableError: problems that concern every
            photo end the run instead of failing each one.
    """
    recognizer.refresh(refresh_progress)
    it = iter(paths)
    while chunk := list(islice(it, batch_size)):
        loaded: list[tuple[Path, np.ndarray]] = []
        for path in chunk:
            try:
                loaded.append((Path(path), load_image(path)))
            except ImageError as exc:
                yield PhotoResult(Path(path), error=str(exc))
            except MemoryError:
                yield PhotoResult(Path(path), error=f"{path}: image too large for memory")
        if not loaded:
            continue
        results = recognizer.identify_many([image for _, image in loaded])
        for (path, image), found in zip(loaded, results):
            yield PhotoResult(path, found, size=(image.shape[1], image.shape[0]))


# -- the batch tagger ----------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """One photo after the per-photo work: its displayed size and faces with aligned crops.

    Attributes:
        name: the photo's path, as text.
        size: ``(width, height)`` as displayed, or ``None`` on failure.
        faces: faces with ``crop`` set (``(S, S, 3)`` uint8), ``vector`` ``None``.
        error: one-line reason when the photo could not be processed.
    """

    name: str
    size: tuple[int, int] | None = None
    faces: list[Face] = field(default_factory=list)
    error: str | None = None


def prepare_photos(items: Sequence[tuple[str, bytes]], detector: "Detector", crop_size: int,
                   zoom: float = 1.0) -> list[Prepared]:
    """Decode, detect and align a batch of photos (the part that runs in workers).

    Args:
        items: ``(name, file bytes)`` per photo.
        detector: finds faces (batched over same-size photos).
        crop_size: side of the aligned crops, the embedder's input size.
        zoom: the backbone's alignment zoom.

    Returns:
        One :class:`Prepared` per item, in order; a photo that cannot be decoded,
        or whose detection fails, gets an ``error`` and the others go on.
    """
    out: list[Prepared | None] = [None] * len(items)
    decoded: list[tuple[int, np.ndarray]] = []
    for i, (name, data) in enumerate(items):
        try:
            decoded.append((i, decode_image(data, name)))
        except ImageError as exc:
            out[i] = Prepared(name, error=str(exc))
        except MemoryError:
            out[i] = Prepared(name, error=f"{name}: image too large for memory")
    try:
        found: list = detector.detect_many([image for _, image in decoded])
    except Exception:  # one bad photo must not sink its batch: retry one by one
        found = []
        for i, image in decoded:
            try:
                found.append(detector.detect(image))
            except Exception as exc:  # noqa: BLE001 - any detector failure becomes this photo's error
                found.append(f"{items[i][0]}: face detection failed ({type(exc).__name__}: {exc})")
    for (i, image), faces in zip(decoded, found):
        name = items[i][0]
        if isinstance(faces, str):
            out[i] = Prepared(name, error=faces)
            continue
        faces = [f.replace(crop=face_crop(image, f.box, f.landmarks, crop_size, zoom)) for f in faces]
        out[i] = Prepared(name, (int(image.shape[1]), int(image.shape[0])), faces)
    return [p for p in out if p is not None]


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

    return f"{facerec.__version__}|{settings.backbone}|{settings.head}|{digest}|{settings.weights!r}"


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
    flip = get_backbone(settings.backbone).flip if settings.flip is None else settings.flip
    return (f"{embedder_key}|flip={int(flip)}|det={detector}|side={settings.max_detect_side}"
            f"|min={settings.min_face_size}|conf={settings.detection_confidence}")


# worker processes: one detector each, built once
_WORKER: dict = {}


def _worker_init(detector_factory: Callable[[], "Detector"], threads: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        try:
            import cv2

            cv2.setNumThreads(threads)
        except Exception:  # pragma: no cover - optional tuning
            pass
    _WORKER["detector"] = detector_factory()


def _worker_prepare(items: list[tuple[str, bytes]], crop_size: int, zoom: float) -> list[Prepared]:
    return prepare_photos(items, _WORKER["detector"], crop_size, zoom)


class _Done:
    """A finished unit of work (hashable handle)."""

    def __init__(self, value) -> None:
        self.value = value


class _LocalRunner:
    """Runs :func:`prepare_photos` in this process."""

    def __init__(self, detector: "Detector") -> None:
        self.detector = detector
        self.slots = 1

    def submit(self, items, crop_size, zoom):
        return _Done(prepare_photos(items, self.detector, crop_size, zoom))

    def wait(self, handles: list) -> tuple[list, list]:
        return [(h, h.value) for h in handles], []

    def close(self) -> None:
        pass


class _PoolRunner:
    """Runs :func:`prepare_photos` in worker processes (``forkserver``/``spawn``: TensorFlow
    does not survive ``fork`` after import); each worker builds its detector once."""

    def __init__(self, detector_factory: Callable[[], "Detector"], workers: int) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context(method), initializer=_worker_init,
                                        initargs=(detector_factory, 1))
        self.slots = 2 * workers

    def submit(self, items, crop_size, zoom):
        return self.pool.submit(_worker_prepare, items, crop_size, zoom)

    def wait(self, handles: list) -> tuple[list, list]:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, pending = wait(handles, return_when=FIRST_COMPLETED)
        return [(h, h.result()) for h in handles if h in done], [h for h in handles if h in pending]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _RayWorker:
    """A Ray actor holding one detector; does :func:`prepare_photos` on photo bytes sent to it
    (so cluster nodes need facerec installed, not the photos' folder)."""

    def __init__(self, detector_factory: Callable[[], "Detector"]) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        self.detector = detector_factory()

    def prepare(self, items: list[tuple[str, bytes]], crop_size: int, zoom: float) -> list[Prepared]:
        return prepare_photos(items, self.detector, crop_size, zoom)


class _RayRunner:
    """Runs :func:`prepare_photos` on Ray actors: on the Ray instance already
    initialised in this process, else on ``address`` (or ``$RAY_ADDRESS``), else a local one."""

    def __init__(self, detector_factory: Callable[[], "Detector"], workers: int, address: str | None = None) -> None:
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
        self.actors = [actor.remote(detector_factory) for _ in range(n)]
        self.busy = {i: 0 for i in range(n)}
        self.owner: dict = {}
        self.slots = 2 * n

    def submit(self, items, crop_size, zoom):
        i = min(self.busy, key=self.busy.get)
        ref = self.actors[i].prepare.remote(items, crop_size, zoom)
        self.busy[i] += 1
        self.owner[ref] = i
        return ref

    def wait(self, handles: list) -> tuple[list, list]:
        done, pending = self._ray.wait(handles, num_returns=1)
        out = []
        for ref in done:
            self.busy[self.owner.pop(ref)] -= 1
            out.append((ref, self._ray.get(ref)))
        return out, pending

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)
        if self._own:
            self._ray.shutdown()


def tag_photos(recognizer: FaceRecognizer, paths: Iterable[Path], *, cache: "TagCache | None" = None,
               workers: int = 0, engine: str = "local", detector_factory: Callable[[], "Detector"] | None = None,
               model: tuple[str, float] | None = None, batch_size: int = 32, batch_bytes: int = 32_000_000,
               refresh_progress: Callable[[Iterable], Iterable] | None = None,
               ray_address: str | None = None,
               on_model: Callable[[str, float], None] | None = None) -> Iterator[PhotoResult]:
    """Name every face in each photo, using and filling the tag cache; failures become results.

    Args:
        recognizer: detector, embedder and gallery to use.
        paths: the photos.
        cache: skip photos whose faces are stored for this pipeline; store new ones.
        workers: worker processes for decoding and detection (0: in this process).
        engine: ``"local"`` or ``"ray"``: the per-photo work on Ray actors (one per
            worker, each holding a detector; ``workers=0``: one per CPU of the cluster).
        detector_factory: builds a detector in each worker (picklable); defaults
            to :func:`facerec.detect.make_detector` of the recognizer's settings.
        model: ``(embedder key, threshold)`` when known without loading the
            embedder (from :meth:`TagCache.model`); the embedder is then loaded
            only if some photo needs embedding.
        batch_size: photos per unit of work (detection is batched over its same-size photos).
        batch_bytes: a unit of work also ends once its files hold this many bytes
            (bounds the memory of decoded photos).
        refresh_progress: wraps gallery photos that must be (re-)embedded first.
        ray_address: Ray cluster address for ``engine="ray"`` (default: ``RAY_ADDRESS`` or a local instance).
        on_model: called with the loaded embedder's ``(key, threshold)`` whenever this
            run had to load it (to remember it with :meth:`TagCache.set_model`).

    Yields:
        One :class:`PhotoResult` per photo, in the order they complete.

    Raises:
        EmptyGalleryError, ModelUnavailableError: problems that concern every
            photo end the run instead of failing each one.
    """
    from facerec.gallery import content_hash

    settings = recognizer.settings
    if model is None:
        model = (recognizer.embedder.key, recognizer.embedder.threshold)
        if on_model:
            on_model(*model)
    key, threshold = model
    if settings.threshold is not None:
        threshold = settings.threshold
    gallery = recognizer.gallery
    gallery.sync()
    X, names, missing = gallery.vectors(key)
    matcher = None
    if missing:
        matcher = recognizer.refresh(refresh_progress)
        X, names, _ = gallery.vectors(key)
    elif len(X) == 0:
        raise EmptyGalleryError(f"nobody is enrolled in {gallery.root}; enrol people first (facerec enroll)")
    gal = gallery_match_key(key, threshold, X, names)
    det_name = getattr(detector_factory, "name", None) or settings.detector
    pipe = pipeline_key(settings, key, det_name)

    def matched(path: Path, sha: str, size, faces: list[Face], cached: bool) -> PhotoResult:
        nonlocal matcher
        matches = cache.get_matches(sha, pipe, gal) if cached else None
        if matches is None or len(matches) != len(faces):
            if matcher is None and faces:  # fitted only when some photo's matches are not stored
                from facerec.classify import CosineMatcher

                matcher = CosineMatcher(threshold=threshold).fit(X, names)
            matches = matcher.match(np.stack([f.vector for f in faces])) if faces else []
            if cache is not None:
                cache.put_matches(sha, pipe, gal, matches)
        return PhotoResult(path, list(zip(faces, matches)), size=size, cached=cached)

    runner = None
    crop: tuple[int, int | float] | None = None
    inflight: dict = {}

    def start_runner():
        nonlocal runner, crop
        emb = recognizer.embedder
        if on_model:
            on_model(emb.key, emb.threshold)
        if emb.key != key:
            raise FaceRecError(f"the tag cache remembered embedder {key} but it is now {emb.key}; "
                              "the cache is updated: run again")
        crop = (emb.input_size, emb.backbone.zoom)
        factory = detector_factory or partial(_make_detector, settings)
        if engine == "ray":
            runner = _RayRunner(factory, workers, address=ray_address)
        elif workers > 0:
            runner = _PoolRunner(factory, workers)
        else:
            runner = _LocalRunner(factory() if detector_factory else recognizer.detector)

    def finish(batch: list[tuple[Path, str]], prepared: list[Prepared]) -> Iterator[PhotoResult]:
        ok = [(item, p) for item, p in zip(batch, prepared) if p.error is None]
        faces = recognizer.embed([f for _, p in ok for f in p.faces])
        i = 0
        for (path, sha), p in zip(batch, prepared):
            if p.error is not None:
                yield PhotoResult(path, error=p.error)
                continue
            fs = [f.replace(crop=None) for f in faces[i:i + len(p.faces)]]
            i += len(p.faces)
            if cache is not None:
                cache.put(sha, pipe, p.size, fs)
            yield matched(path, sha, p.size, fs, False)

    def drain(block_until: int) -> Iterator[PhotoResult]:
        while len(inflight) > block_until:
            done, _ = runner.wait(list(inflight))
            for handle, prepared in done:
                batch = inflight.pop(handle)
                yield from finish(batch, prepared)

    pending: list[tuple[Path, str, bytes]] = []
    pending_bytes = 0  # file bytes held in pending
    try:
        def flush() -> Iterator[PhotoResult]:
            if runner is None:
                start_runner()
            batch = [(p, sha) for p, sha, _ in pending]
            handle = runner.submit([(str(p), data) for p, _, data in pending], *crop)
            pending.clear()
            inflight[handle] = batch
            yield from drain(runner.slots - 1)

        for path in paths:
            path = Path(path)
            try:
                data = read_bytes(path)
            except ImageError as exc:
                yield PhotoResult(path, error=str(exc))
                continue
            sha = content_hash(data)
            hit = cache.get(sha, pipe) if cache is not None else None
            if hit is not None:
                yield matched(path, sha, hit[0], hit[1], True)
                continue
            pending.append((path, sha, data))
            pending_bytes += len(data)
            if len(pending) >= batch_size or pending_bytes >= batch_bytes:
                yield from flush()
                pending_bytes = 0
        if pending:
            yield from flush()
        if runner is not None:
            yield from drain(0)
    finally:
        if runner is not None:
            runner.close()


def _make_detector(settings) -> "Detector":
    from facerec.detect import make_detector

    return make_detector(settings)
