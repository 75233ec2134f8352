"""The person lifecycle, one service for every front end (CLI, app, HTTP API).

:class:`People` enrols (with every check that catches a mistake before it is saved),
renames, merges, moves and removes photos, and forgets. Front ends call it and show its
answers their own way; they never reach into the stores for these.

Forgetting is one ordered, idempotent procedure (:meth:`People.forget`): the gallery
first records in its forget journal what is to go (so the person is no longer enrolled,
and a failed or killed forget can be finished), then every store is cleaned in turn --
the gallery's photos, rows and vectors; tag caches; unknown-face cluster files; the
who-was-here history; cached face pictures; remembered file names -- each attempted
whatever the others did. One report names what could not be deleted; running the forget
again finishes the job, and only when nothing is left is the journal entry removed.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from facerec import enrolcheck, history, photonames, thumbs
from facerec.errors import (
    ConfirmationNeededError, EmptyGalleryError, FaceRecError, ForgetIncompleteError, GalleryBusyError,
    PersonExistsError,
)
from facerec.gallery import ForgetPlan, Person, PhotoRecord, validate_name
from facerec.quality import face_quality
from facerec.storage import content_hash, tag_cache_path
from facerec.types import Face

if TYPE_CHECKING:
    from facerec.cluster import ClusterEnrolment, UnknownGroup
    from facerec.pipeline import Enrolled, FaceRecognizer


@dataclass(frozen=True)
class ForgetReport:
    """What :meth:`People.forget` removed.

    Attributes:
        name: the person.
        photos: photo files and index rows removed (0 when an earlier, unfinished forget had).
        vectors: stored vectors removed from the index (every base).
        tag_photos: photos whose cached faces and vectors were dropped from the tag cache.
        tag_matches: stored match lists naming the person dropped from the tag cache.
        cluster_groups: ``"<file>:<label>"`` of every unknown-face group removed.
        sightings: who-was-here appearances removed.
        problems: what could not be removed, one sentence each naming the store; empty
            when the person is completely forgotten.
    """

    name: str
    photos: int = 0
    vectors: int = 0
    tag_photos: int = 0
    tag_matches: int = 0
    cluster_groups: tuple[str, ...] = ()
    sightings: int = 0
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class PhotoCheck:
    """One photo checked for enrolment as ``name`` (nothing saved yet).

    Attributes:
        source: the photo's name for messages.
        sha: its content hash.
        faces: every face found, aligned and embedded (most confident first).
        face: the face to enrol (``None``: none can be, see ``skip``).
        skip: why the photo will not be saved at all (no face, several faces and none
            picked, the same photo earlier in the batch, already enrolled for this person).
        concerns: what the user must confirm before it is saved (a face like someone
            else's, unlike the person's own photos, the photo enrolled for someone else,
            a poor face); empty: ready.
        kind: ``"ready"``, ``"confirm"`` (concerns), or why it is skipped: ``"duplicate"``
            (earlier in the batch), ``"enrolled"`` (already theirs), ``"unreadable"``,
            ``"no-face"``, ``"pick"`` (several faces, none picked).
    """

    source: str
    sha: str
    faces: tuple[Face, ...] = ()
    face: Face | None = None
    skip: str | None = None
    concerns: tuple[str, ...] = ()
    kind: str = "ready"

    @property
    def ready(self) -> bool:
        """Saved without asking."""
        return self.skip is None and not self.concerns


class People:
    """Everything that changes who is enrolled, over one recogniser's gallery and settings.

    Args:
        recognizer: gives the gallery, the settings (cache folder, threshold) and, for
            enrolment only, the models (loaded on first use).
    """

    def __init__(self, recognizer: FaceRecognizer) -> None:
        self.rec = recognizer
        self.gallery = recognizer.gallery
        self.settings = recognizer.settings

    # -- reading ---------------------------------------------------------------------

    def list(self) -> list[Person]:
        """Everyone enrolled, by name (a half-forgotten person is not: see :meth:`unfinished`)."""
        return self.gallery.people()

    def unfinished(self) -> list[str]:
        """People whose forget failed or was interrupted: run :meth:`forget` again for each."""
        return self.gallery.forgetting()

    def photos(self, name: str | None = None) -> list[PhotoRecord]:
        """Enrolled photos of ``name`` (or everyone's), oldest first."""
        return self.gallery.photos(name)

    def outliers(self, name: str) -> dict[str, float]:
        """``name``'s enrolled photos that do not look like their other photos (a photo of someone
        else enrolled by mistake): ``{file name: similarity}``, where the similarity is the one the
        matcher gives the photo's face against the person's other photos, and an outlier is one
        below the recognition threshold. A person needs three photos with vectors for one to
        stand out (with two, neither can be blamed).
        """
        from facerec.facepath import fit_matcher

        self._matcher()  # brings every photo's vector for the base in use up to date
        rows = self.gallery.person_vectors(name, self.rec.embedder.key)
        if len(rows) < 3:
            return {}
        X, threshold = np.stack([v for _, v in rows]), self.rec.threshold
        out = {}
        for i, (r, v) in enumerate(rows):
            others = np.delete(X, i, axis=0)
            score = float(fit_matcher(others, [name] * len(others), threshold).similarities(v)[0, 0])
            if score < threshold:
                out[r.path.name] = score
        return out

    # -- names ------------------------------------------------------------------------

    def resolve_name(self, name: str, confirm: bool = False) -> str:
        """``name`` validated, or the enrolled name it can be confused with.

        A name that differs from an enrolled one only in case, accents, spacing or Unicode
        look-alike letters (the confusables skeleton: Cyrillic "а" for Latin "a") is the
        same person typed differently, or a trap: with ``confirm`` the enrolled name is
        returned (photos go to that person), without it the call is refused.

        Raises:
            InvalidNameError; ConfirmationNeededError naming the enrolled person.
        """
        clean = validate_name(name)
        known = [p.name for p in self.gallery.people()]
        if clean in known and (unicodedata.normalize("NFC", name) == clean or confirm):
            return clean
        similar = [clean] if clean in known else enrolcheck.similar_names(clean, known)
        if not similar:
            return clean
        if confirm:
            return similar[0]
        other = similar[0]
        raise ConfirmationNeededError(
            f"{clean!r} looks like the enrolled {other!r}; to add these photos to {other}, confirm "
            f"(--yes on the command line), or choose a name that cannot be mistaken for theirs",
            (f"{clean} looks like {other}, who is already enrolled.",))

    # -- enrolment -------------------------------------------------------------------

    def check(self, name: str | None, photos: Sequence[tuple[bytes, str]], largest: bool = False,
              faces: Callable[[bytes, str, str], list[Face]] | None = None,
              picks: dict[str, int] | None = None, shared: bool = False) -> list[PhotoCheck]:
        """Check a batch of photos meant for ``name`` before anything is saved: the same
        photo twice in the batch, already enrolled (for them or someone else), no face or
        several, a face that looks like someone else or not like their own photos, a poor
        face. ``name`` ``None``: no name yet (the person-specific checks are left out).

        Args:
            photos: ``(bytes, source name)`` each.
            largest: with several faces, take the largest instead of asking.
            faces: finds the aligned, embedded faces of one photo ``(data, source, sha)``
                (the app caches them between reruns); default: the recogniser.
            picks: ``{sha: face index}`` chosen by the user for photos with several faces.
            shared: a photo of several people (an imported group photo names each on its own
                face), so being enrolled for someone else already is no concern.
        """
        records = self.gallery.photos()
        matcher = self._matcher() if records else None
        threshold = self.rec.threshold
        find = faces or (lambda data, source, sha: self.rec.embed(self.rec.find_faces(self.rec.read(data, source))))
        seen: dict[str, str] = {}
        out = []
        for data, source in photos:
            sha = content_hash(data)
            if sha in seen:
                out.append(PhotoCheck(source, sha, kind="duplicate",
                                      skip=f"the same photo as {seen[sha]} in this batch; it is saved once"))
                continue
            seen[sha] = source
            owned = enrolcheck.owners(records, sha)
            if name is not None and name in owned:
                out.append(PhotoCheck(source, sha, skip=f"already enrolled for {name}", kind="enrolled"))
                continue
            try:
                found = tuple(find(data, source, sha))
            except FaceRecError as exc:
                out.append(PhotoCheck(source, sha, skip=str(exc), kind="unreadable"))
                continue
            out.append(self._check_face(name, source, sha, found, owned, largest, (picks or {}).get(sha),
                                        matcher, threshold, shared=shared))
        return out

    def _check_face(self, name, source, sha, found, owned, largest, pick, matcher, threshold,
                    vouched: bool = False, shared: bool = False) -> PhotoCheck:
        if not found:
            return PhotoCheck(source, sha, skip="no face found", kind="no-face")
        if len(found) > 1 and pick is None and not largest:
            return PhotoCheck(source, sha, found, skip=f"{len(found)} faces; pick the one of "
                                                       f"{name or 'this person'} (--largest takes the largest)",
                              kind="pick")
        face = found[pick] if pick is not None else max(found, key=lambda f: f.area)
        worries = []
        others = [o for o in owned if o != name] if not shared else []
        if others:
            worries.append(f"This photo is already enrolled for {', '.join(others)}.")
        if name is not None:
            worries += enrolcheck.concerns(enrolcheck.resemblance(matcher, face.vector, name), name, threshold,
                                           vouched)
        quality = face_quality(face)
        if quality.poor:
            worries.append(f"A poor photo for recognition ({quality.describe()}): a sharp, frontal photo "
                           "names this person more reliably.")
        return PhotoCheck(source, sha, found, face, None, tuple(worries), "confirm" if worries else "ready")

    def _matcher(self):
        try:
            return self.rec.refresh(wait=False)
        except (EmptyGalleryError, GalleryBusyError):
            return None

    def enroll(self, name: str, data: bytes, source: str = "photo", *, face: Face | None = None,
               largest: bool = False, confirm: bool = False, vouched: bool = False) -> Enrolled:
        """Enrol one photo of ``name`` after the checks of :meth:`check`.

        Args:
            face: the face to enrol (already detected, in displayed-photo pixels), as picked
                in the app; default: the only (or with ``largest`` the largest) face.
            confirm: save despite the concerns (and add to the enrolled look-alike name).
            vouched: the user has just said this face is ``name`` (a confirmed suggestion):
                being unlike their other photos is then no concern (the other checks stay).

        Raises:
            ConfirmationNeededError (``concerns`` lists them): nothing saved;
            ImageError, NoFaceError, ManyFacesError, InvalidNameError, DiskFullError.
        """
        name = self.resolve_name(name, confirm)
        face = self.rec.enrolment_face(data, source, face, largest)
        sha = content_hash(data)
        check = self._check_face(name, source, sha, (face,), enrolcheck.owners(self.gallery.photos(), sha),
                                 False, 0, self._matcher(), self.rec.threshold, vouched)
        if check.concerns and not confirm:
            raise ConfirmationNeededError(f"{source}: " + " ".join(check.concerns)
                                          + " Confirm to save it anyway.", check.concerns)
        return self.rec.enroll(name, data, source=source, face=face)

    def add_person(self, name: str, confirm: bool = False) -> str:
        """Enrol a person with no photo yet (an empty folder); returns the name as stored."""
        name = self.resolve_name(name, confirm)
        self.gallery.add_person(name)
        return name

    def enroll_cluster(self, label: str, name: str, clusters_file: Path | None = None,
                       confirm: bool = False) -> ClusterEnrolment:
        """Enrol every face of the unknown group ``label`` as ``name`` (see ``cluster.enroll_cluster``)."""
        from facerec.cluster import enroll_cluster

        return enroll_cluster(self.rec, label, self.resolve_name(name, confirm), clusters_file)

    def enroll_group(self, group: UnknownGroup, name: str, model: str, threshold: float,
                     confirm: bool = False) -> ClusterEnrolment:
        """Enrol every face of a group held in memory as ``name`` (see ``cluster.enroll_group``)."""
        from facerec.cluster import enroll_group

        return enroll_group(self.rec, group, self.resolve_name(name, confirm), model, threshold)

    # -- changing people ---------------------------------------------------------------

    def rename(self, old: str, new: str, *, merge: bool = False) -> str:
        """Rename ``old`` to ``new`` (in the gallery and the who-was-here history); returns the
        name as stored. To an enrolled name (or one it can be mistaken for) this is refused
        unless ``merge``: then ``old``'s photos join that person.

        Raises:
            InvalidNameError, PersonNotFoundError, PersonExistsError (offering the merge):
            nothing was changed.
        """
        src = validate_name(old)
        dst = validate_name(new)
        known = [p.name for p in self.gallery.people()]
        twins = [n for n in enrolcheck.similar_names(dst, known) + ([dst] if dst in known else []) if n != src]
        if twins:
            if not merge:
                raise PersonExistsError(f"{twins[0]!r} is already enrolled; to join {src}'s photos to "
                                        f"{twins[0]}, merge them (`facerec people rename --merge`)")
            self.merge(src, twins[0])
            return twins[0]
        self.gallery.rename_person(src, dst)
        history.rename(self.gallery.root, src, dst)
        self._library_rename(src, dst)
        return dst

    def merge(self, source: str, into: str) -> int:
        """Move every photo of ``source`` to ``into`` and remove ``source`` (a person split in
        two is joined back; a photo both have is kept once). Their history follows.
        Returns how many photos ``into`` gained."""
        src, dst = validate_name(source), validate_name(into)
        n = self.gallery.move_photos(src, None, dst)
        history.rename(self.gallery.root, src, dst)
        self._library_rename(src, dst)
        return n

    def _library_rename(self, old: str, new: str) -> None:
        """The photo library's answers and names follow a renamed or merged person."""
        from facerec.librarystore import LibraryStore

        if self.gallery.files.library.exists():
            with LibraryStore(self.gallery.root) as store:
                store.rename(old, new)

    def move_photo(self, name: str, file_name: str, to: str, confirm: bool = False) -> None:
        """Move one enrolled photo from ``name`` to ``to`` (enrolled on the wrong person's page)."""
        self.gallery.move_photos(validate_name(name), [file_name], self.resolve_name(to, confirm))

    def remove_photo(self, name: str, file_name: str) -> None:
        """Remove one enrolled photo: its file, row and vector, its cached pictures and its
        remembered original name (unless another person has the same photo)."""
        sha = next((r.sha for r in self.gallery.photos(name) if r.path.name == file_name), None)
        self.gallery.remove_photo(name, file_name)
        if sha is not None and not any(r.sha == sha for r in self.gallery.photos()):
            thumbs.forget(self.settings.cache_dir, [sha])
            photonames.forget(self.gallery.root, [sha])

    # -- forgetting ----------------------------------------------------------------------

    def forget(self, name: str) -> ForgetReport:
        """Forget ``name`` everywhere facerec keeps something of them (see the module's
        docstring). Running it again after a failure or a kill finishes the job.

        Raises:
            PersonNotFoundError: nobody of that name and nothing left of one.
            ForgetIncompleteError: something could not be removed (the message names each
                store; the person is no longer enrolled, and forgetting again finishes).
            DiskFullError: the forget journal could not be written (nothing was changed).
        """
        plan = self.gallery.begin_forget(name)
        report = ForgetReport(plan.name)
        steps = (("the gallery", self._forget_gallery), ("the tag cache", self._forget_tag_cache),
                 ("the cluster files", self._forget_clusters), ("the who-was-here history", self._forget_history),
                 ("the photo library", self._forget_library),
                 ("the cached face pictures and file names", self._forget_pictures))
        for store, step in steps:  # every store is attempted, whatever the others did
            try:
                report = step(plan, report)
            except (OSError, sqlite3.Error, FaceRecError) as exc:
                report = _with_problem(report, f"{store}: {exc}")
        if report.problems:
            error = ForgetIncompleteError(
                f"{plan.name} is no longer enrolled, but some of them could not be removed: "
                + "; ".join(report.problems) + f". Fix that and forget {plan.name} again to finish.")
            error.report = report
            raise error
        self.gallery.end_forget(plan.name)
        return report

    def _forget_gallery(self, plan: ForgetPlan, report: ForgetReport) -> ForgetReport:
        photos, vectors, problems = self.gallery.drop_person(plan)
        report = _replace(report, photos=photos, vectors=vectors)
        for p in problems:
            report = _with_problem(report, f"the gallery: {p}")
        return report

    def _forget_tag_cache(self, plan: ForgetPlan, report: ForgetReport) -> ForgetReport:
        from facerec.tagcache import TagCache

        path = tag_cache_path(self.settings.cache_dir)
        if not path.exists() and not path.is_symlink():
            return report
        try:
            with TagCache(path) as cache:
                n_photos, n_matches, clean = cache.forget([plan.name], plan.shas, plan.vectors)
        except (OSError, sqlite3.Error) as exc:
            raise FaceRecError(f"{path}: {exc}") from exc
        report = _replace(report, tag_photos=n_photos, tag_matches=n_matches)
        if not clean:
            report = _with_problem(report, f"the tag cache {path}: its write-ahead log could not be cleared (in use)")
        return report

    def _forget_clusters(self, plan: ForgetPlan, report: ForgetReport) -> ForgetReport:
        from facerec.cluster import forget_faces

        folder = self.gallery.files.clusters
        groups = list(report.cluster_groups)
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                groups += [f"{path.name}:{label}" for label in forget_faces(path, set(plan.shas), set(plan.sizes),
                                                                               plan.vectors, plan.folder)]
            except (FaceRecError, OSError) as exc:
                report = _with_problem(report, f"the cluster file {path}: {exc}")
        return _replace(report, cluster_groups=tuple(groups))

    def _forget_library(self, plan: ForgetPlan, report: ForgetReport) -> ForgetReport:
        """The photo library's answers naming them go; faces it named them on become unknown."""
        from facerec.librarystore import LibraryStore

        if self.gallery.files.library.exists():
            with LibraryStore(self.gallery.root) as store:
                store.forget(plan.name)
        return report

    def _forget_history(self, plan: ForgetPlan, report: ForgetReport) -> ForgetReport:
        return _replace(report, sightings=history.forget(self.gallery.root, plan.name))

    def _forget_pictures(self, plan: ForgetPlan, report: ForgetReport) -> ForgetReport:
        kept = {r.sha for r in self.gallery.photos()}  # the same photo enrolled for someone else
        gone = [s for s in plan.shas if s not in kept]
        thumbs.forget(self.settings.cache_dir, gone)
        photonames.forget(self.gallery.root, gone)
        return report


def _replace(report: ForgetReport, **changes) -> ForgetReport:
    return dataclasses.replace(report, **changes)


def _with_problem(report: ForgetReport, problem: str) -> ForgetReport:
    return _replace(report, problems=report.problems + (problem,))
