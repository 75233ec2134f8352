"""Grouping the unknown faces of a run, contact sheets, and enrolling a whole group at once.

After a tagging run, the faces nobody is enrolled as are grouped by their
identity vectors (:func:`cluster_unknown`: average-linkage agglomerative
clustering on cosine distance) into ``unknown_1`` (the biggest group),
``unknown_2``, ... Each group gets a contact sheet of its face crops, and the
groups are saved to a cluster file (JSON, with the vectors beside it as
``.npy``) so that ``facerec enroll-cluster unknown_3 --name NAME`` can enrol
every face of a group in one step (:func:`enroll_cluster`).

The cluster file (default ``<gallery>/.facerec/clusters/clusters.json``)::

    {"format": 1, "threshold": 0.5, "model": "<embedder key>", "vectors": "vectors-<id>.npy",
     "groups": [{"label": "unknown_1", "sheet": "unknown_1.jpg",
                 "members": [{"photo": "/abs/IMG_1.jpg", "box": [x, y, w, h], "row": 0,
                              "bytes": 123456, "mtime_ns": 1700000000000000000}]}]}

``row`` indexes the ``(N, D)`` float32 vectors file; boxes are pixels of the
photo as displayed (EXIF-rotated).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from facerec.draw import put_text
from facerec.embed import l2_normalize
from facerec.errors import ClusterError, ConfigError, FaceRecError, ImageError
from facerec.gallery import validate_name
from facerec.storage import INDEX_DIR, file_hash, private_dir, shred, write_atomic
from facerec.types import Face

if TYPE_CHECKING:
    from facerec.pipeline import FaceRecognizer
    from facerec.tagging import PhotoResult

FORMAT = 1
LABEL_PREFIX = "unknown_"
CLUSTERS_DIR = "clusters"
CLUSTERS_FILE = "clusters.json"
MAX_AVERAGE_LINKAGE = 8000  # above this many faces, pairwise distances (N^2/2 float64) get too big
_BLOCK = 2048


# -- clustering (pure) -------------------------------------------------------------------


def cluster_unknown(vectors: np.ndarray, threshold: float, method: str = "auto") -> np.ndarray:
    """Group face vectors that belong to the same (unenrolled) person.

    Args:
        vectors: ``(N, D)`` float32 L2-normalised identity vectors.
        threshold: cosine similarity in [0, 1]; ``"average"``: two groups merge
            while the mean similarity between their members is above it (use
            the recognition threshold); ``"graph"``: faces at or above
            :func:`graph_link` of it are linked and each connected set is a group
            (single linkage, which chains look-alikes in big sets).
        method: ``"average"``, ``"graph"``, or ``"auto"``: average linkage inside each
            set of faces connected at the threshold (the same groups as ``"average"``,
            since two groups whose mean similarity reaches it have a pair that does),
            where a set bigger than :data:`MAX_AVERAGE_LINKAGE` is first cut at
            stricter links until its parts fit (so memory stays bounded).

    Returns:
        ``(N,)`` int64 group of each vector, ``0`` the biggest group, then by
        decreasing size (ties: the group whose first member comes first).
        Faces like no other are groups of one.

    Raises:
        ConfigError: threshold outside [0, 1], unknown method, bad shape, or non-finite values.
    """
    X = np.asarray(vectors, dtype=np.float32)
    if X.ndim != 2:
        raise ConfigError(f"vectors must be (N, D), got shape {X.shape}")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"cluster threshold must be in [0, 1], got {threshold}")
    if not np.isfinite(X).all():
        raise ConfigError("face vectors contain NaN or infinite values")
    if method not in ("average", "graph", "auto"):
        raise ConfigError(f"unknown clustering method {method!r}; choose average, graph or auto")
    if len(X) == 0:
        return np.zeros(0, dtype=np.int64)
    if len(X) == 1:
        return np.zeros(1, dtype=np.int64)
    X = l2_normalize(X)
    if method == "auto":
        raw = _average_in_parts(X, threshold)
    elif method == "average":
        raw = _average_linkage(X, max(1.0 - threshold, 1e-9))
    else:
        raw = _graph_components(X, graph_link(threshold))
    return _relabel_by_size(raw)


def _average_linkage(X: np.ndarray, distance: float) -> np.ndarray:
    """Average-linkage clusters of L2-normalised ``X`` ``(N, D)``: groups merge while their mean
    cosine distance is under ``distance`` (what scikit-learn's ``AgglomerativeClustering`` with
    ``distance_threshold`` gives; SciPy's imports in a tenth of the time, which the app's first
    Library view pays)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    d = np.clip(pdist(X.astype(np.float64), "cosine"), 0.0, 2.0)
    return fcluster(linkage(d, method="average"), np.nextafter(distance, 0.0), criterion="distance")


