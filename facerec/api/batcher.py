"""Faces from concurrent requests embedded in one batch (a micro-batcher in front of the embedder).

Each request's worker thread detects and aligns its photo's faces, then hands the aligned
crops to :meth:`EmbedBatcher.embed` and waits. One embedding thread takes whatever crops
are queued at that moment (from every request waiting, until ``max_batch`` faces), runs
them through the embedder in one forward pass and hands each request its own vectors back.
While it runs, more requests queue up for the next pass: under load batches grow by
themselves, and a lone request waits for nobody (no fixed delay is added).

The queue is bounded (``max_queue`` requests); a request that finds it full gets
:class:`BatcherBusyError` at once, so memory stays bounded whatever the load.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from facerec.errors import FaceRecError


class BatcherBusyError(FaceRecError):
    """The embedding queue is full (the server is overloaded): try again in a moment."""

    exit_code = 5


@dataclass
class _Job:
    crops: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    vectors: np.ndarray | None = None
    error: BaseException | None = None


@dataclass
class BatchStats:
    """What the embedding thread did: passes run, crops embedded, the largest batch."""

    passes: int = 0
    crops: int = 0
    largest: int = 0
    requests_batched: int = 0  # requests that shared a pass with another


class EmbedBatcher:
    """One embedding thread serving every request of the process.

    Args:
        embed_crops: ``(n, S, S, 3) uint8 -> (n, D) float32`` (the recogniser's embedder).
        max_batch: faces per forward pass at most (requests are never split: a request with
            more faces than this runs alone).
        max_queue: requests waiting at most; more get :class:`BatcherBusyError`.
    """

    def __init__(self, embed_crops: Callable[[np.ndarray], np.ndarray], max_batch: int = 32,
                 max_queue: int = 256) -> None:
        self._embed_crops = embed_crops
        self.max_batch = max(1, max_batch)
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max(1, max_queue))
        self.stats = BatchStats()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def _start(self) -> None:
        with self._lock:
            if self._closed:
                raise FaceRecError("the embedding thread is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="facerec-embed-batcher", daemon=True)
                self._thread.start()

    def embed(self, crops: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """Vectors of aligned ``crops`` (embedded together with other requests' crops).

        Raises:
            BatcherBusyError: the queue is full; TimeoutError: no answer within ``timeout``;
            whatever the embedder raised for the batch.
        """
        crops = np.asarray(crops)
        if len(crops) == 0:
            return self._embed_crops(crops)
        self._start()
        job = _Job(crops)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise BatcherBusyError("server busy: the embedding queue is full; try again in a moment") from None
        if not job.done.wait(timeout):
            raise TimeoutError("no embedding within the time limit")
        if job.error is not None:
            raise job.error
        assert job.vectors is not None
        return job.vectors

    def _take(self) -> list[_Job] | None:
        """The next batch: one job (waiting for it), then every job queued now that fits."""
        first = self._queue.get()
        if first is None:
            return None
        jobs, n = [first], len(first.crops)
        while n < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:  # close() after this batch
                self._queue.put(None)
                break
            jobs.append(job)
            n += len(job.crops)
        return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            try:
                vectors = self._embed_crops(np.concatenate([j.crops for j in jobs]))
                i = 0
                for j in jobs:
                    j.vectors = vectors[i:i + len(j.crops)]
                    i += len(j.crops)
            except BaseException as exc:  # each waiting request gets the error, the thread keeps going
                for j in jobs:
                    j.error = exc
            s = self.stats
            s.passes += 1
            s.crops += sum(len(j.crops) for j in jobs)
            s.largest = max(s.largest, sum(len(j.crops) for j in jobs))
            s.requests_batched += len(jobs) if len(jobs) > 1 else 0
            for j in jobs:
                j.done.set()

    def close(self, timeout: float = 10.0) -> None:
        """Embed what is queued, then end the thread (later calls raise)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)
