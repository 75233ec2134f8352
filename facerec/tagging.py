"""Naming every face in many photos, one result per photo, failures included.

Two entry points: :func:`identify_files` (simple, in-process batches) and
:func:`tag_photos`, the batch tagger behind ``facerec tag``, composed of named parts:
:func:`read_stage` reads and hashes each photo (main process), :class:`MatchingContext`
looks the hash up in the tag cache (through a :class:`~facerec.tagcache.CacheSession`,
which carries on without writing on a full disk) and names faces, :class:`Batcher` is the
batching policy, an :class:`~facerec.engines.Engine` (threads, worker processes or Ray,
one interface) runs the per-photo work (decode, EXIF-rotate, detect, align, embed), and
:class:`InOrderWriter` hands results back in input order, each photo stored in the cache
in its own transaction.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

if TYPE_CHECKING:
    from facerec.tagcache import TagCache

import numpy as np

from facerec.embed import get_backbone
from facerec.engines import (LOCAL_BATCH, SMALL_FILE_BYTES, Engine, EngineChoice, PhotoWorker,  # noqa: F401
                             Prepared)
from facerec.errors import EmptyGalleryError, FaceRecError, ImageError
from facerec.facepath import fit_matcher, match_threshold
from facerec.images import is_image_path, read_bytes
from facerec.pipeline import FaceRecognizer
from facerec.storage import content_hash
from facerec.tagcache import CacheSession
from facerec.types import UNKNOWN, Face, Match
from facerec.verdict import MATCH, UNKNOWN_VERDICT, Verdict, verdict


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
        note: one line on what went wrong after the photo was tagged (its faces could not
            be stored in the tag cache: a full disk), else ``None``; its faces are valid.
        threshold: the recognition threshold the faces were matched against (``None``: not
            known); it decides each face's verdict (:meth:`verdicts`).
        sha: the photo's content hash (SHA-256 hex), when it was read.
    """

    path: Path
    faces: list[tuple[Face, Match]] = field(default_factory=list)
    error: str | None = None
    size: tuple[int, int] | None = None
    cached: bool = False
    pixels: np.ndarray | None = field(default=None, repr=False, compare=False)
    note: str | None = field(default=None, compare=False)
    threshold: float | None = field(default=None, compare=False)
    sha: str | None = field(default=None, compare=False)

    def verdicts(self) -> list[Verdict]:
        """The verdict of each face (match / possible match / unknown), in face order; without
        a :attr:`threshold`, a named face counts as a match."""
        out = []
        for _, m in self.faces:
            if self.threshold is not None:
                out.append(verdict(m, self.threshold))
            else:
                out.append(Verdict(m.name, MATCH if m.known else UNKNOWN_VERDICT, float(m.score), 0.0))
        return out

    def sure_faces(self, include_possible: bool = False) -> list[tuple[Face, Match]]:
        """The faces as written to an XMP sidecar: a possible match (just above the threshold)
        is unnamed (``unknown``) unless ``include_possible``, so that a photo manager reading
        the sidecar never takes a guess for a name."""
        return [(f, m if v.sure or (include_possible and v.known) else Match(UNKNOWN, m.score))
                for (f, m), v in zip(self.faces, self.verdicts())]

    @property
    def scale(self) -> float:
        """:attr:`pixels` width / displayed width (1.0 without pixels)."""
        if self.pixels is None or not self.size:
            return 1.0
        return self.pixels.shape[1] / float(self.size[0])

    def to_json(self) -> dict:
        """``{"path", "faces": [{"box": [x, y, w, h], "name", "score", "verdict"}]}`` (+ ``"error"``)."""
        out: dict = {"path": str(self.path), "faces": [
            {"box": list(f.int_box()), "name": m.name, "score": round(m.score, 4), "verdict": v.kind}
            for (f, m), v in zip(self.faces, self.verdicts())
        ]}
        if self.error:
            out["error"] = self.error
        return out


CSV_COLUMNS = ("path", "face", "name", "score", "x", "y", "w", "h", "verdict")


