"""One typed settings object, read from ``FACEREC_*`` environment variables and the
choices saved for a gallery.

Pass a :class:`Settings` explicitly to everything that needs one; nothing in
facerec reads the environment behind your back except :meth:`Settings.from_env`
and :func:`effective_settings`.

**One settings source per gallery.** The base, detector and per-base thresholds chosen
on the app's Settings page are saved in the gallery (:func:`save_choices`,
``<gallery>/.facerec/settings.json``) and apply to every front end that builds its
settings with :func:`effective_settings` (the CLI and the app). For each field, the
first of these that is set wins:

1. a command-line flag (``--backbone``, ``--threshold``...), for one run;
2. a ``FACEREC_*`` environment variable, for one run (or one server);
3. the choice saved for the gallery;
4. the default.

A saved threshold belongs to its base and head (:func:`threshold_key`): it applies only
when that base and head are in use, whichever of the above chose the base.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from facerec.errors import ConfigError
from facerec.storage import GalleryFiles, private_dir, write_atomic

DETECTORS = ("yunet", "mtcnn", "opencv")
RUNTIMES = ("auto", "litert", "keras")
"""What may run the networks that come as .tflite files (:attr:`Settings.runtime`)."""

CALIBRATED = "calibrated"
"""A threshold setting meaning: the calibrated threshold of the base and head in use."""


def _truthy(text: str) -> bool:
    """An environment variable's yes/no (``1``, ``true``, ``yes``, ``on``: yes)."""
    return text.strip().lower() in ("1", "true", "yes", "on")


def parse_threshold(value: Any) -> float | None:
    """A recognition threshold from a number, a numeric string or ``"calibrated"``
    (``None`` means calibrated too).

    Raises:
        ConfigError: not a number in [0, 1] nor ``"calibrated"``.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == CALIBRATED):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"recognition threshold must be a number in [0, 1] or {CALIBRATED!r}, "
                          f"got {value!r}") from None
    if not 0.0 <= number <= 1.0:  # NaN fails too
        raise ConfigError(f"recognition threshold must be in [0, 1], got {value}")
    return number


def threshold_key(backbone: str, head: Path | str | None = None) -> str:
    """What a recognition threshold belongs to: the base's name, plus the head file
    (``"resnet50+/path/head"``) when one is set in place of the shipped head."""
    return backbone if head is None else f"{backbone}+{head}"


def saved_thresholds(choices: Mapping[str, Any]) -> dict[str, float | None]:
    """The thresholds of a saved choices document (the app's settings file), one per base
    and head (:func:`threshold_key`), ``None`` for calibrated.

    The document keeps ``{"thresholds": {key: number or "calibrated"}}``; a document of
    facerec 0.4 (``{"backbone": b, "threshold": t}``) gives ``{b: t}``. Values that are
    not valid thresholds are left out.
    """
    raw = choices.get("thresholds")
    if not isinstance(raw, Mapping):
        raw = {choices["backbone"]: choices["threshold"]} if "backbone" in choices and "threshold" in choices else {}
    out: dict[str, float | None] = {}
    for key, value in raw.items():
        try:
            out[str(key)] = parse_threshold(value)
        except ConfigError:
            continue
    return out


def with_threshold(choices: Mapping[str, Any], key: str, threshold: float | None, **fields: Any) -> dict:
    """A copy of a saved choices document with ``threshold`` (``None``: calibrated) saved for
    ``key`` (other bases keep theirs) and ``fields`` (backbone, detector...) set.

    Its top-level ``threshold`` is the one of the saved ``backbone``'s key (``key`` when
    that is the saved base), so a reader that only knows that field applies the right one.
    """
    thresholds = {k: CALIBRATED if v is None else v for k, v in saved_thresholds(choices).items()}
    thresholds[key] = CALIBRATED if threshold is None else float(parse_threshold(threshold))
    doc = {k: v for k, v in choices.items() if k not in ("threshold", "thresholds")}
    doc.update(fields)
    doc["thresholds"] = thresholds
    base = doc.get("backbone")
    mine = key if base is not None and (key == base or key.startswith(f"{base}+")) else base
    doc["threshold"] = thresholds.get(mine, CALIBRATED)
    return doc


def default_cache_dir() -> Path:
    """The per-user cache folder (converted weights, feature caches)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facerec"


def weights_env(name: str) -> str:
    """The variable that points base ``name`` at a weights file: ``FACEREC_WEIGHTS_<NAME>``."""
    return f"FACEREC_WEIGHTS_{name.upper().replace('-', '_')}"