def _average_in_parts(X: np.ndarray, threshold: float) -> np.ndarray:
    """:func:`_average_linkage` inside each connected set of faces linked at ``threshold`` (exact),
    a set over :data:`MAX_AVERAGE_LINKAGE` faces cut first at links a fifth of the way closer to 1
    each time until its parts fit, past a link of 0.999 in library order (approximate: faces kept
    apart there are never grouped)."""
    labels = np.zeros(len(X), dtype=np.int64)
    done = 0
    todo = [(np.arange(len(X)), threshold)]
    while todo:
        idx, link = todo.pop()
        if len(idx) <= MAX_AVERAGE_LINKAGE:
            raw = _average_linkage(X[idx], max(1.0 - threshold, 1e-9)) if len(idx) > 1 else np.zeros(1, np.int64)
            ids = np.unique(raw, return_inverse=True)[1]
            labels[idx] = done + ids
            done += int(ids.max()) + 1
            continue
        if link >= 0.999:  # near-identical faces chained past any link: cut in library order
            todo += [(idx[i:i + MAX_AVERAGE_LINKAGE], link) for i in range(0, len(idx), MAX_AVERAGE_LINKAGE)]
            continue
        parts = _graph_components(X[idx], link)
        for p in np.unique(parts):
            sub = idx[parts == p]
            todo.append((sub, link if len(sub) <= MAX_AVERAGE_LINKAGE else link + 0.2 * (1.0 - link)))
    return labels


def graph_link(threshold: float) -> float:
    """The similarity at which the ``"graph"`` method links two faces: a tenth of the way from the
    recognition threshold to 1, because single linkage chains look-alikes where average linkage
    does not. Measured (``benchmarks/cluster_unknown.py``, 286 lfw_dev faces of 125 people):
    mobilefacenet linked at its threshold 0.502 mixed people (pair precision 0.73), at 0.552 it
    did not (0.987, adjusted Rand 0.987); face-resnet stays unmixed either way (0.942: 1.000,
    ARI 0.963; 0.948: 1.000, ARI 0.921)."""
    return threshold + 0.1 * (1.0 - threshold)


def _graph_components(X: np.ndarray, threshold: float) -> np.ndarray:
    """Connected components of the graph linking vectors with cosine >= threshold (blockwise, sparse)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows, cols = [], []
    for start in range(0, len(X), _BLOCK):
        sims = X[start:start + _BLOCK] @ X.T
        r, c = np.nonzero(sims >= threshold)
        rows.append(r + start)
        cols.append(c)
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(len(X), len(X)))
    return connected_components(graph, directed=False)[1]


def _relabel_by_size(raw: np.ndarray) -> np.ndarray:
    ids, first, counts = np.unique(raw, return_index=True, return_counts=True)
    order = sorted(range(len(ids)), key=lambda i: (-counts[i], first[i]))
    new = np.empty(len(ids), dtype=np.int64)
    new[order] = np.arange(len(ids))
    return new[np.searchsorted(ids, raw)]


# -- groups ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One unknown face: where it is.

    Attributes:
        photo: the photo file.
        box: ``(x, y, w, h)`` in displayed-photo pixels.
        bytes: the photo's size in bytes when clustered (``-1`` if unknown).
        mtime_ns: its modification time when clustered (``-1`` if unknown).
    """

    photo: Path
    box: tuple[float, float, float, float]
    bytes: int = -1
    mtime_ns: int = -1

    def unchanged(self) -> bool:
        """Whether the photo still has the size and modification time it had when clustered."""
        try:
            st = self.photo.stat()
        except OSError:
            return False
        return st.st_size == self.bytes and st.st_mtime_ns == self.mtime_ns


