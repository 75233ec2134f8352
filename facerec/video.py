"""Live video: name the faces of a frame stream without stalling it.

:class:`LiveProcessor` is what the app's Live page (and ``benchmarks/live_fps.py``)
feeds frames to. The caller's thread (the video thread) only tracks and draws;
detection, embedding and matching run in one background worker on the most
recent frame it was handed, every ``every`` frames at most, on a copy of the
frame downscaled to ``detect_side`` pixels. Between detections the boxes are
carried forward with each track's velocity. A track is named only once its
last ``confirm`` matches agree, so labels do not flicker; the people in view
(name, score, since when) and the frame rate are read with :meth:`snapshot`,
which is safe to call from any thread. Nothing here touches Streamlit.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from facerec.draw import PENDING, draw_labels, label_text
from facerec.errors import EmptyGalleryError, FaceRecError
from facerec.pipeline import FaceRecognizer
from facerec.types import UNKNOWN, Face, Match, iou
from facerec.verdict import verdict

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TrackedFace:
    """One face followed across frames.

    Attributes:
        track_id: stable id while the face stays in view.
        box: ``(x, y, w, h)`` in pixels of the current frame (predicted between detections).
        match: the confirmed name and its latest score, or ``None`` while the
            last matches do not agree yet.
        since: wall-clock time (``time.time()``) the current name was confirmed.
        threshold: the recognition threshold the match was judged against (``None``: not known
            yet); labels then say a verdict (see :mod:`facerec.verdict`) instead of a raw score.
    """

    track_id: int
    box: Box
    match: Match | None
    since: float | None
    threshold: float | None = None

    @property
    def label(self) -> str:
        """What is drawn over the face: ``"Ann"`` (a match), ``"Ann?"`` (a possible match),
        ``"unknown"``, or ``"..."`` while not confirmed; ``"name 0.87"`` without a threshold."""
        if self.match is None:
            return PENDING
        if self.threshold is None:
            return label_text(self.match)
        return verdict(self.match, self.threshold).label


@dataclass(frozen=True)
class Presence:
    """Someone in view right now: name (``unknown`` for strangers), latest score, since when (``time.time()``)."""

    name: str
    score: float
    since: float


@dataclass(frozen=True)
class LiveSnapshot:
    """What the processor knows at one moment (immutable; safe to hand between threads).

    Attributes:
        faces: tracked faces of the latest frame.
        present: who is in view, known people first, then by name.
        fps: frames per second through :meth:`LiveProcessor.process` (last ~2 s).
        detections_per_s: completed detection rounds per second (last ~2 s).
        frames: frames processed so far.
        error: the latest error of the background worker, if any (one line).
        threshold: the recognition threshold in use, once the worker has loaded the models.
        looked: at least one detection round has finished (before it, "nobody" is not known yet).
    """

    faces: tuple[TrackedFace, ...] = ()
    present: tuple[Presence, ...] = ()
    fps: float = 0.0
    detections_per_s: float = 0.0
    frames: int = 0
    error: str | None = None
    threshold: float | None = None
    looked: bool = False


@dataclass
class _Track:
    """Mutable per-track state, owned by the video thread."""

    track_id: int
    box: Box
    frame: int  # frame index the box was detected on
    velocity: tuple[float, float] = (0.0, 0.0)  # box centre, pixels per frame
    history: deque = field(default_factory=deque)
    match: Match | None = None
    since: float | None = None
    misses: int = 0

    def predict(self, frame: int, horizon: int) -> Box:
        dt = min(max(frame - self.frame, 0), horizon)
        x, y, w, h = self.box
        return (x + self.velocity[0] * dt, y + self.velocity[1] * dt, w, h)


def _rate(times: deque, now: float, window: float = 2.0) -> float:
    while times and now - times[0] > window:
        times.popleft()
    if len(times) < 2:
        return 0.0
    span = times[-1] - times[0]
    return (len(times) - 1) / span if span > 0 else 0.0


class LiveProcessor:
    """Tracks and names faces in a stream of RGB uint8 ``(H, W, 3)`` frames.

    Args:
        recognizer: the (shared, thread-safe) recogniser; its gallery is re-read
            whenever it changes, so people enrolled meanwhile are recognised.
        every: run detection at most once per this many frames (2: up to 15 rounds a second at
            30 fps; 1 was slower on a loaded 2-core machine, the worker then competing with the
            video thread; benchmarks/live_fps.py).
        detect_side: frames are downscaled so their longer side is at most this
            for detection (boxes are mapped back; faces are cropped from the full frame).
            At 240 a 640x480 frame is detected at 240x180, so faces under about
            55 pixels (the detector's 20-pixel minimum) are not seen; 320 sees faces
            from about 40 pixels at roughly half the detection rate.
        confirm: consecutive matching detections needed before a name is shown
            (2 keeps a known face named within a second on a busy 2-core laptop;
            benchmarks/live_fps.py).
        max_misses: a track is dropped after this many detection rounds without it.
        min_iou: overlap needed to continue a track with a new detection.
        background: run detection in a worker thread (default); ``False`` runs it
            inline in :meth:`process` (deterministic, for tests).
        clock: monotonic clock for rates; ``wall`` gives the ``since`` times.
        recorder: called in the video thread after each finished detection round with the
            confirmed known people in view, ``[(name, box), ...]``, and the current frame
            (e.g. :meth:`facerec.history.HistoryWriter.observe`); it must not block.
    """

    def __init__(self, recognizer: FaceRecognizer, every: int = 2, detect_side: int = 240, confirm: int = 2,
                 max_misses: int = 2, min_iou: float = 0.3, background: bool = True,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 recorder: Callable[[list[tuple[str, Box]], np.ndarray], None] | None = None) -> None:
        if every < 1 or confirm < 1 or detect_side < 64:
            raise ValueError("every and confirm must be >= 1, detect_side >= 64")
        self.recognizer = recognizer
        self.every, self.detect_side, self.confirm = every, detect_side, confirm
        self.max_misses, self.min_iou = max_misses, min_iou
        self.background = background
        self._clock, self._wall = clock, wall
        self._tracks: list[_Track] = []
        self._present: tuple[Presence, ...] = ()  # who is in view, updated per detection round
        self._next_id = 0
        self._frame = 0
        self._last_submit = -every
        self._frame_times: deque = deque()
        self._detect_times: deque = deque()
        self._error: str | None = None
        self._snapshot = LiveSnapshot()
        self._snap_lock = threading.Lock()
        # worker hand-over: one pending frame in, one finished result out
        self._cond = threading.Condition()
        self._pending: tuple[int, np.ndarray] | None = None
        self._busy = False
        self._result: tuple[int, list[tuple[Face, Match]]] | None = None
        self._stop = False
        self._worker: threading.Thread | None = None
        self.idle_exit = 30.0  # seconds without frames before the worker thread ends
        self.recorder = recorder
        self._threshold: float | None = None  # set by the worker once the models are loaded
        self._looked = False  # a detection round has finished

    # -- the video thread ---------------------------------------------------------

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Track, name and draw the faces of one frame; returns an annotated copy.

        Never waits for the models in background mode: the frame is handed to
        the worker if it is idle and due, and the latest finished detection is used.
        """
        index = self._frame
        self._frame += 1
        now = self._clock()
        self._frame_times.append(now)
        if self.background:
            self._submit(index, frame)
            with self._cond:
                result, self._result = self._result, None
            if result is not None:
                self._update(*result)
        elif index - self._last_submit >= self.every:
            self._last_submit = index
            result = (index, self._detect(frame))
            self._update(*result)
        else:
            result = None
        faces = tuple(
            TrackedFace(t.track_id, t.predict(index, 2 * self.every), t.match, t.since, self._threshold)
            for t in self._tracks
        )
        if result is not None and self.recorder is not None:
            seen = [(f.match.name, f.box) for f in faces if f.match is not None and f.match.known]
            if seen:
                try:
                    self.recorder(seen, frame)
                except Exception as exc:  # recording must never stop the video
                    self._error = f"history: {type(exc).__name__}: {exc}"
        snap = LiveSnapshot(faces, self._present, _rate(self._frame_times, now),
                            _rate(self._detect_times, now), self._frame, self._error,
                            self._threshold, self._looked)
        with self._snap_lock:
            self._snapshot = snap
        return draw_labels(frame, [(f.box, f.label, _known(f.match)) for f in faces])

    def snapshot(self) -> LiveSnapshot:
        """The latest state (any thread)."""
        with self._snap_lock:
            return self._snapshot

    def _submit(self, index: int, frame: np.ndarray) -> None:
        with self._cond:
            if self._busy or self._pending is not None or index - self._last_submit < self.every:
                return
            self._last_submit = index
            self._pending = (index, frame.copy())
            if self._worker is None or not self._worker.is_alive():
                self._stop = False
                self._worker = threading.Thread(target=self._run, name="facerec-live", daemon=True)
                self._worker.start()
            self._cond.notify_all()

    def _update(self, index: int, found: list[tuple[Face, Match]]) -> None:
        """Merge one finished detection round (made on frame ``index``) into the tracks."""
        self._looked = True
        self._detect_times.append(self._clock())
        pairs = sorted(
            ((iou(t.predict(index, 2 * self.every), f.box), ti, fi)
             for ti, t in enumerate(self._tracks) for fi, (f, _) in enumerate(found)),
            reverse=True,
        )
        used_t, used_f = set(), set()
        for overlap, ti, fi in pairs:
            if overlap < self.min_iou:
                break
            if ti in used_t or fi in used_f:
                continue
            used_t.add(ti)
            used_f.add(fi)
            track, (face, match) = self._tracks[ti], found[fi]
            if index > track.frame:
                (x0, y0, w0, h0), (x1, y1, w1, h1) = track.box, face.box
                dt = index - track.frame
                track.velocity = (((x1 + w1 / 2) - (x0 + w0 / 2)) / dt, ((y1 + h1 / 2) - (y0 + h0 / 2)) / dt)
            track.box, track.frame, track.misses = face.box, index, 0
            self._observe(track, match)
        for ti, track in enumerate(self._tracks):
            if ti not in used_t:
                track.misses += 1
        self._tracks = [t for t in self._tracks if t.misses <= self.max_misses]
        for fi, (face, match) in enumerate(found):
            if fi not in used_f:
                track = _Track(self._next_id, face.box, index, history=deque(maxlen=self.confirm))
                self._next_id += 1
                self._observe(track, match)
                self._tracks.append(track)
        self._present = self._presence()

    def _observe(self, track: _Track, match: Match) -> None:
        track.history.append(match)
        names = {m.name for m in track.history}
        if len(track.history) == self.confirm and len(names) == 1:
            if track.match is None or track.match.name != match.name:
                track.since = self._wall()
            track.match = match
        elif track.match is not None and match.name == track.match.name:
            track.match = match  # same person, fresher score

    def _presence(self) -> tuple[Presence, ...]:
        known: dict[str, Presence] = {}
        strangers = []
        for t in self._tracks:
            if t.match is None or t.since is None:
                continue
            p = Presence(t.match.name, t.match.score, t.since)
            if p.name == UNKNOWN:
                strangers.append(p)
            elif p.name not in known or p.since < known[p.name].since:
                known[p.name] = p
        return tuple(sorted(known.values(), key=lambda p: p.name.casefold())) + tuple(
            sorted(strangers, key=lambda p: p.since))

    # -- the worker -----------------------------------------------------------------

    def _detect(self, frame: np.ndarray) -> list[tuple[Face, Match]]:
        """Detect on a downscaled copy, crop and embed from the full frame, match."""
        try:
            faces = self.recognizer.path.frame_faces(frame, self.detect_side)
            try:
                matches = self.recognizer.match(faces)
            except EmptyGalleryError:
                matches = [Match(UNKNOWN, 0.0) for _ in faces]
            self._threshold = self.recognizer.threshold
            self._error = None
            return list(zip(faces, matches))
        except FaceRecError as exc:
            self._error = str(exc)
            return []

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._pending is None and not self._stop:
                    self._cond.wait(self.idle_exit)
                if self._stop or self._pending is None:  # stopped, or idle (a stream ended): exit;
                    self._worker = None  # the next frame starts a new worker
                    return
                (index, frame), self._pending = self._pending, None
                self._busy = True
            try:
                found = self._detect(frame)
            except Exception as exc:  # keep the worker alive; report in the snapshot
                self._error = f"{type(exc).__name__}: {exc}"
                found = []
            with self._cond:
                self._result = (index, found)
                self._busy = False
                self._cond.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until the worker has nothing pending or running (benchmarks, tests)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """Stop the worker thread (pending work is dropped)."""
        with self._cond:
            self._stop = True
            self._pending = None
            self._cond.notify_all()
        worker = self._worker
        if worker is not None:
            worker.join(timeout=10)


def _known(match: Match | None) -> bool | None:
    return None if match is None else match.known
