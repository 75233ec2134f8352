"""Naming every face in many photos, one result per photo, failures included."""

from __future__ import annotations

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