@dataclass(frozen=True, eq=False)
class UnknownGroup:
    """A group of unknown faces that look like one person.

    Attributes:
        label: ``unknown_1``, ``unknown_2``, ... (1 = biggest group).
        members: the faces, in run order.
        vectors: ``(len(members), D)`` float32 identity vectors, or ``None``.
    """

    label: str
    members: tuple[Member, ...]
    vectors: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.members)


def collect_unknown(results: Iterable["PhotoResult"]) -> tuple[list[Member], np.ndarray]:
    """The unknown faces of tagging results that carry vectors.

    Args:
        results: :class:`facerec.tagging.PhotoResult` items (failed photos are skipped).

    Returns:
        ``(members, vectors)``: one :class:`Member` per unknown face and their
        ``(N, D)`` float32 vectors (``(0, 0)`` when there is none). Faces
        without a vector are left out.
    """
    members, vecs = [], []
    for res in results:
        if res.error:
            continue
        stat = None
        for face, match in res.faces:
            if match.known or face.vector is None:
                continue
            if stat is None:
                try:
                    st = Path(res.path).stat()
                    stat = (st.st_size, st.st_mtime_ns)
                except OSError:
                    stat = (-1, -1)
            members.append(Member(Path(res.path), tuple(float(v) for v in face.box), *stat))
            vecs.append(np.asarray(face.vector, dtype=np.float32))
    X = np.stack(vecs) if vecs else np.zeros((0, 0), dtype=np.float32)
    return members, X


def group_unknown(members: Sequence[Member], vectors: np.ndarray, threshold: float,
                  method: str = "auto") -> list[UnknownGroup]:
    """Cluster unknown faces into labelled groups, biggest first (see :func:`cluster_unknown`)."""
    if len(members) != len(vectors):
        raise ConfigError(f"{len(members)} members but {len(vectors)} vectors")
    if not members:
        return []
    labels = cluster_unknown(vectors, threshold, method)
    groups = []
    for g in range(int(labels.max()) + 1):
        idx = np.flatnonzero(labels == g)
        groups.append(UnknownGroup(f"{LABEL_PREFIX}{g + 1}", tuple(members[i] for i in idx),
                                   np.asarray(vectors, dtype=np.float32)[idx]))
    return groups


# -- contact sheets ------------------------------------------------------------------------


def write_contact_sheet(group: UnknownGroup, out_path: Path, tile: int = 112, columns: int = 6,
                        max_faces: int = 48, quality: int = 90) -> int:
    """Save a JPEG grid of a group's face crops, under a caption with its label.

    Args:
        group: the group.
        out_path: JPEG file to write (replaced atomically).
        tile: side of each square crop in pixels.
        columns: crops per row (fewer when the group is smaller).
        max_faces: at most this many crops (the first members).
        quality: JPEG quality.

    Returns:
        The number of crops on the sheet; members whose photo cannot be read
        are left out. Nothing is written when no member could be read.
    """

    from facerec.align import crop_box
    from facerec.images import encode_jpeg, load_photo

    crops, photos = [], {}
    for m in group.members[:max_faces]:
        if m.photo not in photos:
            try:  # members come grouped by photo often; keep one, decoded reduced
                photos = {m.photo: load_photo(m.photo, 4 * tile)}
            except (ImageError, MemoryError):
                photos = {m.photo: None}
        photo = photos[m.photo]
        if photo is not None:
            box = tuple(v * photo.scale for v in m.box)
            crops.append(crop_box(photo.pixels, box, tile, margin=0.2))
    if not crops:
        return 0
    cols = min(columns, len(crops))
    rows = math.ceil(len(crops) / cols)
    header = 28
    sheet = np.full((header + rows * tile, cols * tile, 3), 255, dtype=np.uint8)
    for i, crop in enumerate(crops):
        r, c = divmod(i, cols)
        sheet[header + r * tile:header + (r + 1) * tile, c * tile:(c + 1) * tile] = crop
    more = len(group.members) - len(crops)
    caption = f"{group.label}: {len(group.members)} face(s)" + (f", {more} not shown" if more else "")
    put_text(sheet, caption, (4, 6), 16, (0, 0, 0))  # any script's names
    out_path = Path(out_path)
    private_dir(out_path.parent)
    write_atomic(out_path, encode_jpeg(sheet, quality), mode=0o600)
    return len(crops)