def printable(text: str) -> str:
    """``text`` with the bytes of a file name that is not valid UTF-8 (Python's surrogate
    escapes) written as ``\\udcXX``: valid UTF-8 for reports, tables and downloads."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def csv_report(results: Iterable[PhotoResult]) -> str:
    """CSV text, one row per face: ``path, face, name, score, x, y, w, h, verdict``.

    ``face`` numbers the faces of a photo from 1 (most confident detection first);
    ``x, y, w, h`` is the box in whole pixels of the photo as displayed (EXIF-rotated);
    ``score`` is the match score in [0, 1] with 4 decimals; ``verdict`` is ``match``,
    ``possible match`` (``name`` is then only a guess) or ``unknown``. Photos without faces or
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
    return [[str(res.path), i, match.name, f"{match.score:.4f}", *face.int_box(), v.kind]
            for i, ((face, match), v) in enumerate(zip(res.faces, res.verdicts()), start=1)]


def json_report(results: Iterable[PhotoResult]) -> str:
    """JSON text: ``{"photos": [...], "failed": [...], "summary": {...}}``.

    ``photos`` holds one record per photo that was read: ``{"path", "width", "height",
    "faces": [{"face", "name", "score", "verdict", "box": [x, y, w, h]}]}`` (boxes in whole
    pixels of the displayed photo; ``verdict``: ``match``, ``possible match`` or ``unknown``); ``failed`` holds ``{"path", "error"}`` for each photo
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
            {"face": i, "name": m.name, "score": round(float(m.score), 4), "verdict": v.kind,
             "box": list(f.int_box())}
            for i, ((f, m), v) in enumerate(zip(res.faces, res.verdicts()), start=1)]})
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
            f"|conf={settings.detection_confidence}|pixels={settings.detect_pixels}"
            f"|retry={int(settings.retry_no_face)}|v={__version__}")


# -- the batch tagger's parts -----------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One photo read and hashed: ``path``, its ``data`` (bytes), ``sha`` (SHA-256 hex of
    the bytes) and ``prefetched``: its decode already started by the engine, or ``None``."""

    path: Path
    sha: str
    data: bytes
    prefetched: object = None


def read_stage(early: Iterable[tuple[Path, "bytes | ImageError", object]],
               paths: Iterable[Path]) -> Iterator["Item | PhotoResult"]:
    """Stage 1: read and hash each photo, lazily, in order: the ``early`` ones (read while the
    models loaded), then ``paths``; a file that cannot be read becomes its failed result."""
    rest = ((Path(p), None, None) for p in paths)
    for path, data, prefetched in itertools.chain(early, rest):
        try:
            data = read_bytes(path) if data is None else data
            if isinstance(data, ImageError):
                raise data
        except ImageError as exc:
            yield PhotoResult(path, error=str(exc))
            continue
        yield Item(path, content_hash(data), data, prefetched)


def load_while_reading(recognizer: FaceRecognizer, engine: "Engine | None", paths: Iterator[Path],
                       ) -> tuple[tuple[str, float], list[tuple[Path, "bytes | ImageError", object]]]:
    """Load the embedder (in a thread) while reading the first photos and starting their
    decoding on ``engine`` (up to its window; none without an engine yet).

    Returns:
        ``((embedder key, threshold), early)``: ``early`` holds ``(path, bytes or the read
        error, prefetch handle)`` of the photos taken from ``paths`` meanwhile.
    """
    def load() -> tuple[str, float]:
        return recognizer.embedder.key, recognizer.embedder.threshold

    if engine is None:
        return load(), []
    from concurrent.futures import ThreadPoolExecutor

    early: list[tuple[Path, bytes | ImageError, object]] = []
    with ThreadPoolExecutor(1, thread_name_prefix="facerec-load") as pool:
        loading = pool.submit(load)
        engine.warm()
        while not loading.done() and len(early) < engine.window:
            path = next(paths, None)
            if path is None:
                break
            try:
                data = read_bytes(Path(path))
            except ImageError as exc:
                early.append((Path(path), exc, None))
                continue
            early.append((Path(path), data, engine.prefetch(str(path), data)))
        return loading.result(), early