@dataclass(frozen=True)
class Settings:
    """Everything a user may configure.

    Attributes:
        gallery: folder of enrolled people (one sub-folder each).
        backbone: base network name from :data:`facerec.embed.BACKBONES`.
        detector: ``"yunet"`` (libfacedetection's CNN, landmarks, default), ``"mtcnn"``
            (landmarks) or ``"opencv"`` (Haar, no landmarks).
        detection_confidence: minimum detector score in [0, 1] to keep a face; ``None``:
            the detector's measured default (yunet 0.75, mtcnn 0.9).
        min_face_size: smallest face side kept, in original-image pixels.
        min_face_fraction: faces narrower than this fraction of the photo's shorter side
            are not searched either. The default, 20/1024, keeps ``min_face_size`` for
            photos up to 1024 px on their shorter side (as WIDER FACE's, where recall is
            measured) and scales it with larger ones (59 px in a 12 MP photo), so their
            image pyramid stays small; 0 searches every face down to ``min_face_size``.
        threshold: recognition threshold on the match score in [0, 1]; below
            it a face is ``unknown``. ``None`` (or ``"calibrated"``, :data:`CALIBRATED`)
            uses the value calibrated for the base and head in use and, where the base
            ships a stranger curve, for the gallery's size (:mod:`facerec.thresholds`).
            A number belongs to one base: :meth:`replace` with another ``backbone`` or
            ``head`` drops it.
        max_detect_side: photos are downscaled so their longer side is at most
            this many pixels before detection (boxes are mapped back).
        detect_pixels: YuNet searches faces below ``min_face_size`` (down to 12 px, then drops
            those under the minimum) as long as the photo it looks at stays within this many
            pixels: small photos are searched to 12 px (a face of 24 px is no longer at the
            network's limit), large ones stay cheap. 0: the smallest face searched is the minimum
            (facerec 0.7). See benchmarks/detection.py.
        flip: average each face's vector with its mirror image's; ``None`` uses
            the backbone's measured default.
        retry_no_face: when no face is found in a photo, look again with a finer pyramid down
            to 12 px (:meth:`facerec.facepath.FacePath.locate`): tagging, ``identify``, the app's
            Identify and enrolment alike, so that each finds the same faces in a photo.
        batch_size: faces per embedding batch.
        runtime: what runs a base that comes as a ``.tflite`` file (mobilefacenet): ``"auto"``
            (LiteRT, without importing TensorFlow, when it is installed and no head is used; Keras
            otherwise), ``"litert"`` or ``"keras"`` (same vectors; :func:`facerec.embed.embedding_runtime`).
        cache_dir: converted weights and feature caches live here.
        head: a trained head file stem (``PATH.weights.h5`` + ``PATH.json``)
            instead of the one shipped for the backbone.
        weights: explicit weight files, ``(("resnet50", Path), ...)``.
        ice_servers: STUN/TURN servers for the app's live video (WebRTC), either
            comma-separated URLs (``stun:stun.example.org:3478``) or a JSON list of
            RTCIceServer objects; empty (the default) is enough on localhost.
        photo_roots: the only folders (and their sub-folders, symlinks resolved) the app's
            Tag photos page may read; ``FACEREC_PHOTO_ROOTS`` separates them with
            ``os.pathsep``. ``None``: the home folder when the app is local, none (uploads
            only) when it is served to other machines (:func:`facerec.auth.photo_roots`).
    """

    gallery: Path = Path("enroll_data")
    backbone: str = "mobilefacenet"
    detector: str = "yunet"
    detection_confidence: float | None = None
    min_face_size: int = 20
    min_face_fraction: float = 20 / 1024
    threshold: float | None = None
    max_detect_side: int = 1280
    detect_pixels: int = 500_000
    flip: bool | None = None
    retry_no_face: bool = True
    batch_size: int = 32
    runtime: str = "auto"
    cache_dir: Path = field(default_factory=default_cache_dir)
    weights: tuple[tuple[str, Path], ...] = ()
    head: Path | None = None
    ice_servers: str = ""
    photo_roots: tuple[Path, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("gallery", "cache_dir", "head"):  # a flag's string is a path too
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if self.detector not in DETECTORS:
            raise ConfigError(f"unknown detector {self.detector!r}; choose one of {', '.join(DETECTORS)}")
        if self.detection_confidence is not None and not 0.0 <= self.detection_confidence <= 1.0:
            raise ConfigError(f"detection confidence must be in [0, 1], got {self.detection_confidence}")
        object.__setattr__(self, "threshold", parse_threshold(self.threshold))
        if not 0.0 <= self.min_face_fraction < 0.5:
            raise ConfigError(f"minimum face fraction must be in [0, 0.5), got {self.min_face_fraction}")
        if self.min_face_size < 1:
            raise ConfigError(f"minimum face size must be at least 1 pixel, got {self.min_face_size}")
        if self.detect_pixels < 0:
            raise ConfigError(f"detect pixels must be >= 0, got {self.detect_pixels}")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"unknown runtime {self.runtime!r}; choose one of {', '.join(RUNTIMES)}")
        if self.batch_size < 1 or self.max_detect_side < 64:
            raise ConfigError("batch size must be >= 1 and max detect side >= 64")

    def weight_file(self, backbone: str) -> Path | None:
        """The weights file configured for ``backbone``, if any."""
        return dict(self.weights).get(backbone)

    def ice_server_list(self) -> list[dict]:
        """:attr:`ice_servers` as WebRTC ``iceServers`` (a list of ``{"urls": [...], ...}``).

        Raises:
            ConfigError: the JSON form is malformed.
        """
        raw = self.ice_servers.strip()
        if not raw:
            return []
        if not raw.startswith("["):
            return [{"urls": [u.strip() for u in raw.split(",") if u.strip()]}]
        try:
            servers = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"FACEREC_ICE_SERVERS is not valid JSON: {exc}") from None
        if not isinstance(servers, list) or not all(isinstance(x, dict) and "urls" in x for x in servers):
            raise ConfigError("FACEREC_ICE_SERVERS must be a JSON list of objects with 'urls'")
        return servers

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some fields changed; ``None`` values are ignored, except
        ``threshold=None``, which means the calibrated threshold (as ``"calibrated"``).

        A threshold belongs to a base and head: changing ``backbone`` or ``head`` without
        giving a ``threshold`` goes back to the new base's calibrated one (``threshold=None``
        or ``"calibrated"`` does so explicitly), so one base's number never reaches another.
        """
        changes = {k: v for k, v in changes.items() if v is not None or k == "threshold"}
        moved = any(k in changes and changes[k] != getattr(self, k) for k in ("backbone", "head"))
        if moved and "threshold" not in changes:
            changes["threshold"] = CALIBRATED
        return dataclasses.replace(self, **changes)

    @property
    def threshold_key(self) -> str:
        """What :attr:`threshold` belongs to (see :func:`threshold_key`)."""
        return threshold_key(self.backbone, self.head)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Settings from ``FACEREC_<FIELD>`` variables, then ``overrides`` (None = unset).

        ``FACEREC_WEIGHTS_<BACKBONE>`` (e.g. ``FACEREC_WEIGHTS_RESNET50``) names a weight file.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        casts = {
            "gallery": Path, "backbone": str, "detector": str,
            "detection_confidence": float, "min_face_size": int, "min_face_fraction": float,
            "threshold": parse_threshold, "max_detect_side": int, "detect_pixels": int, "batch_size": int, "runtime": str,
            "cache_dir": Path, "head": Path, "ice_servers": str, "flip": _truthy, "retry_no_face": _truthy,
            "photo_roots": lambda s: tuple(Path(p) for p in s.split(os.pathsep) if p.strip()),
        }
        for name, cast in casts.items():
            raw = env.get(f"FACEREC_{name.upper()}")
            if raw is not None and raw != "":
                try:
                    values[name] = cast(raw)
                except ValueError as exc:
                    raise ConfigError(f"FACEREC_{name.upper()}={raw!r} is not valid: {exc}") from None
        weights = tuple(sorted(
            (key[len("FACEREC_WEIGHTS_"):].lower().replace("_", "-"), Path(val))
            for key, val in env.items() if key.startswith("FACEREC_WEIGHTS_") and val
        ))
        if weights:
            values["weights"] = weights
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# -- the choices saved for a gallery ----------------------------------------------------

SAVED_FIELDS = ("backbone", "detector")
"""Settings fields a gallery's saved choices may set (besides the per-base ``thresholds``)."""


