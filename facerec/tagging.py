"""Naming every face in many photos, one result per photo, failures included."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from itertools import islice
from typing import Callable, Iterable, Iterator

import numpy as np

from facerec.errors import ImageError
from facerec.images import is_image_path, load_image
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
    """

    path: Path
    faces: list[tuple[Face, Match]] = field(default_factory=list)
    error: str | None = None
    size: tuple[int, int] | None = None

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
        for i, (face, match) in enumerate(res.faces, start=1):
            writer.writerow([str(res.path), i, match.name, f"{match.score:.4f}", *face.int_box()])
    return buf.getvalue()


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


def find_photos(paths: Iterable[Path], recursive: bool = True) -> Iterator[Path]:
    """Photo files among ``paths``; folders are walked (recursively by default), sorted.

    Files named explicitly are yielded whatever their suffix, so that a bad
    file given by hand is reported rather than ignored.
    """
    for p in paths:
        p = Path(p)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            for f in sorted(it):
                if (f.is_file() or f.is_symlink()) and is_image_path(f) and not any(
                        part.startswith(".") for part in f.relative_to(p).parts):
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
