"""The file name each enrolled photo had when it was uploaded (the gallery stores photos
under their content hash): ``<gallery>/.facerec/photo_names.sqlite``, mode 0600, keyed by
the photo's content hash. A stop-gap until the gallery keeps the original names itself.
Nothing here touches Streamlit.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterable

from facerec.storage import INDEX_DIR, private_dir, private_file

FILE = "photo_names.sqlite"


def _connect(gallery: Path | str) -> sqlite3.Connection:
    path = Path(gallery) / INDEX_DIR / FILE
    private_dir(path.parent)
    private_file(path)
    con = sqlite3.connect(path, timeout=30)
    con.execute("PRAGMA secure_delete = ON")
    con.execute("CREATE TABLE IF NOT EXISTS names (sha TEXT PRIMARY KEY, name TEXT NOT NULL)")
    return con


def remember(gallery: Path | str, sha: str, name: str) -> None:
    """Keep ``name`` (its last path component) as the original name of photo ``sha``."""
    with _connect(gallery) as con:
        con.execute("INSERT OR REPLACE INTO names VALUES (?, ?)", (sha, Path(name).name))
    con.close()


def names(gallery: Path | str) -> dict[str, str]:
    """``{sha: original name}`` of every photo whose name is known."""
    if not (Path(gallery) / INDEX_DIR / FILE).is_file():
        return {}
    with _connect(gallery) as con:
        out = dict(con.execute("SELECT sha, name FROM names"))
    con.close()
    return out


def forget(gallery: Path | str, shas: Iterable[str]) -> int:
    """Drop the names of these photos (removed or forgotten); returns how many."""
    shas = list(shas)
    if not shas or not (Path(gallery) / INDEX_DIR / FILE).is_file():
        return 0
    with _connect(gallery) as con:
        n = con.executemany("DELETE FROM names WHERE sha = ?", [(s,) for s in shas]).rowcount
    con.close()
    return n