def settings_file(gallery: Path | str) -> Path:
    """Where the choices of ``gallery`` are saved (``<gallery>/.facerec/settings.json``)."""
    return GalleryFiles(Path(gallery)).settings


def load_choices(gallery: Path | str) -> dict[str, Any]:
    """The choices saved for ``gallery`` (base, detector, per-base thresholds: see
    :func:`with_threshold`), ``{}`` when none were saved.

    Reads ``<gallery>/.facerec/settings.json``, or, when it is missing, the app's file of
    facerec 0.7 and before (``app_settings.json``, same document).

    Raises:
        ConfigError: the file exists but cannot be read or is not a JSON object.
    """
    files = GalleryFiles(Path(gallery))
    for path in (files.settings, files.legacy_settings):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the saved settings {path} ({getattr(exc, 'strerror', None) or exc}); "
                              "fix its permissions, or delete it to use the defaults") from None
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"the saved settings {path} are not valid JSON ({exc}); fix the file, or delete it "
                              "and save them again on the app's Settings page") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"the saved settings {path} are not a JSON object; delete the file and save them "
                              "again on the app's Settings page")
        return doc
    return {}


def save_choices(gallery: Path | str, choices: Mapping[str, Any]) -> Path:
    """Save ``choices`` (a document built with :func:`with_threshold`) as the settings of
    ``gallery``, atomically, mode 0600 in the 0700 index folder; returns the file.

    Every front end reads them back through :func:`effective_settings`.

    Raises:
        ConfigError: the detector is not one of :data:`DETECTORS` (thresholds are checked by
            :func:`with_threshold`); nothing is written.
        OSError: the file could not be written (nothing was changed).
    """
    doc = dict(choices)
    if "detector" in doc and doc["detector"] not in DETECTORS:
        raise ConfigError(f"unknown detector {doc['detector']!r}; choose one of {', '.join(DETECTORS)}")
    path = settings_file(gallery)
    private_dir(path.parent)
    write_atomic(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(), mode=0o600)
    return path


