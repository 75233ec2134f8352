"""Who runs the tagger's per-photo work: threads, worker processes or Ray, behind one interface.

The per-photo work is :class:`PhotoWorker`'s: decode -> detect -> align -> embed, over the
one face path (:class:`facerec.facepath.FacePath`). An :class:`Engine` runs it on units of
work (a few photos) and hands back :class:`Prepared` photos in the order they were
submitted; :class:`EngineChoice` says which engine a run uses and builds it. The tagger
(:func:`facerec.tagging.tag_photos`) sees only the :class:`Engine` interface.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

import numpy as np

from facerec.errors import FaceRecError, ImageError
from facerec.facepath import FacePath, Models
from facerec.images import Photo
from facerec.types import Face

if TYPE_CHECKING:
    from facerec.detect import Detector
    from facerec.pipeline import FaceRecognizer


@dataclass(frozen=True)
class Prepared:
    """One photo after the per-photo work.

    Attributes:
        name: the photo's path, as text.
        size: ``(width, height)`` as displayed, or ``None`` on failure.
        faces: faces in displayed-photo pixels, with ``crop`` (``(S, S, 3)`` uint8) after
            alignment and ``vector`` (``(D,)`` float32) after embedding.
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

    The thread engine runs them in threads with queues between them; Ray actors and
    worker processes hold one worker each and run :meth:`process` on photo bytes.
    Models are built on first use (thread-safe).

    Args:
        settings: decides the detector, the embedder and the decoding size.
        detector, embedder: use these instead of building them from ``settings``.
        keep_pixels: keep each decoded photo in :attr:`Prepared.pixels` (for drawing).
        models: share these models (built on first use) instead.
        path: share this face path (and its models) instead.
    """

    def __init__(self, settings, detector: "Detector | None" = None, embedder=None,
                 keep_pixels: bool = False, models: Models | None = None, path: FacePath | None = None) -> None:
        self.settings = settings
        self.path = path or FacePath(settings, models or Models(settings, detector, embedder))
        self.models = self.path.models
        self.keep_pixels = keep_pixels

    @classmethod
    def for_recognizer(cls, recognizer: "FaceRecognizer", keep_pixels: bool = False) -> "PhotoWorker":
        """A worker sharing the recogniser's face path and models (loaded when first needed)."""
        return cls(recognizer.settings, keep_pixels=keep_pixels, path=recognizer.path)

    @property
    def detector(self) -> "Detector":
        return self.models.detector

    @property
    def embedder(self):
        return self.models.embedder

    def decode(self, name: str, data: bytes) -> Prepared:
        """Bytes -> a reduced decode (:attr:`Prepared.pixels`) and the displayed size."""
        try:
            photo = self.path.read(data, name)
        except ImageError as exc:
            return Prepared(name, error=str(exc))
        except MemoryError:
            return Prepared(name, error=f"{name}: image too large for memory")
        return Prepared(name, photo.size, pixels=photo.pixels)

    def _locate(self, todo: list[Prepared]) -> list[list[Face] | str]:
        """Faces of each photo, or its error text: together, else (one failed) one by one."""
        try:
            return list(self.path.locate([Photo(p.pixels, p.size) for p in todo]))
        except Exception:  # noqa: BLE001 - one bad photo must not sink the others: one by one
            found: list[list[Face] | str] = []
            for p in todo:
                try:
                    found.append(self.path.locate([Photo(p.pixels, p.size)])[0])
                except Exception as exc:  # noqa: BLE001 - any detector failure becomes this photo's error
                    found.append(f"{p.name}: face detection failed ({type(exc).__name__}: {exc})")
            return found

    def detect(self, batch: Sequence[Prepared]) -> list[Prepared]:
        """Faces found and aligned (crops at the embedder's input size), boxes in displayed
        pixels; same-size photos are detected together. A photo whose detection fails gets
        an ``error`` and the others go on."""
        done = iter(self._locate([p for p in batch if p.error is None]))
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
        groups = self.path.embed_groups([p.faces for p in batch])
        return [dataclasses.replace(p, faces=fs) for p, fs in zip(batch, groups)]

    def process(self, items: Sequence[tuple[str, bytes]]) -> list[Prepared]:
        """Every stage for a batch of ``(name, bytes)``, in turn (what remote workers run);
        crops are dropped from the result, pixels too unless asked for."""
        done = self.embed(self.detect([self.decode(name, data) for name, data in items]))
        return [dataclasses.replace(p, faces=[f.replace(crop=None) for f in p.faces]) for p in done]


class Work(Protocol):
    """One photo to process: its path, bytes, and a decode already started (or ``None``)."""

    path: Any
    data: bytes
    prefetched: Any


class Engine(Protocol):
    """What runs the per-photo work. ``window``: units of work in flight at most (the
    bound of the queue between the tagger and the engine)."""

    window: int

    def warm(self) -> None:
        """Start loading what the work needs, if this engine can do so in the background."""

    def prefetch(self, name: str, data: bytes) -> Any:
        """Start the first stage of one photo now (a handle passed back in its :class:`Work`), or ``None``."""

    def submit(self, items: Sequence[Work]) -> Any:
        """Start one unit of work; returns its handle."""

    def done(self, handle: Any) -> bool:
        """Whether the unit behind ``handle`` is finished (never waits)."""

    def results(self, handles: list) -> list[Prepared]:
        """The embedded photos of the units behind ``handles``, in order (waits for them)."""

    def close(self) -> None:
        """Stop the engine (work not collected is dropped)."""


