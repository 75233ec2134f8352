"""One typed settings object, read from ``FACEREC_*`` environment variables.

Pass a :class:`Settings` explicitly to everything that needs one; nothing in
facerec reads the environment behind your back except :meth:`Settings.from_env`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from facerec.errors import ConfigError

DETECTORS = ("mtcnn", "opencv")


def default_cache_dir() -> Path:
    """The per-user cache folder (converted weights, feature caches)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facerec"


@dataclass(frozen=True)
class Settings:
    """Everything a user may configure.

    Attributes:
        gallery: folder of enrolled people (one sub-folder each).
        backbone: base network name from :data:`facerec.embed.BACKBONES`.
        detector: ``"mtcnn"`` (landmarks, default) or ``"opencv"`` (Haar, fast).
        detection_confidence: minimum detector score in [0, 1] to keep a face.
        min_face_size: smallest face side kept, in original-image pixels.
        min_face_fraction: faces narrower than this fraction of the photo's shorter side
            are not searched either. The default, 20/1024, keeps ``min_face_size`` for
            photos up to 1024 px on their shorter side (as WIDER FACE's, where recall is
            measured) and scales it with larger ones (59 px in a 12 MP photo), so their
            image pyramid stays small; 0 searches every face down to ``min_face_size``.
        threshold: recognition threshold on the match score in [0, 1]; below
            it a face is ``unknown``. ``None`` uses the backbone's calibrated value.
        max_detect_side: photos are downscaled so their longer side is at most
            this many pixels before detection (boxes are mapped back).
        flip: average each face's vector with its mirror image's; ``None`` uses
            the backbone's measured default.
        batch_size: faces per embedding batch.
        cache_dir: converted weights and feature caches live here.
        head: a trained head file stem (``PATH.weights.h5`` + ``PATH.json``)
            instead of the one shipped for the backbone.
        weights: explicit weight files, ``(("resnet50", Path), ...)``.
        ice_servers: STUN/TURN servers for the app's live video (WebRTC), either
            comma-separated URLs (``stun:stun.example.org:3478``) or a JSON list of
            RTCIceServer objects; empty (the default) is enough on localhost.
    """

    gallery: Path = Path("enroll_data")
    backbone: str = "face-resnet"
    detector: str = "mtcnn"
    detection_confidence: float = 0.9
    min_face_size: int = 20
    min_face_fraction: float = 20 / 1024
    threshold: float | None = None
    max_detect_side: int = 1280
    flip: bool | None = None
    batch_size: int = 32
    cache_dir: Path = field(default_factory=default_cache_dir)
    weights: tuple[tuple[str, Path], ...] = ()
    head: Path | None = None
    ice_servers: str = ""

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ConfigError(f"unknown detector {self.detector!r}; choose one of {', '.join(DETECTORS)}")
        if not 0.0 <= self.detection_confidence <= 1.0:
            raise ConfigError(f"detection confidence must be in [0, 1], got {self.detection_confidence}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"recognition threshold must be in [0, 1], got {self.threshold}")
        if not 0.0 <= self.min_face_fraction < 0.5:
            raise ConfigError(f"minimum face fraction must be in [0, 0.5), got {self.min_face_fraction}")
        if self.min_face_size < 1:
            raise ConfigError(f"minimum face size must be at least 1 pixel, got {self.min_face_size}")
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
        """A copy with some fields changed; ``None`` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

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
            "threshold": float, "max_detect_side": int, "batch_size": int,
            "cache_dir": Path, "head": Path, "ice_servers": str, "flip": lambda s: s.strip().lower() in ("1", "true", "yes", "on"),
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