def _set_in_env(env: Mapping[str, str], name: str) -> bool:
    """Whether ``FACEREC_<NAME>`` is set to something (an empty value counts as unset, as in
    :meth:`Settings.from_env`)."""
    return env.get(f"FACEREC_{name.upper()}", "") != ""


def with_choices(settings: Settings, choices: Mapping[str, Any], fixed: Iterable[str] = ()) -> Settings:
    """``settings`` with the saved ``choices`` applied to the fields not in ``fixed`` (those a
    flag or an environment variable set for this run).

    The threshold is the one saved for the resulting base and head (:func:`threshold_key`),
    calibrated when none was; a ``fixed`` threshold is kept whatever the base.

    Raises:
        ConfigError: a saved value is not valid.
    """
    fixed = set(fixed)
    values: dict[str, Any] = {name: choices[name] for name in SAVED_FIELDS
                              if name not in fixed and choices.get(name) is not None}
    if "backbone" in values and not isinstance(values["backbone"], str):
        raise ConfigError(f"saved base {values['backbone']!r} is not a base network's name")
    if "threshold" not in fixed:
        key = threshold_key(values.get("backbone", settings.backbone), settings.head)
        values["threshold"] = saved_thresholds(choices).get(key)
    return dataclasses.replace(settings, **values)


def effective_settings(environ: Mapping[str, str] | None = None,
                       warn: Callable[[str], None] | None = None, **flags: Any) -> Settings:
    """The settings one run uses on its gallery, for the CLI and the app alike.

    For each field: ``flags`` (command-line options; ``None`` = not given) win over
    ``FACEREC_*`` variables of ``environ`` (default ``os.environ``), which win over the
    choices saved for the gallery (:func:`load_choices`), which win over the defaults. The
    gallery itself comes from the flags or the environment.

    Args:
        warn: when given, saved settings that cannot be used (an unreadable file, an
            invalid value) are reported through it and left out, instead of raising.

    Raises:
        ConfigError: a flag or variable is invalid; or the saved settings are, and no
            ``warn`` was given.
    """
    env = os.environ if environ is None else environ
    settings = Settings.from_env(env, **flags)
    fixed = {name for name, value in flags.items() if value is not None}
    fixed |= {name for name in (*SAVED_FIELDS, "threshold") if _set_in_env(env, name)}
    try:
        choices = load_choices(settings.gallery)
        try:
            return with_choices(settings, choices, fixed)
        except ConfigError as exc:
            raise ConfigError(f"the settings saved for {settings.gallery} cannot be used: {exc}; save them again "
                              "on the app's Settings page") from None
    except ConfigError as exc:
        if warn is None:
            raise
        warn(f"{exc} (ignored for now: the defaults and FACEREC_* variables apply)")
        return settings