class ThreadEngine:
    """The stages in this process, overlapped: two decoding threads (Pillow releases the
    GIL), two detecting and aligning threads (TensorFlow releases it; a detector that is
    not ``thread_safe`` runs one photo at a time), and the caller's thread embedding
    whatever is ready in one batch. At most ``window`` units are in flight, so memory is
    bounded whatever the folder; results come back in submission order."""

    def __init__(self, worker: PhotoWorker, window: int = 12, detect_threads: int = 2) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.worker = worker
        self.window = window
        self._decode = ThreadPoolExecutor(2, thread_name_prefix="facerec-decode")
        self._detect = ThreadPoolExecutor(detect_threads, thread_name_prefix="facerec-detect")

    def warm(self) -> None:
        """Start loading the detector now (while the embedder loads elsewhere)."""
        self._detect.submit(lambda: self.worker.detector)

    def prefetch(self, name: str, data: bytes):
        """Start decoding one photo (a future of :meth:`PhotoWorker.decode`)."""
        # in the caller's context, so a pixel budget it set (images.pixel_budget) is charged
        return self._decode.submit(contextvars.copy_context().run, self.worker.decode, name, data)

    def submit(self, items: Sequence[Work]):
        """Decode each photo (unless already started), then detect and align them together
        (a future of their :class:`Prepared`)."""
        decoded = [w.prefetched or self.prefetch(str(w.path), w.data) for w in items]
        return self._detect.submit(lambda: self.worker.detect([d.result() for d in decoded]))

    @staticmethod
    def done(handle) -> bool:
        return handle.done()

    def results(self, handles: list) -> list[Prepared]:
        """Embedded results of finished handles (``handles[0]`` waited for), in one batch."""
        return self.worker.embed([p for h in handles for p in h.result()])

    def close(self) -> None:
        self._decode.shutdown(wait=True, cancel_futures=True)
        self._detect.shutdown(wait=True, cancel_futures=True)


class _RemoteEngine:
    """Shared by the engines that run :meth:`PhotoWorker.process` elsewhere: nothing to warm
    or prefetch in this process (photo bytes are sent as they are)."""

    window = 2

    def warm(self) -> None:
        pass

    def prefetch(self, name: str, data: bytes) -> None:
        return None

    @staticmethod
    def _payload(items: Sequence[Work]) -> list[tuple[str, bytes]]:
        return [(str(w.path), w.data) for w in items]


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


class ProcessEngine(_RemoteEngine):
    """:meth:`PhotoWorker.process` in worker processes (``forkserver``/``spawn``: TensorFlow
    does not survive ``fork`` after import); each builds its worker once."""

    def __init__(self, factory: Callable[[], PhotoWorker], workers: int) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context(method), initializer=_pool_init,
                                        initargs=(factory,))
        self.window = 2 * workers

    def submit(self, items: Sequence[Work]):
        return self.pool.submit(_pool_process, self._payload(items))

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


class RayEngine(_RemoteEngine):
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

    def submit(self, items: Sequence[Work]):
        self._next = (self._next + 1) % len(self.actors)
        return self.actors[self._next].process.remote(self._payload(items))

    def done(self, ref) -> bool:
        return bool(self._ray.wait([ref], timeout=0)[0])

    def results(self, handles: list) -> list[Prepared]:
        return [p for batch in self._ray.get(list(handles)) for p in batch]

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)
        if self._own:
            self._ray.shutdown()


SMALL_FILE_BYTES = 100_000
"""Files up to this size (photos of a few hundred pixels) go through the thread engine
LOCAL_BATCH at a time, so their detection is batched; larger ones one by one."""
LOCAL_BATCH = 8


@dataclass(frozen=True)
class EngineChoice:
    """Which engine a run uses, and how it is built.

    Attributes:
        kind: ``"threads"`` (this process), ``"processes"`` or ``"ray"``.
        workers: worker processes or Ray actors (0 with Ray: one per CPU of the cluster).
        factory: builds a :class:`PhotoWorker` in each worker (picklable), or ``None``:
            one sharing the recogniser's models, for threads.
        batch_size: photos per unit of work sent to worker processes or actors.
        ray_address: the Ray cluster's address (``None``: ``$RAY_ADDRESS`` or a local one).
    """

    kind: str
    workers: int
    factory: Callable[[], PhotoWorker] | None
    batch_size: int = 8
    ray_address: str | None = None

    @classmethod
    def of(cls, engine: str, workers: int, factory: Callable[[], PhotoWorker] | None, batch_size: int = 8,
           ray_address: str | None = None) -> "EngineChoice":
        """From ``tag``'s options: ``engine="ray"``, else processes when ``workers > 0``, else threads."""
        kind = "ray" if engine == "ray" else "processes" if workers > 0 else "threads"
        return cls(kind, workers, factory, batch_size, ray_address)

    @property
    def eager(self) -> bool:
        """Built before any model is loaded (threads sharing the recogniser's lazily loaded
        models cost nothing to start); the others only once some photo needs work."""
        return self.kind == "threads" and self.factory is None

    def unit(self, size_bytes: int) -> int:
        """The batching policy: photos per unit of work for a file of ``size_bytes``. Threads
        take one photo per unit, except small files (250x250 crops and the like: detecting
        several same-size photos at once is faster); remote workers ``batch_size``."""
        if self.kind != "threads":
            return self.batch_size
        return LOCAL_BATCH if size_bytes <= SMALL_FILE_BYTES else 1

    def build(self, recognizer: "FaceRecognizer", keep_pixels: bool = False) -> Engine:
        """The engine, its workers started."""
        if self.kind == "threads":
            worker = (self.factory() if self.factory is not None
                      else PhotoWorker.for_recognizer(recognizer, keep_pixels=keep_pixels))
            return ThreadEngine(worker)
        factory = self.factory or partial(PhotoWorker, recognizer.settings)
        if self.kind == "ray":
            return RayEngine(factory, self.workers, address=self.ray_address)
        return ProcessEngine(factory, self.workers)
