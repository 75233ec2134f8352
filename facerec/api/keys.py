"""API keys of ``facerec serve``: made with ``facerec admin api-key create``, stored hashed.

The file is ``<gallery>/.facerec/api_keys.json`` (:attr:`facerec.storage.GalleryFiles.api_keys`),
mode 0600 in the 0700 index folder, replaced atomically::

    {"keys": [{"name": "doorbell", "scope": "recognize", "sha256": "<hex>", "created": 1718000000.0}]}

A key is 32 random bytes (``secrets.token_urlsafe``) prefixed ``frk_``; only its SHA-256 is
kept (a random 256-bit secret needs no slow hash), so it is shown once, when created.
Scopes: ``recognize`` (recognise, detect, verify, list) and ``manage`` (also enrol,
rename and delete). A running server re-reads the file when it changes, so ``revoke``
takes effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from facerec.errors import ConfigError, FaceRecError
from facerec.storage import GalleryFiles, private_dir, write_atomic

SCOPES = ("recognize", "manage")
KEY_PREFIX = "frk_"


class KeyNotFoundError(FaceRecError):
    """No API key has the given name."""

    exit_code = 4


@dataclass(frozen=True)
class ApiKey:
    """One stored key (never the key itself).

    Attributes:
        name: who uses it ("doorbell"); unique.
        scope: ``"recognize"`` or ``"manage"``.
        sha256: hex SHA-256 of the key.
        created: ``time.time()`` of creation.
    """

    name: str
    scope: str
    sha256: str
    created: float

    @property
    def can_manage(self) -> bool:
        """Whether this key may enrol, rename and delete."""
        return self.scope == "manage"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """The API keys of one gallery (thread-safe; re-reads the file when it changes)."""

    def __init__(self, gallery: Path | str) -> None:
        self.path = GalleryFiles(Path(gallery)).api_keys
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: list[ApiKey] = []

    # -- reading -------------------------------------------------------------------

    def _load(self) -> list[ApiKey]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._keys = None, []
            return []
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                rows = json.loads(self.path.read_text(encoding="utf-8")).get("keys", [])
                keys = [ApiKey(str(r["name"]), str(r["scope"]), str(r["sha256"]), float(r.get("created", 0)))
                        for r in rows if r.get("scope") in SCOPES]
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ConfigError(f"{self.path}: unreadable API key file ({exc}); fix or remove it") from None
            self._stamp, self._keys = stamp, keys
        return self._keys

    def list(self) -> list[ApiKey]:
        """Every key, oldest first."""
        with self._lock:
            return list(self._load())

    def any(self) -> bool:
        """Whether at least one key exists (then every request needs one)."""
        return bool(self.list())

    def check(self, key: str | None) -> ApiKey | None:
        """The stored key that ``key`` is, or ``None`` (missing, wrong or revoked);
        compared in constant time."""
        if not key:
            return None
        digest = _digest(key)
        found = None
        for k in self.list():
            if hmac.compare_digest(k.sha256, digest):
                found = k
        return found

    # -- changing ------------------------------------------------------------------

    def _save(self, keys: list[ApiKey]) -> None:
        private_dir(self.path.parent)
        data = {"keys": [{"name": k.name, "scope": k.scope, "sha256": k.sha256, "created": k.created} for k in keys]}
        write_atomic(self.path, (json.dumps(data, indent=1) + "\n").encode("utf-8"), mode=0o600)
        self._stamp = None

    def create(self, name: str, scope: str) -> str:
        """Make a new key called ``name`` with ``scope``; returns the key (shown once).

        Raises:
            ConfigError: empty or taken name, or unknown scope.
        """
        name = (name or "").strip()
        if not name or len(name) > 100 or any(c in name for c in "\r\n\t"):
            raise ConfigError("an API key needs a name of 1-100 characters on one line (e.g. doorbell)")
        if scope not in SCOPES:
            raise ConfigError(f"unknown scope {scope!r}; choose one of {', '.join(SCOPES)}")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            keys = list(self._load())
            if any(k.name == name for k in keys):
                raise ConfigError(f"an API key called {name!r} exists; revoke it first or pick another name")
            self._save(keys + [ApiKey(name, scope, _digest(key), time.time())])
        return key

    def revoke(self, name: str) -> None:
        """Delete the key called ``name``.

        Raises:
            KeyNotFoundError: no such key.
        """
        with self._lock:
            keys = list(self._load())
            kept = [k for k in keys if k.name != name]
            if len(kept) == len(keys):
                raise KeyNotFoundError(f"no API key called {name!r}")
            self._save(kept)
