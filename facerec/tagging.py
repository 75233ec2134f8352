"""Naming every face in many photos, one result per photo, failures included."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

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
                   refresh_progress: Callable[[Iterable], Iterable] | None = None) -> Iterator[PhotoResult]:
    """Identify every face in each photo; a failure becomes that photo's ``error``.

    ``refresh_progress`` wraps the gallery photos that must be (re-)embedded first.

    Raises:
        EmptyGalleryError, ModelUnavailableError: problems that concern every
            photo end the run instead of failing each one.
    """
    recognizer.refresh(refresh_progress)
    for path in paths:
        try:
            image = load_image(path)
            found = recognizer.identify(image)
        except ImageError as exc:
            yield PhotoResult(Path(path), error=str(exc))
            continue
        except MemoryError:
            yield PhotoResult(Path(path), error=f"{path}: image too large for memory")
            continue
        yield PhotoResult(Path(path), found, size=(image.shape[1], image.shape[0]))