# -- cluster files ---------------------------------------------------------------------------


def default_clusters_file(gallery: Path) -> Path:
    """``<gallery>/.facerec/clusters/clusters.json``."""
    return Path(gallery) / INDEX_DIR / CLUSTERS_DIR / CLUSTERS_FILE


def save_clusters(groups: Sequence[UnknownGroup], path: Path, threshold: float, model: str,
                  sheets: bool = True) -> Path:
    """Write the cluster file, its vectors and (by default) one contact sheet per group.

    Everything goes into ``path``'s folder: ``clusters.json``, ``vectors-<id>.npy``
    and ``unknown_<n>.jpg``. The JSON is replaced last and atomically, so a
    reader sees the old run or the new one, never a mix; vectors and sheets of
    the previous run are then removed.

    Args:
        groups: from :func:`group_unknown` (each with ``vectors``).
        path: the JSON file to write.
        threshold: the clustering threshold used (recorded).
        model: the embedder key that made the vectors (recorded; vectors are
            reused at enrolment only when the recogniser's key matches).
        sheets: also write contact sheets.

    Returns:
        ``path``.
    """
    path = Path(path)
    folder = path.parent
    private_dir(folder)
    vec_name = f"vectors-{uuid.uuid4().hex[:12]}.npy"
    vecs = [g.vectors for g in groups if g.vectors is not None and len(g.vectors)]
    X = np.concatenate(vecs).astype(np.float32) if vecs else np.zeros((0, 0), dtype=np.float32)
    buf = io.BytesIO()
    np.save(buf, X)
    write_atomic(folder / vec_name, buf.getvalue(), mode=0o600)
    out_groups, row = [], 0
    for g in groups:
        sheet = f"{g.label}.jpg"
        if sheets and write_contact_sheet(g, folder / sheet) == 0:
            sheet = None
        members = []
        for i, m in enumerate(g.members):
            has_vec = g.vectors is not None and i < len(g.vectors)
            members.append({"photo": str(Path(m.photo).resolve()), "box": [round(float(v), 2) for v in m.box],
                            "row": row if has_vec else None, "bytes": m.bytes, "mtime_ns": m.mtime_ns})
            row += has_vec
        out_groups.append({"label": g.label, "sheet": sheet if sheets else None, "members": members})
    doc = {"format": FORMAT, "threshold": float(threshold), "model": model, "vectors": vec_name,
           "groups": out_groups}
    _replace_shredding(path, (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    keep = {vec_name} | {g["sheet"] for g in out_groups if g["sheet"]}
    for old in folder.iterdir():
        if old.name not in keep and (re.fullmatch(r"vectors-[0-9a-f]{12}\.npy", old.name)
                                     or re.fullmatch(rf"{LABEL_PREFIX}\d+\.jpg", old.name)):
            shred(old)
    return path


def _replace_shredding(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically (mode 0600 if new) and overwrite the old file's bytes on disk."""
    for stale in path.parent.glob(f".{path.name}.*.old"):  # left by a crash below
        try:
            same = path.exists() and os.path.samefile(stale, path)
        except OSError:
            same = False
        stale.unlink(missing_ok=True) if same else shred(stale)
    old: Path | None = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old")
    try:
        os.link(path, old)  # a second name for the old bytes, to shred them once replaced
    except OSError:
        old = None
    try:
        write_atomic(path, data, mode=0o600)
    except BaseException:
        if old is not None:
            old.unlink(missing_ok=True)  # the old file is still the current one: keep its bytes
        raise
    if old is not None:
        shred(old)


def forget_faces(path: Path, shas: set[str], sizes: set[int], vectors: Mapping[str, np.ndarray],
                 folder: Path | None = None) -> list[str]:
    """Remove from a cluster file every group holding a face of a person being forgotten.

    A group holds their face when a member's photo is one of theirs (its content hash is
    in ``shas``; only photos whose size is in ``sizes`` are hashed), lies in their gallery
    ``folder``, or when a member's vector (made by the cluster file's model) is at least
    the file's threshold similar to one of theirs (``vectors[model]``: the same person,
    clustered before they were enrolled). The cluster file is rewritten without those
    groups, its vectors file replaced by one without their rows, and their contact
    sheets and the old files shredded.

    Returns:
        The labels of the groups removed (``[]``: the file was not touched).

    Raises:
        ClusterError: the cluster file is unreadable or malformed (it is left as it was).
    """
    path = Path(path)
    if not path.is_file():
        return []
    clusters = load_clusters(path)
    theirs = vectors.get(clusters.model)
    theirs = l2_normalize(np.asarray(theirs, np.float32)) if theirs is not None and len(theirs) else None
    hashes: dict[Path, str | None] = {}

    def their_photo(m: Member) -> bool:
        if folder is not None and Path(folder) in Path(m.photo).parents:
            return True
        if m.bytes not in sizes and m.bytes != -1:
            return False
        if m.photo not in hashes:
            try:
                hashes[m.photo] = file_hash(m.photo) if m.photo.is_file() else None
            except OSError:
                hashes[m.photo] = None
        return hashes[m.photo] in shas

    drop = []
    for g in clusters.groups:
        close = False
        if theirs is not None and g.vectors is not None and len(g.vectors) and g.vectors.shape[1] == theirs.shape[1]:
            close = bool((l2_normalize(g.vectors) @ theirs.T).max() >= clusters.threshold - 1e-6)
        if close or any(their_photo(m) for m in g.members):
            drop.append(g.label)
    if not drop:
        return []
    doc = json.loads(path.read_text(encoding="utf-8"))
    old_vectors = doc.get("vectors")
    X = None
    if old_vectors:
        try:
            X = np.load(path.parent / old_vectors, allow_pickle=False)
        except (OSError, ValueError):
            X = None
    rows, kept, sheets = [], [], []
    for g in doc["groups"]:
        if g["label"] in drop:
            if g.get("sheet"):
                sheets.append(path.parent / Path(g["sheet"]).name)
            continue
        for m in g["members"]:
            r = m.get("row")
            if X is not None and X.ndim == 2 and isinstance(r, int) and 0 <= r < len(X):
                m["row"] = len(rows)
                rows.append(X[r])
            else:
                m["row"] = None
        kept.append(g)
    vec_name = f"vectors-{uuid.uuid4().hex[:12]}.npy"
    buf = io.BytesIO()
    np.save(buf, np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), dtype=np.float32))
    write_atomic(path.parent / vec_name, buf.getvalue(), mode=0o600)
    doc["vectors"], doc["groups"] = vec_name, kept
    _replace_shredding(path, (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    for old in sheets + ([path.parent / Path(old_vectors).name] if old_vectors else []):
        shred(old)
    return drop


@dataclass(frozen=True)
class ClusterFile:
    """A loaded cluster file: its groups and how they were made."""

    path: Path
    groups: tuple[UnknownGroup, ...]
    threshold: float
    model: str

    def group(self, label: str) -> UnknownGroup:
        """The group called ``label``.

        Raises:
            ClusterError: no such group (the message lists the labels there are).
        """
        for g in self.groups:
            if g.label == label:
                return g
        labels = [g.label for g in self.groups]
        shown = ", ".join(labels[:10]) + (f" ... ({len(labels)} groups)" if len(labels) > 10 else "")
        raise ClusterError(f"no group {label!r} in {self.path}" + (f"; groups: {shown}" if labels else "; it has no groups"))


def load_clusters(path: Path) -> ClusterFile:
    """Read a cluster file written by :func:`save_clusters`.

    Raises:
        ClusterError: missing, unreadable or malformed.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClusterError(f"{path}: no cluster file; run `facerec tag FOLDER --cluster-unknown` first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClusterError(f"{path}: cannot read cluster file ({exc})") from None
    try:
        if doc.get("format") != FORMAT:
            raise ClusterError(f"{path}: unsupported cluster file format {doc.get('format')!r}")
        X = None
        if doc.get("vectors"):
            try:
                X = np.load(path.parent / doc["vectors"], allow_pickle=False)
            except (OSError, ValueError):
                X = None  # vectors gone: members are re-detected and embedded at enrolment
        groups = []
        for g in doc["groups"]:
            members = tuple(Member(Path(m["photo"]), tuple(float(v) for v in m["box"]), int(m.get("bytes", -1)),
                                   int(m.get("mtime_ns", -1))) for m in g["members"])
            rows = [m.get("row") for m in g["members"]]
            vecs = None
            if X is not None and X.ndim == 2 and rows and all(isinstance(r, int) and 0 <= r < len(X) for r in rows):
                vecs = X[rows].astype(np.float32)
            groups.append(UnknownGroup(str(g["label"]), members, vecs))
        return ClusterFile(path, tuple(groups), float(doc["threshold"]), str(doc["model"]))
    except ClusterError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ClusterError(f"{path}: malformed cluster file ({type(exc).__name__}: {exc})") from None


# -- enrolment -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterEnrolment:
    """What :func:`enroll_cluster` did.

    Attributes:
        name: the person the group was enrolled as.
        enrolled: photos newly enrolled.
        duplicates: photos that were already enrolled for this person.
        skipped: ``(photo, reason)`` for members that could not be enrolled
            (photo gone or unreadable, face no longer found); the reason does
            not repeat the path.
    """

    name: str
    enrolled: tuple[Path, ...]
    duplicates: tuple[Path, ...]
    skipped: tuple[tuple[Path, str], ...]


def enroll_cluster(recognizer: "FaceRecognizer", label: str, name: str,
                   clusters_file: Path | None = None) -> ClusterEnrolment:
    """Enrol every face of one unknown group as ``name``.

    Each member's photo is enrolled with that member's face: its stored vector
    when the photo is unchanged and the recogniser's embedder made the vectors,
    else the face is detected again (the detection overlapping the stored box
    best, IoU >= 0.3) and embedded. Members that fail are reported, not fatal.

    Args:
        recognizer: the recogniser whose gallery receives the photos.
        label: e.g. ``"unknown_3"``.
        name: the person (validated; created if new).
        clusters_file: default ``<gallery>/.facerec/clusters/clusters.json``.

    Raises:
        InvalidNameError: bad name. ClusterError: no cluster file or no such
        label. In both cases the gallery is unchanged.
    """
    name = validate_name(name)
    clusters = load_clusters(clusters_file or default_clusters_file(recognizer.gallery.root))
    return enroll_group(recognizer, clusters.group(label), name, clusters.model, clusters.threshold)


def enroll_group(recognizer: "FaceRecognizer", group: UnknownGroup, name: str, model: str,
                 threshold: float) -> ClusterEnrolment:
    """Enrol every face of ``group`` as ``name`` (validated), one face per photo, as
    :func:`enroll_cluster` describes; ``model`` made the group's vectors, ``threshold`` is how
    alike a face found again must be to its stored vector."""
    from facerec.images import read_bytes
    from facerec.types import iou

    name = validate_name(name)
    reuse = group.vectors is not None and model == recognizer.embedder.key
    enrolled, dups, skipped = [], [], []
    seen: set[Path] = set()
    for i, m in enumerate(group.members):
        if m.photo in seen:
            skipped.append((m.photo, "another face of this photo is in the group; one face per photo is enrolled"))
            continue
        seen.add(m.photo)
        try:
            data = read_bytes(m.photo)
            face = None
            if reuse and m.unchanged():
                face = Face(box=m.box, score=1.0, vector=group.vectors[i])
            else:
                found = recognizer.find_faces(recognizer.read(data, str(m.photo)))  # decoded once, reduced
                best = max(found, key=lambda f: iou(f.box, m.box), default=None)
                if best is None or iou(best.box, m.box) < 0.3:
                    skipped.append((m.photo, "the face is no longer found in this photo"))
                    continue
                face = recognizer.embed([best])[0]
                if reuse and float(face.vector @ group.vectors[i]) < threshold:
                    skipped.append((m.photo, "the face there no longer looks like this group's (photo changed)"))
                    continue
            result = recognizer.enroll(name, data, source=str(m.photo), face=face)
        except FaceRecError as exc:
            reason = str(exc)
            skipped.append((m.photo, reason.removeprefix(f"{m.photo}: ")))
            continue
        (dups if result.duplicate else enrolled).append(m.photo)
    return ClusterEnrolment(name, tuple(enrolled), tuple(dups), tuple(skipped))
