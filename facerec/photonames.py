"""The file name each enrolled photo had when it was uploaded (the gallery stores photos
under their content hash): ``<gallery>/.facerec/photo_names.sqlite``, mode 0600, keyed by
the photo's content hash. A stop-gap until the gallery keeps the original names itself.
Nothing here touches Streamlit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from facerec.storage import GalleryFiles, connect, disk_guard

_SCHEMA = "CREATE TABLE IF NOT EXISTS names (sha TEXT PRIMARY KEY, name TEXT NOT NULL)"


def _path(gallery: Path | str) -> Path:
    return GalleryFiles(Path(gallery)).photo_names


def remember(gallery: Path | str, sha: str, name: str) -> None:
    """Keep ``name`` (its last path component) as the original name of photo ``sha``."""
    path = _path(gallery)
    with connect(path, _SCHEMA, wal=False, fresh_marker="names") as con, disk_guard(path):
        con.execute("INSERT OR REPLACE INTO names VALUES (?, ?)", (sha, Path(name).name))


def names(gallery: Path | str) -> dict[str, str]:
    """``{sha: original name}`` of every photo whose name is known."""
    path = _path(gallery)
    if not path.is_file():
        return {}
    with connect(path, _SCHEMA, wal=False, fresh_marker="names") as con:
        return dict(con.execute("SELECT sha, name FROM names"))


def forget(gallery: Path | str, shas: Iterable[str]) -> int:
    """Drop the names of these photos (removed or forgotten); returns how many."""
    shas = list(shas)
    path = _path(gallery)
    if not shas or not path.is_file():
        return 0
    with connect(path, _SCHEMA, wal=False, fresh_marker="names") as con, disk_guard(path):
        return con.executemany("DELETE FROM names WHERE sha = ?", [(s,) for s in shas]).rowcount