class MatchingContext:
    """What names the faces of this run: the gallery's vectors for the embedder ``key``,
    the threshold (:func:`facerec.facepath.match_threshold`), the cache keys (pipeline and
    gallery match key) and the cache session; the matcher is fitted only when some photo's
    matches are not stored.

    Build with :meth:`open`.
    """

    def __init__(self, settings, key: str, X: np.ndarray, names: Sequence[str], threshold: float,
                 store: CacheSession) -> None:
        self.key, self.X, self.names, self.threshold, self.store = key, X, list(names), threshold, store
        self.gallery_key = gallery_match_key(key, threshold, X, self.names)
        self.pipeline_key = pipeline_key(settings, key, settings.detector)
        self._matcher = None

    @classmethod
    def open(cls, recognizer: FaceRecognizer, model: tuple[str, float], store: CacheSession,
             refresh_progress: Callable[[Iterable], Iterable] | None = None,
             allow_empty: bool = False) -> "MatchingContext":
        """The context for embedder ``model = (key, threshold)``, embedding gallery photos that
        lack vectors for it first.

        Args:
            allow_empty: with nobody enrolled, every face is ``unknown`` (the photo library,
                whose unknown faces are grouped to be named) instead of an error.

        Raises:
            EmptyGalleryError: nobody is enrolled (unless ``allow_empty``).
        """
        key, fixed = model
        gallery = recognizer.gallery
        gallery.sync()
        X, names, missing = gallery.vectors(key)
        if missing:
            recognizer.refresh(refresh_progress)
            X, names, _ = gallery.vectors(key)
        elif len(X) == 0 and not allow_empty:
            raise EmptyGalleryError(f"nobody is enrolled in {gallery.root}; enrol people first (facerec enroll)")
        threshold, _ = match_threshold(recognizer.settings, names, fixed)
        return cls(recognizer.settings, key, X, names, threshold, store)

    def match(self, faces: list[Face]) -> list[Match]:
        """Names of embedded faces against the gallery."""
        if not faces:
            return []
        if len(self.X) == 0:  # nobody enrolled (allow_empty)
            return [Match(UNKNOWN, 0.0) for _ in faces]
        if self._matcher is None:
            self._matcher = fit_matcher(self.X, self.names, self.threshold)
        return self._matcher.match(np.stack([f.vector for f in faces]))

    def result(self, path: Path, sha: str, size, faces: list[Face], cached: bool,
               pixels: np.ndarray | None = None, note: str | None = None) -> PhotoResult:
        """The photo's result: matches stored for this gallery when ``cached`` and still
        valid, else matched now (and stored)."""
        matches = self.store.get_matches(sha, self.pipeline_key, self.gallery_key) if cached else None
        if matches is None or len(matches) != len(faces):
            matches = self.match(faces)
            self.store.put_matches(sha, self.pipeline_key, self.gallery_key, matches)
        return PhotoResult(path, list(zip(faces, matches)), size=size, cached=cached, pixels=pixels, note=note,
                           threshold=self.threshold, sha=sha)

    def cached(self, item: Item) -> PhotoResult | None:
        """The photo's result from the cache, or ``None`` when it must be processed."""
        hit = self.store.get(item.sha, self.pipeline_key)
        return None if hit is None else self.result(item.path, item.sha, hit[0], hit[1], True)

    def processed(self, item: Item, p: Prepared, keep_crops: bool = False) -> PhotoResult:
        """The result of a photo the engine processed: its faces stored (or a note why
        not), then matched; ``keep_crops`` keeps each face's aligned crop."""
        if p.error is not None:
            return PhotoResult(item.path, error=p.error)
        faces = [f.replace(crop=None) for f in p.faces]
        note = self.store.put(item.sha, self.pipeline_key, p.size, faces, str(item.path))
        res = self.result(item.path, item.sha, p.size, faces, False, p.pixels, note)
        if keep_crops:
            res = dataclasses.replace(res, faces=[(f, m) for f, (_, m) in zip(p.faces, res.faces)])
        return res


