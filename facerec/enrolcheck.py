"""Catching enrolment mistakes before anything is saved (the app's Enrol page).

- :func:`name_key` / :func:`similar_names`: "benjamin affleck" next to "Benjamin Affleck"
  (or "Zoe" next to "Zoë", or "Mаdonna" with a Cyrillic "а" next to "Madonna") is the same
  person typed differently, or a trap;
- :func:`batch_duplicates`: the same photo twice in one batch;
- :func:`owners`: the photo is already enrolled, for this person or someone else;
- :func:`resemblance` / :func:`concerns`: the face looks like someone else enrolled
  ("looks like Ben Affleck (0.97), not Madonna"), or not like the person it is added to.

Nothing here touches Streamlit or writes anything.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np


@lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    """Each Unicode look-alike of a Latin letter or digit mapped to it (Unicode's confusables
    list, from the ``confusable-homoglyphs`` package): Cyrillic "а" -> "a", Greek "ο" -> "o"."""
    from confusable_homoglyphs.confusables import confusables_data

    out = {}
    for char, glyphs in confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        for g in glyphs:
            t = g["c"].strip("\u200e")
            if len(t) == 1 and t.isascii() and t.isalnum():
                out[char] = t.lower()
                break
    return out


def name_key(name: str) -> str:
    """``name`` without case, accents, repeated spaces or Unicode look-alike letters (the
    confusables skeleton, folded to Latin): what tells two spellings apart on screen."""
    decomposed = unicodedata.normalize("NFKD", name)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    table = _prototypes()
    return " ".join("".join(table.get(c, c) for c in bare).split())


def similar_names(name: str, existing: Iterable[str]) -> list[str]:
    """Enrolled names that differ from ``name`` only in case, accents or spacing (not ``name`` itself)."""
    key = name_key(name)
    return [n for n in existing if n != name and name_key(n) == key]


def batch_duplicates(hashes: Sequence[str]) -> dict[int, int]:
    """``{i: j}`` for every photo ``i`` of a batch that is the same file as an earlier photo ``j``."""
    first: dict[str, int] = {}
    out = {}
    for i, h in enumerate(hashes):
        if h in first:
            out[i] = first[h]
        else:
            first[h] = i
    return out


def owners(records: Iterable, sha: str) -> list[str]:
    """Who has this exact photo (content hash ``sha``) enrolled, from ``Gallery.photos()``."""
    return sorted({r.person for r in records if r.sha == sha})


@dataclass(frozen=True)
class Resemblance:
    """How one face compares with the enrolled people.

    Attributes:
        best: the most similar enrolled person, or ``None`` with nobody enrolled.
        best_score: that similarity in [0, 1].
        own_score: similarity to the person it is being added to (``None``: not enrolled yet).
    """

    best: str | None
    best_score: float
    own_score: float | None


def resemblance(matcher, vector: np.ndarray, name: str | None) -> Resemblance:
    """Compare one face vector with everyone a fitted ``CosineMatcher`` holds."""
    if matcher is None:
        return Resemblance(None, 0.0, None)
    sims = np.clip(matcher.similarities(np.asarray(vector)[None])[0], 0.0, 1.0)
    classes = [str(c) for c in matcher.classes_]
    b = int(np.argmax(sims))
    own = float(sims[classes.index(name)]) if name in classes else None
    return Resemblance(classes[b], float(sims[b]), own)


def concerns(r: Resemblance, name: str, threshold: float, vouched: bool = False) -> list[str]:
    """What the user should confirm before this face is saved as ``name`` (empty: nothing).
    ``vouched``: the user has just said this face is ``name`` (a confirmed suggestion), so being
    unlike their other photos is no concern; looking like someone else still is."""
    out = []
    if r.best is not None and r.best != name and r.best_score >= threshold:
        out.append(f"This looks like {r.best} ({r.best_score:.2f}), not {name}.")
    if r.own_score is not None and r.own_score < threshold and not out and not vouched:
        out.append(f"This does not look like {name}'s other photos ({r.own_score:.2f}, "
                   f"threshold {threshold:.2f}).")
    return out
