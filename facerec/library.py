"""The photo library: folders scanned through the tagging pipeline, unnamed faces grouped to be
named once, "Is this Ann?" suggestions, and answers that stick.

:class:`Library` is the service every front end calls (the app's Library page; nothing here
touches Streamlit). It stands on the tagger (:func:`facerec.tagging.tag_photos`, with its
cache), the unknown-face grouping (:mod:`facerec.cluster`), the person lifecycle
(:class:`facerec.people.People`: every enrolment goes through its checks) and its own store
(:class:`facerec.librarystore.LibraryStore`).

Who a library face is (:meth:`Library.faces`), in order:

1. the user said so (``yes``: a named group, a confirmed suggestion): that name, kind
   ``confirmed``, whatever the matcher now says;
2. a sure match (:mod:`facerec.verdict`) the user has not rejected: that name, kind ``match``;
3. a possible match (just above the threshold) not rejected: unnamed, kind ``possible match``,
   offered as a suggestion for that person;
4. else ``unknown``: grouped with faces like it (:meth:`Library.groups`).

Answers are kept by photo content hash and face box (:mod:`facerec.librarystore`), so
rescans, another detector or base, and a new threshold never lose them.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facerec.errors import ConfirmationNeededError, FaceRecError, MetadataError
from facerec.librarystore import ALONE, GROUP, HIDDEN, NO, SAME_FACE_IOU, YES, LibraryStore, Mark, StoredPhoto
from facerec.people import People
from facerec.types import UNKNOWN, Face, Match, iou
from facerec.verdict import MATCH, POSSIBLE, UNKNOWN_VERDICT, margin, verdict

if TYPE_CHECKING:
    from facerec.cluster import ClusterEnrolment
    from facerec.pipeline import FaceRecognizer
    from facerec.tagcache import TagCache

CONFIRMED = "confirmed"
NAMED_KINDS = (CONFIRMED, MATCH)


@dataclass(frozen=True)
class LibraryFace:
    """One face of a library photo and who the library says it is.

    Attributes:
        path: the photo. sha: its content hash. idx: its number in the photo (0-based).
        box: ``(x, y, w, h)`` in displayed-photo pixels.
        name: the person, or ``"unknown"`` (a possible match is unnamed: see ``guess``).
        kind: ``"confirmed"`` (the user said so), ``"match"``, ``"possible match"`` or ``"unknown"``.
        score: the matcher's similarity to ``guess``.
        guess: the matcher's best person when above the threshold (a possible match's
            person), else ``"unknown"``.
        rejected: names the user said this face is not.
        vector: the identity vector (``None`` if none was stored).
    """

    path: Path
    sha: str
    idx: int
    box: tuple[float, float, float, float]
    name: str
    kind: str
    score: float
    guess: str = UNKNOWN
    rejected: frozenset[str] = frozenset()
    vector: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> str:
        """A stable name for the face: ``"<sha>:<x>,<y>,<w>,<h>"`` (whole pixels)."""
        return f"{self.sha}:" + ",".join(str(round(v)) for v in self.box)

    @property
    def named(self) -> bool:
        return self.kind in NAMED_KINDS


@dataclass(frozen=True)
class FaceGroup:
    """Unnamed faces that look like one person, biggest group first.

    Attributes:
        key: the key of its first face (stable while the group is unchanged).
        faces: its faces, in library order.
    """

    key: str
    faces: tuple[LibraryFace, ...]

    def __len__(self) -> int:
        return len(self.faces)


@dataclass(frozen=True)
class ScanReport:
    """What a scan did: photos in the library's folders, processed or served from the
    tag cache, skipped as unchanged since the last scan, failed (path, reason), removed (gone)."""

    photos: int = 0
    processed: int = 0
    cached: int = 0
    unchanged: int = 0
    failed: tuple[tuple[str, str], ...] = ()
    removed: int = 0


@dataclass(frozen=True)
class SidecarReport:
    """What :meth:`Library.write_sidecars` did: sidecars written (or merged into), photos with
    nothing to write, and failures ``(path, reason)`` (each sidecar left as it was)."""

    written: tuple[Path, ...] = ()
    nothing: int = 0
    failed: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Suggestion:
    """A face close to a person but not named as them: "Is this NAME?" with its similarity."""

    face: LibraryFace
    name: str
    score: float


class Library:
    """The photo library of one recogniser's gallery.

    Args:
        recognizer: its gallery receives the named faces; its models tag the photos.
        store: the library file (default: the gallery's ``.facerec/library.sqlite``).
    """

    def __init__(self, recognizer: FaceRecognizer, store: LibraryStore | None = None) -> None:
        self.rec = recognizer
        self.people = People(recognizer)
        self.store = store or LibraryStore(recognizer.gallery.root)

    def close(self) -> None:
        self.store.close()

    # -- folders -------------------------------------------------------------------------------

    def folders(self) -> list[Path]:
        return self.store.folders()

    def add_folder(self, folder: str | Path, roots: Sequence[Path]) -> Path:
        """Add a folder under the allowed ``roots`` (its real path; symlinks resolved).

        Raises:
            FaceRecError: outside the roots, or not a folder (the message says how to allow one).
        """
        from facerec.auth import allowed_folder

        path = allowed_folder(folder, roots)
        self.store.add_folder(path)
        return path

    # -- scanning ------------------------------------------------------------------------------

    def photo_paths(self, roots: Sequence[Path] | None = None) -> list[Path]:
        """Every photo under the library's folders (and, given ``roots``, still within them)."""
        from facerec.auth import within_roots
        from facerec.tagging import find_photos

        folders = [f for f in self.store.folders() if f.is_dir()]
        paths = list(dict.fromkeys(find_photos(folders))) if folders else []
        return [p for p in paths if roots is None or within_roots(p, roots)]

    def scan(self, cache: TagCache | None = None, progress: Callable[[int, int], None] | None = None,
             stop: threading.Event | None = None, roots: Sequence[Path] | None = None) -> ScanReport:
        """Scan the library's folders: photos new or changed since the last scan are tagged (through
        the tag cache: a photo seen before, even moved, is not processed again), deleted ones are
        dropped, then every face is matched against the gallery as it is now. Each photo is
        stored as it is done, so a stopped scan resumes where it stopped.

        Args:
            cache: the tag cache (default: none).
            progress: told ``(done, total)`` after each photo to tag.
            stop: set to stop after the current photo.
            roots: photos whose real path leaves these folders are left out.
        """
        from facerec.tagging import model_signature, pipeline_key, tag_photos

        paths = self.photo_paths(roots)
        known = self.store.photos()
        here = set(paths)
        removed = self.store.remove_photos([p for p in known if p not in here])
        settings = self.rec.settings
        sig = model_signature(settings)
        scan_sig = pipeline_key(settings, sig, settings.detector)  # the tag cache's own key of a photo's faces
        same_model = self.store.get_meta("signature") == scan_sig
        todo, unchanged = [], 0
        for p in paths:
            old = known.get(p)
            try:
                st = p.stat()
            except OSError:
                todo.append(p)
                continue
            if same_model and old is not None and old.error is None and (old.bytes, old.mtime_ns) == (
                    st.st_size, st.st_mtime_ns):
                unchanged += 1
            else:
                todo.append(p)
        model = cache.model(sig) if cache is not None else None
        seen_model: list[tuple[str, float]] = [model] if model else []

        def on_model(key: str, threshold: float) -> None:
            seen_model.append((key, threshold))
            if cache is not None:
                cache.set_model(sig, key, threshold)

        processed = cached = 0
        failed = []
        if todo:
            self.store.set_meta("signature", "")  # a scan under way: unchanged photos are checked again
            for i, res in enumerate(tag_photos(self.rec, todo, cache=cache, model=model, on_model=on_model,
                                               allow_empty=True), start=1):
                self._store_result(res)
                if res.error:
                    failed.append((str(res.path), res.error))
                elif res.cached:
                    cached += 1
                else:
                    processed += 1
                if progress:
                    progress(i, len(todo))
                if stop is not None and stop.is_set():
                    break
            else:
                self._finish_scan(scan_sig, seen_model)
        else:
            self._finish_scan(scan_sig, seen_model)
        self.rematch()
        return ScanReport(len(paths), processed, cached, unchanged, tuple(failed), removed)

    def _finish_scan(self, sig: str, seen_model: list[tuple[str, float]]) -> None:
        if seen_model:
            key, threshold = seen_model[-1]
            self.store.set_meta("key", key)
            self.store.set_meta("base_threshold", repr(float(threshold)))
        self.store.set_meta("signature", sig)

    def _store_result(self, res) -> None:
        try:
            st = os.stat(res.path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        sha = res.sha or ""
        photo = StoredPhoto(Path(res.path), sha, size, mtime, res.size, res.error)
        faces = sorted(res.faces, key=lambda fm: (fm[0].box[0], fm[0].box[1]))  # numbered left to right
        self.store.put_photo(photo, [(f.box, m.name, m.score, f.vector) for f, m in faces])

    # -- matching -----------------------------------------------------------------------------

    def model(self) -> tuple[str, float] | None:
        """``(embedder key, its own threshold)`` of the last scan, or ``None`` before one."""
        key, thr = self.store.get_meta("key"), self.store.get_meta("base_threshold")
        return None if key is None or thr is None else (key, float(thr))

    def threshold(self) -> float:
        """The recognition threshold the library's faces are judged by (the setting, else the
        one calibrated for the base and the gallery as at the last match)."""
        if self.rec.settings.threshold is not None:
            return float(self.rec.settings.threshold)
        stored = self.store.get_meta("threshold")
        return float(stored) if stored is not None else self.rec.threshold

    def group_threshold(self) -> float:
        """The likeness at which unknown faces are grouped: the threshold set in the settings, else
        the base's own, calibrated on strangers. Not the gallery-size threshold used for naming,
        which drops as few people are enrolled and would then group different people."""
        if self.rec.settings.threshold is not None:
            return float(self.rec.settings.threshold)
        model = self.model()
        return model[1] if model is not None else self.threshold()

    def _context(self):
        from facerec.tagcache import CacheSession
        from facerec.tagging import MatchingContext

        model = self.model()
        if model is None:
            return None
        return MatchingContext.open(self.rec, model, CacheSession(None), allow_empty=True)

    def rematch(self) -> int:
        """Match every stored face against the gallery as it is now (after an enrolment, a
        removal, a new threshold): no photo is read. Returns how many faces were matched."""
        ctx = self._context()
        if ctx is None:
            return 0
        stored = [f for f in self.store.faces() if f.vector is not None]
        matches = ctx.match([Face(f.box, 1.0, vector=f.vector) for f in stored]) if stored else []
        self.store.set_matches([(f.path, f.idx, m.name, m.score) for f, m in zip(stored, matches)])
        self.store.set_meta("threshold", repr(float(ctx.threshold)))
        return len(stored)

    # -- who is who ----------------------------------------------------------------------------

    def faces(self) -> list[LibraryFace]:
        """Every face of the library with who it is (see the module's docstring), by photo then
        left to right."""
        key = ("faces", *self._state())
        memo = _MEMO.get(key)
        if memo is not None:
            return memo
        stored = self.store.faces()
        answers = self.store.answers()
        threshold = self.threshold() if stored else 1.0
        out = []
        for f in stored:
            said = [a for a in answers.get(f.sha, ()) if iou(a.box, f.box) >= SAME_FACE_IOU]
            yes = next((a.name for a in reversed(said) if a.answer == YES), None)
            rejected = frozenset(a.name for a in said if a.answer == NO)
            v = verdict(Match(f.name, f.score), threshold)
            guess = f.name if v.known and f.name not in rejected else UNKNOWN
            if yes is not None:
                name, kind = yes, CONFIRMED
            elif guess != UNKNOWN and v.kind == MATCH:
                name, kind = guess, MATCH
            elif guess != UNKNOWN:
                name, kind = UNKNOWN, POSSIBLE
            else:
                name, kind = UNKNOWN, UNKNOWN_VERDICT
            out.append(LibraryFace(f.path, f.sha, f.idx, f.box, name, kind, f.score, guess, rejected, f.vector))
        _MEMO.put(key, out)
        return out

    def _state(self) -> tuple:
        """What decides :meth:`faces`: the store's generation and where the threshold comes from."""
        return str(self.store.path), self.store.generation(), self.rec.settings.threshold, self.store.get_meta("threshold")

    def photo_faces(self, path: Path) -> list[LibraryFace]:
        """The faces of one photo, left to right."""
        return [f for f in self.faces() if f.path == Path(path)]

    def person_faces(self, name: str) -> list[LibraryFace]:
        """The faces named ``name`` (confirmed or a sure match), in library order."""
        return [f for f in self.faces() if f.named and f.name == name]

    def people_counts(self) -> dict[str, int]:
        """Each named person of the library and in how many photos they are, most photos first."""
        photos: dict[str, set[Path]] = {}
        for f in self.faces():
            if f.named:
                photos.setdefault(f.name, set()).add(f.path)
        return dict(sorted(((n, len(p)) for n, p in photos.items()), key=lambda kv: (-kv[1], kv[0])))

    def photos_with(self, names: Iterable[str], alone: bool = False) -> list[Path]:
        """Photos in which every one of ``names`` is named (``alone``: and nobody else is named), by path."""
        wanted = set(names)
        if not wanted:
            return []
        named: dict[Path, set[str]] = {}
        for f in self.faces():
            named.setdefault(f.path, set())
            if f.named:
                named[f.path].add(f.name)
        return sorted(p for p, who in named.items() if wanted <= who and (not alone or who == wanted))

    def groups(self, min_size: int = 1, hidden: bool = False) -> list[FaceGroup]:
        """The unknown faces grouped by likeness (:func:`facerec.cluster.cluster_unknown` at
        :meth:`group_threshold`), then as the user arranged them (:func:`arrange`): merged groups
        stay one, a face taken out stands alone. Biggest group first; groups under ``min_size``
        faces are left out. Hidden faces are left out (``hidden``: only they are grouped)."""
        from facerec.cluster import cluster_unknown

        key = ("groups", *self._state(), min_size, hidden)
        memo = _MEMO.get(key)
        if memo is not None:
            return memo
        marks = self.store.marks()
        pool, tokens = [], []
        for f in self.faces():
            if f.kind != UNKNOWN_VERDICT or f.vector is None:
                continue
            if (_marked(marks, f, HIDDEN) is not None) != hidden:
                continue
            pool.append(f)
            tokens.append(_marked(marks, f, GROUP))
        out = []
        if pool:
            labels = cluster_unknown(np.stack([f.vector for f in pool]), self.group_threshold())
            for bucket in arrange(labels, tokens):
                if len(bucket) >= min_size:
                    faces = tuple(pool[i] for i in bucket)
                    out.append(FaceGroup(faces[0].key, faces))
        _MEMO.put(key, out)
        return out

    def merge_groups(self, groups: Sequence[FaceGroup]) -> None:
        """Make these groups one (it stays one across rescans and re-matches)."""
        faces = [f for g in groups for f in g.faces]
        marks = self.store.marks()
        tokens = [t for f in faces if (t := _marked(marks, f, GROUP)) is not None and not t.startswith(ALONE)]
        token = tokens[0] if tokens else uuid.uuid4().hex
        self.store.retoken(set(tokens) - {token}, token)
        self.store.mark([(f.sha, f.box) for f in faces], GROUP, token)

    def take_out(self, face: LibraryFace) -> None:
        """"Not in this group": the face stands alone from now on (an unnamed face; a named one
        is taken out of a person with :meth:`reject`)."""
        self.store.mark([(face.sha, face.box)], GROUP, ALONE + uuid.uuid4().hex)

    def hide(self, faces: Sequence[LibraryFace], hidden: bool = True) -> None:
        """Hide faces from the groups (people in the background), or show them again."""
        self.store.mark([(f.sha, f.box) for f in faces], HIDDEN, "" if hidden else None)

    def suggestions(self, name: str, limit: int = 24) -> list[Suggestion]:
        """Faces close to ``name`` but not named as them, most alike first: their possible
        matches, and unknown faces within a margin under the threshold (never a face the user
        said is not them)."""
        model = self.model()
        if model is None:
            return []
        mine = np.asarray([v for _, v in self.rec.gallery.person_vectors(name, model[0])], dtype=np.float32)
        threshold = self.threshold()
        floor = threshold - margin(threshold)
        out = []
        for f in self.faces():
            if f.named or name in f.rejected or f.vector is None:
                continue
            if f.kind == POSSIBLE and f.guess == name:
                out.append(Suggestion(f, name, float(f.score)))
            elif f.kind == UNKNOWN_VERDICT and len(mine):
                score = float(np.max(mine @ f.vector))
                if score >= floor:
                    out.append(Suggestion(f, name, score))
        return sorted(out, key=lambda s: -s.score)[:limit]

    # -- XMP ------------------------------------------------------------------------------------

    def write_sidecars(self, style: str = "ext", include_possible: bool = False, include_unknown: bool = False,
                       roots: Sequence[Path] | None = None) -> SidecarReport:
        """Write (or merge into, with ``tag --xmp``'s rules: other tools' regions and keywords
        are kept) the XMP sidecar of every library photo with a face. Faces named by the user
        or a sure match carry their name; a possible match is unnamed unless
        ``include_possible``; unknown faces are written as unnamed regions only with
        ``include_unknown``. Photos are never touched.

        Args:
            style: ``"ext"`` (``PHOTO.jpg.xmp``) or ``"stem"`` (``PHOTO.xmp``).
            roots: photos whose real path leaves these folders are left out.
        """
        from facerec.auth import within_roots
        from facerec.xmp import write_sidecar

        photos = self.store.photos()
        by_photo: dict[Path, list[tuple[Face, Match]]] = {}
        for f in self.faces():
            name = f.name if f.named else (f.guess if include_possible and f.kind == POSSIBLE else UNKNOWN)
            by_photo.setdefault(f.path, []).append((Face(f.box, 1.0), Match(name, f.score)))
        written, nothing, failed = [], 0, []
        for path, faces in sorted(by_photo.items()):
            size = photos[path].size if path in photos else None
            if size is None or not path.is_file() or (roots is not None and not within_roots(path, roots)):
                continue
            try:
                out = write_sidecar(path, size, faces, style=style, include_unknown=include_unknown)
            except (MetadataError, ValueError) as exc:
                failed.append((str(path), str(exc)))
                continue
            if out is None:
                nothing += 1
            else:
                written.append(out)
        return SidecarReport(tuple(written), nothing, tuple(failed))

    def import_xmp(self, roots: Sequence[Path] | None = None, confirm: bool = False):
        """Enrol the faces named in the XMP of the library's photos (:func:`facerec.xmpimport.import_xmp`),
        then name them in the library; returns its :class:`~facerec.xmpimport.ImportReport`."""
        from facerec.xmpimport import import_xmp

        report = import_xmp(self.rec, self.photo_paths(roots), confirm=confirm)
        self.rematch()
        return report

    # -- answers -------------------------------------------------------------------------------

    def _resemblance(self, faces: Sequence[LibraryFace], name: str) -> tuple[str, float] | None:
        """The enrolled person other than ``name`` the faces look like on average, if any."""
        model = self.model()
        vecs = [f.vector for f in faces if f.vector is not None]
        if model is None or not vecs:
            return None
        X, names, _ = self.rec.gallery.vectors(model[0])
        if not len(X):
            return None
        sims = np.asarray(X, dtype=np.float32) @ np.stack(vecs).T  # (gallery, faces)
        threshold, best = self.threshold(), None
        for person in set(names) - {name}:
            score = float(sims[[n == person for n in names]].max(axis=0).mean())
            if score >= threshold and (best is None or score > best[1]):
                best = (person, score)
        return best

    def name_group(self, faces: Sequence[LibraryFace], name: str, confirm: bool = False) -> ClusterEnrolment:
        """Name a group of faces: every face is enrolled as ``name`` (one face per photo, through
        :meth:`People.enroll_cluster`) and remembered as theirs. Faces the user said are not
        ``name`` are left out. A name like an enrolled one (case, accents, look-alike letters),
        or a group that looks like someone else enrolled, asks first.

        Raises:
            ConfirmationNeededError: nothing saved; confirm to go on.
            InvalidNameError.
        """
        from facerec.cluster import Member, UnknownGroup

        name = self.people.resolve_name(name, confirm)
        faces = [f for f in faces if name not in f.rejected]
        if not faces:
            raise FaceRecError(f"every face of this group was marked as not {name}")
        if not confirm:
            like = self._resemblance(faces, name)
            if like is not None:
                other, score = like
                raise ConfirmationNeededError(
                    f"these faces look like {other} ({score:.2f}), who is enrolled; confirm to name them {name} anyway",
                    (f"These faces look like {other} ({score:.2f}), not {name}.",))
        photos = self.store.photos(f.path for f in faces)
        members, vecs = [], []
        for f in faces:
            p = photos.get(f.path)
            members.append(Member(f.path, f.box, p.bytes if p else -1, p.mtime_ns if p else -1))
            vecs.append(f.vector if f.vector is not None else np.zeros(0, np.float32))
        group = UnknownGroup("library", tuple(members), np.stack(vecs) if all(len(v) for v in vecs) else None)
        model = self.model()
        result = self.people.enroll_group(group, name, model[0] if model else "", self.threshold(), confirm=True)
        kept = set(result.enrolled) | set(result.duplicates)
        first: set[Path] = set()
        for f in faces:
            if f.path in kept and f.path not in first:
                first.add(f.path)
                self.store.answer(f.sha, f.box, result.name, YES)
        self.rematch()
        return result

    def confirm(self, face: LibraryFace, name: str) -> str | None:
        """"Yes, this is ``name``": remembered, and the face joins their enrolment when it passes
        the enrolment checks (being unlike their other photos is no concern here: a suggestion is
        by nature under the threshold; looking like someone else, a poor face or a photo enrolled
        for someone else are). Returns ``None``, or why it was not enrolled (it is named anyway)."""
        from facerec.images import read_bytes

        name = self.people.resolve_name(name, confirm=True)
        self.store.answer(face.sha, face.box, name, YES)
        why = None
        try:
            data = read_bytes(face.path)
            self.people.enroll(name, data, str(face.path), face=self._found_again(face, data), vouched=True)
        except ConfirmationNeededError as exc:
            why = " ".join(exc.concerns) if getattr(exc, "concerns", None) else str(exc)
        except FaceRecError as exc:
            why = str(exc)
        self.rematch()
        return why

    def _found_again(self, face: LibraryFace, data: bytes) -> Face:
        """The library face detected again in its photo, with its landmarks and crop (so that the
        enrolment's quality check sees a turned or blurred face), or, when it is not found again,
        as stored (its vector reused when the base is the same)."""
        try:
            found = self.rec.find_faces(self.rec.read(data, str(face.path)))
        except FaceRecError:
            found = []
        best = max(found, key=lambda f: iou(f.box, face.box), default=None)
        if best is not None and iou(best.box, face.box) >= SAME_FACE_IOU:
            return self.rec.embed([best])[0]
        model = self.model()
        reuse = face.vector is not None and model is not None and model[0] == self.rec.embedder.key
        return Face(face.box, 1.0, vector=face.vector if reuse else None)

    def reject(self, face: LibraryFace, name: str) -> None:
        """"Not ``name``": remembered (never named or suggested as them again, across rescans);
        a photo enrolled for them from this face is taken out of their enrolment."""
        self.store.answer(face.sha, face.box, name, NO)
        try:
            records = self.people.photos(name)
        except FaceRecError:
            records = []
        enrolled = [r for r in records if r.sha == face.sha and (r.box is None or iou(r.box, face.box) >= SAME_FACE_IOU)]
        for r in enrolled:
            self.people.remove_photo(name, r.path.name)
        if enrolled:  # the gallery changed; an answer alone changes no stored match (faces() applies it)
            self.rematch()


class _Memo:
    """The last few answers of :meth:`Library.faces` and :meth:`Library.groups`, shared by every
    Library of the process (the app makes one per page run) and keyed by the store's
    :meth:`~facerec.librarystore.LibraryStore.generation`, so any change, by anyone, is seen."""

    def __init__(self, size: int = 8) -> None:
        self.size, self._lock, self._items = size, threading.Lock(), {}

    def get(self, key: tuple):
        with self._lock:
            return self._items.get(key)

    def put(self, key: tuple, value) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                del self._items[next(iter(self._items))]


_MEMO = _Memo()


def _marked(marks: dict[str, list[Mark]], face: LibraryFace, kind: str) -> str | None:
    """The value of the face's ``kind`` mark (the latest), or ``None``."""
    found = [m.value for m in marks.get(face.sha, ()) if m.kind == kind and iou(m.box, face.box) >= SAME_FACE_IOU]
    return found[-1] if found else None


def arrange(labels: Sequence[int], tokens: Sequence[str | None]) -> list[list[int]]:
    """Groups of face indices from the clustering's ``labels`` and the user's group ``tokens``
    (``None``: none): faces sharing a token are one group, and the unmarked faces of a cluster
    join the token most of its marked faces carry; a token starting with :data:`ALONE` keeps its
    face alone. Biggest group first (ties: the group whose first face comes first)."""
    votes: dict[int, dict[str, int]] = {}
    for c, t in zip(labels, tokens):
        if t is not None and not t.startswith(ALONE):
            votes.setdefault(int(c), {}).setdefault(t, 0)
            votes[int(c)][t] += 1
    buckets: dict[object, list[int]] = {}
    for i, (c, t) in enumerate(zip(labels, tokens)):
        if t is None:
            counts = votes.get(int(c))
            t = max(counts, key=counts.__getitem__) if counts else ("cluster", int(c))
        buckets.setdefault(t, []).append(i)
    return sorted(buckets.values(), key=lambda b: (-len(b), b[0]))


class BackgroundScan:
    """One library scan in a background thread (the app's pages poll :meth:`state`; the thread
    never touches Streamlit). It opens its own :class:`Library` over ``make_library()``.

    Args:
        make_library: builds the library the thread scans (its own store connection).
        cache: the tag cache.
        roots: the allowed photo roots.
    """

    def __init__(self, make_library: Callable[[], Library], cache: TagCache | None = None,
                 roots: Sequence[Path] | None = None) -> None:
        self.make_library, self.cache, self.roots = make_library, cache, roots
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.done = self.total = 0
        self.report: ScanReport | None = None
        self.error: str | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> bool:
        """Start a scan unless one is running; ``False`` when one was."""
        with self._lock:
            if self.running:
                return False
            self._stop.clear()
            self.done = self.total = 0
            self.report, self.error = None, None
            self._thread = threading.Thread(target=self._run, name="facerec-library-scan", daemon=True)
            self._thread.start()
            return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the scan to end; ``True`` when it has."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return not self.running

    def _progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def _run(self) -> None:
        library = self.make_library()
        try:
            self.report = library.scan(self.cache, self._progress, self._stop, self.roots)
        except FaceRecError as exc:
            self.error = str(exc)
        except Exception as exc:  # reported on the page, never lost in a thread
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            library.close()