class EngineSlot:
    """The run's engine, built when first needed (a process pool or Ray only once some photo
    needs work), and the check that the embedder remembered by the cache is the one loaded.

    Args:
        choice: which engine.
        recognizer: the models; the embedder is loaded by :meth:`ensure_model` if not yet.
        keep_pixels: the thread engine keeps decoded pixels (for drawing).
        on_model: told the loaded embedder's ``(key, threshold)`` when this slot loads it.
    """

    def __init__(self, choice: EngineChoice, recognizer: FaceRecognizer, keep_pixels: bool = False,
                 on_model: Callable[[str, float], None] | None = None) -> None:
        self.choice, self.recognizer, self.keep_pixels, self.on_model = choice, recognizer, keep_pixels, on_model
        self.engine: Engine | None = None
        self.key: str | None = None
        self.checked = True
        self.in_flight = 0  # units submitted and not yet collected

    def expect(self, key: str, checked: bool) -> None:
        """The run matches with embedder ``key``; ``checked``: it is the loaded one already."""
        self.key, self.checked = key, checked

    def ensure_model(self) -> None:
        """Load the embedder (once) and check it is the one the cache remembered.

        Raises:
            FaceRecError: it is another one (the cache is then updated: run again).
        """
        if self.checked:
            return
        self.checked = True
        emb = self.recognizer.embedder
        if self.on_model:
            self.on_model(emb.key, emb.threshold)
        if emb.key != self.key:
            raise FaceRecError(f"the tag cache remembered embedder {self.key} but it is now {emb.key}; "
                               "the cache is updated: run again")

    def submit(self, items: list[Item]):
        """Start one unit of work (building the engine first if needed); a thread engine
        decodes and detects while the embedder loads here."""
        if self.engine is None:
            self.ensure_model()
            self.engine = self.choice.build(self.recognizer, keep_pixels=self.keep_pixels)
        handle = self.engine.submit(items)
        self.ensure_model()
        return handle

    @property
    def full(self) -> bool:
        """Whether the engine has its window of units in flight (the queue to it is full)."""
        return self.engine is not None and self.in_flight >= self.engine.window

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


class Batcher:
    """The batching policy between reading and the engine: photos gather into a unit of
    work until :meth:`EngineChoice.unit` photos (decided by the last photo's file size)."""

    def __init__(self, choice: EngineChoice) -> None:
        self.choice = choice
        self.pending: list[Item] = []

    def add(self, item: Item) -> list[Item] | None:
        """Add a photo; returns a full unit of work (taken out) or ``None``."""
        self.pending.append(item)
        return self.drain() if len(self.pending) >= self.choice.unit(len(item.data)) else None

    def drain(self) -> list[Item] | None:
        """Whatever is gathered, as one unit (``None`` when nothing is)."""
        unit, self.pending = self.pending, []
        return unit or None


class InOrderWriter:
    """The reorder buffer: results leave in input order. Finished photos (failed reads,
    cache hits) and units of work in flight queue up in order; at the front, consecutive
    finished units are collected together (one embedding batch for threads) and turned
    into results by ``finish``. Bounded: the caller waits (:meth:`ready` with ``block``)
    while :attr:`in_flight` units fill the engine's window."""

    def __init__(self, slot: EngineSlot, finish: Callable[[Item, Prepared], PhotoResult]) -> None:
        from collections import deque

        self.slot, self.finish = slot, finish
        self._order: deque = deque()  # PhotoResult, or (handle, [items]) of a unit in flight

    def __bool__(self) -> bool:
        return bool(self._order)

    def done(self, result: PhotoResult) -> None:
        """A photo finished already (its place in the order is kept)."""
        self._order.append(result)

    def work(self, unit: list[Item] | None) -> None:
        """Submit a unit of work (nothing for ``None``)."""
        if unit:
            self._order.append((self.slot.submit(unit), unit))
            self.slot.in_flight += 1

    def ready(self, block: bool) -> Iterator[PhotoResult]:
        """Yield the finished results at the front (waiting for the first unit if ``block``)."""
        engine = self.slot.engine
        while self._order:
            if isinstance(self._order[0], PhotoResult):
                yield self._order.popleft()
                continue
            units = []
            for entry in self._order:
                if isinstance(entry, PhotoResult) or not (engine.done(entry[0]) or (block and not units)):
                    break
                units.append(entry)
            if not units:
                return
            block = False
            for _ in units:
                self._order.popleft()
            self.slot.in_flight -= len(units)
            prepared = engine.results([handle for handle, _ in units])
            for item, p in zip([it for _, items in units for it in items], prepared):
                yield self.finish(item, p)


def tag_photos(recognizer: FaceRecognizer, paths: Iterable[Path], *, cache: "TagCache | CacheSession | None" = None,
               workers: int = 0, engine: str = "local",
               worker_factory: Callable[[], PhotoWorker] | None = None,
               model: tuple[str, float] | None = None, batch_size: int = 8,
               refresh_progress: Callable[[Iterable], Iterable] | None = None,
               ray_address: str | None = None, keep_pixels: bool = False, keep_crops: bool = False,
               on_model: Callable[[str, float], None] | None = None,
               allow_empty: bool = False) -> Iterator[PhotoResult]:
    """Name every face in each photo, using and filling the tag cache; failures become results.

    The stages overlap, with bounded queues between them: read and hash (:func:`read_stage`,
    lazily) -> cache lookup (:class:`MatchingContext`) -> batching (:class:`Batcher`) ->
    the engine (decode -> detect -> align -> embed; at most its window of units in flight)
    -> the in-order writer (:class:`InOrderWriter`) -> store in the cache and match.
    Reading and decoding start while the models load (:func:`load_while_reading`), so
    memory stays bounded whatever the folder holds.

    A cache on a full disk does not end the run: writing to it stops, and each photo not
    stored carries a :attr:`PhotoResult.note` (:class:`~facerec.tagcache.CacheSession`).

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
        keep_crops: keep each face's aligned crop (threads; not for cached photos).
        on_model: called with the loaded embedder's ``(key, threshold)`` whenever this
            run had to load it (to remember it with :meth:`TagCache.set_model`).
        allow_empty: with nobody enrolled, tag every face ``unknown`` instead of raising
            :class:`EmptyGalleryError` (the photo library: faces are found and grouped first).

    Yields:
        One :class:`PhotoResult` per photo, in the order of ``paths``.

    Raises:
        EmptyGalleryError, ModelUnavailableError: problems that concern every
            photo end the run instead of failing each one.
    """
    choice = EngineChoice.of(engine, workers, worker_factory, batch_size, ray_address)
    store = cache if isinstance(cache, CacheSession) else CacheSession(cache)
    slot = EngineSlot(choice, recognizer, keep_pixels, on_model)
    try:
        if choice.eager:  # threads only: no model is loaded before a photo needs one
            slot.engine = choice.build(recognizer, keep_pixels=keep_pixels)
        paths = iter(paths)
        early: list = []
        loaded = model is None
        if loaded:
            model, early = load_while_reading(recognizer, slot.engine, paths)
            if on_model:
                on_model(*model)
        slot.expect(model[0], checked=loaded)
        context = MatchingContext.open(recognizer, model, store, refresh_progress, allow_empty)
        yield from _run(context, slot, read_stage(early, paths), keep_crops)
    finally:
        slot.close()


def _run(context: MatchingContext, slot: EngineSlot, items: Iterable["Item | PhotoResult"],
         keep_crops: bool) -> Iterator[PhotoResult]:
    """Drive the stages of :func:`tag_photos` over ``items`` (read photos or failed reads)."""
    writer = InOrderWriter(slot, partial(context.processed, keep_crops=keep_crops))
    batcher = Batcher(slot.choice)
    for item in items:
        hit = item if isinstance(item, PhotoResult) else context.cached(item)
        if hit is not None:
            writer.done(hit)
        else:
            writer.work(batcher.add(item))
        while slot.full:
            yield from writer.ready(block=True)
        yield from writer.ready(block=False)
    writer.work(batcher.drain())
    while writer:
        yield from writer.ready(block=True)
