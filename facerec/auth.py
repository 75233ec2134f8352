"""Who may use the app, and which server folders it may read.

Pure functions, usable without a Streamlit runtime (app.py draws the screens):

- the admin password: an Argon2id hash (argon2-cffi, random salt per hash) in
  ``GALLERY/.facerec/admin_password``, mode 0600, written atomically;
- sign-in throttling: failed attempts are counted in
  ``GALLERY/.facerec/signin_failures.json`` (server side, so a new browser session
  does not reset it); from the :data:`FREE_ATTEMPTS`-th failure in a row each
  attempt must wait 2, 4, 8... seconds (at most :data:`MAX_DELAY_S`) after the last.
  It fails closed: a count that cannot be read locks the sign-in
  (:class:`ThrottleUnreadableError`) until an admin sets the password again;
- whether the app is served to other machines (:func:`is_local_address`,
  :func:`served_remotely`) and what it then shows (:func:`gate`);
- the folders the Tag photos page may read (:func:`photo_roots`, :func:`allowed_folder`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import os
import secrets
import threading
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from facerec.errors import ConfigError, FaceRecError
from facerec.storage import GalleryFiles, private_dir, tighten, write_atomic

PASSWORD_FILE = GalleryFiles(Path(".")).admin_password.name
THROTTLE_FILE = GalleryFiles(Path(".")).signin_failures.name
MIN_PASSWORD_LENGTH = 8
FREE_ATTEMPTS = 3  # wrong passwords in a row before attempts are delayed (typos)
MAX_DELAY_S = 600.0
PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded-host")

_LOCK = threading.Lock()  # one sign-in check at a time per server process


def _hasher():
    """The Argon2id hasher (RFC 9106 low-memory profile: 64 MiB, 3 passes)."""
    from argon2 import PasswordHasher

    return PasswordHasher()


def state_dir(gallery: Path) -> Path:
    """``GALLERY/.facerec``: where the password hash and the failure count live."""
    return GalleryFiles(Path(gallery)).state


def password_file(gallery: Path) -> Path:
    """The file holding the admin password's hash for ``gallery``."""
    return GalleryFiles(Path(gallery)).admin_password


def throttle_file(gallery: Path) -> Path:
    """The file counting wrong passwords in a row for ``gallery``."""
    return GalleryFiles(Path(gallery)).signin_failures


def _write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (:func:`facerec.storage.write_atomic`), as a file
    only its owner can read or write (0600, in a 0700 folder), whatever it was before."""
    private_dir(path.parent)
    tighten(path, 0o600)  # an existing file keeps its mode through write_atomic: make it private first
    write_atomic(path, data, mode=0o600)


def hash_password(password: str) -> str:
    """A salted Argon2id hash of ``password`` (the encoded ``$argon2id$...`` string)."""
    return _hasher().hash(password)


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches the encoded hash (never raises on a mismatch)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(encoded, password)
    except (VerificationError, InvalidHashError):
        return False


def set_password(gallery: Path, password: str) -> Path:
    """Store the hash of a new admin password for ``gallery`` (0600) and forget past failures.

    Raises:
        ConfigError: the password is shorter than :data:`MIN_PASSWORD_LENGTH` or blank.
    """
    if len(password) < MIN_PASSWORD_LENGTH or not password.strip():
        raise ConfigError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    path = password_file(gallery)
    _write_private(path, (hash_password(password) + "\n").encode())
    Throttle(throttle_file(gallery)).reset()  # also unlocks a sign-in locked by an unreadable count
    return path


def clear_password(gallery: Path) -> bool:
    """Remove the admin password of ``gallery``; ``False`` when none was set."""
    path = password_file(gallery)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    throttle_file(gallery).unlink(missing_ok=True)
    GalleryFiles(Path(gallery)).signin_sessions.unlink(missing_ok=True)
    return True


def stored_hash(gallery: Path) -> str | None:
    """The admin password's hash for ``gallery``, or ``None`` when no password is set.

    Raises:
        ConfigError: the file cannot be read, or others than its owner may write it
            (anyone who can replace the hash can sign in).
    """
    path = password_file(gallery)
    try:
        mode = path.stat().st_mode
        if mode & 0o022:
            raise ConfigError(f"{path} may be written by others; run: chmod 600 {path}")
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the admin password file {path}: {exc.strerror}") from None
    if not text.startswith("$argon2"):
        raise ConfigError(f"{path} is not a password hash; set it again with: facerec admin set-password")
    return text


SESSION_TTL_S = 8 * 3600.0  # a sign-in kept in the address bar (reload, new tab, bookmark) lasts this long


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _load_sessions(path: Path, now: float) -> dict[str, dict]:
    """The unexpired sessions of the file at ``path`` (an unreadable file: none, so nobody is let in by it)."""
    try:
        doc = json.loads(path.read_text())
        return {k: v for k, v in doc.items() if isinstance(v, dict) and float(v.get("expires", 0)) > now}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def new_session(gallery: Path, encoded: str, now: float | None = None, ttl_s: float = SESSION_TTL_S) -> str:
    """A new random session id for a browser signed in with the password whose hash is ``encoded``, valid
    for ``ttl_s`` seconds. Only its SHA-256 is kept on the server (``GalleryFiles(gallery).signin_sessions``,
    0600), bound to the password: changing the password ends every session."""
    now = time.time() if now is None else now
    token = secrets.token_urlsafe(32)
    path = GalleryFiles(Path(gallery)).signin_sessions
    with _LOCK:
        sessions = _load_sessions(path, now)
        sessions[_digest(token)] = {"expires": now + ttl_s, "password": _digest(encoded)}
        _write_private(path, json.dumps(sessions).encode())
    return token


def session_valid(gallery: Path, token: str | None, encoded: str | None, now: float | None = None) -> bool:
    """Whether ``token`` is an unexpired session id signed in with the password whose hash is ``encoded``."""
    if not token or not encoded or len(token) > 128:
        return False
    now = time.time() if now is None else now
    entry = _load_sessions(GalleryFiles(Path(gallery)).signin_sessions, now).get(_digest(token))
    return entry is not None and hmac.compare_digest(str(entry.get("password", "")), _digest(encoded))


def end_session(gallery: Path, token: str | None, now: float | None = None) -> None:
    """Forget session ``token`` (Sign out), and every expired one."""
    now = time.time() if now is None else now
    path = GalleryFiles(Path(gallery)).signin_sessions
    with _LOCK:
        sessions = _load_sessions(path, now)
        sessions.pop(_digest(token or ""), None)
        if path.exists():
            _write_private(path, json.dumps(sessions).encode())


def delay_after(failures: int) -> float:
    """Seconds an attempt must wait after ``failures`` wrong passwords in a row."""
    if failures < FREE_ATTEMPTS:
        return 0.0
    return float(min(2.0 ** (failures - FREE_ATTEMPTS + 1), MAX_DELAY_S))


class ThrottleUnreadableError(ConfigError):
    """The wrong-password count cannot be read: sign-in stays locked (fail closed) until an
    admin sets the password again (which starts a new count)."""


@dataclass
class Throttle:
    """Failed sign-ins in a row, kept in a file (0600) so every session and restart sees them.

    It fails closed: a file that exists but cannot be read, or does not hold a count, locks
    the sign-in (:class:`ThrottleUnreadableError`) instead of counting as no failures, which
    would let a guesser reset the delay by damaging or locking the file.
    """

    path: Path

    def _unreadable(self, why: str) -> ThrottleUnreadableError:
        return ThrottleUnreadableError(
            f"sign-in is locked: the wrong-password count {self.path} cannot be read ({why}); on the server, "
            "set the password again (facerec admin set-password), which starts a new count")

    def load(self) -> tuple[int, float]:
        """``(failures in a row, time of the last one)``; ``(0, 0.0)`` when no file exists.

        Raises:
            ThrottleUnreadableError: the file exists but cannot be read or holds no valid count.
        """
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return 0, 0.0
        except (OSError, UnicodeDecodeError) as exc:
            raise self._unreadable(getattr(exc, "strerror", None) or str(exc)) from None
        try:
            data = json.loads(text)
            failures, last = data["failures"], float(data["last_failure"])
        except (ValueError, KeyError, TypeError):
            raise self._unreadable("not a failure count") from None
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0 or not math.isfinite(last):
            raise self._unreadable("not a failure count")
        return failures, last

    def wait_s(self, now: float | None = None) -> float:
        """Seconds until the next attempt is allowed (0 when it is now).

        Raises:
            ThrottleUnreadableError: the count cannot be read (no attempt is allowed).
        """
        failures, last = self.load()
        now = time.time() if now is None else now
        return max(0.0, last + delay_after(failures) - now)

    def record_failure(self, now: float | None = None) -> float:
        """Count a wrong password; return the delay the next attempt must wait."""
        failures, _ = self.load()
        failures += 1
        _write_private(self.path, json.dumps({"failures": failures,
                                              "last_failure": time.time() if now is None else now}).encode())
        return delay_after(failures)

    def reset(self) -> None:
        """Forget the failures (after a successful sign-in or a new password)."""
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class SignIn:
    """The outcome of one password attempt: ``ok``, else how long to wait before the next."""

    ok: bool
    wait_s: float = 0.0
    checked: bool = True  # False: refused unchecked, the previous failure's delay was still running


def attempt_sign_in(gallery: Path, password: str, now: float | None = None) -> SignIn:
    """Check ``password`` against the admin password of ``gallery``, throttled.

    While the delay earned by earlier failures runs, the attempt is refused without
    being checked (and without counting). One check runs at a time per process.

    Raises:
        ConfigError: no password is set, or its file is unusable (see :func:`stored_hash`).
        ThrottleUnreadableError: the wrong-password count cannot be read: the password is
            not checked (fail closed); the message says how to unlock.
    """
    with _LOCK:
        encoded = stored_hash(gallery)
        if encoded is None:
            raise ConfigError("no admin password is set; set one with: facerec admin set-password")
        throttle = Throttle(throttle_file(gallery))
        wait = throttle.wait_s(now)
        if wait > 0:
            return SignIn(False, wait, checked=False)
        if verify_password(password, encoded):
            throttle.reset()
            return SignIn(True)
        return SignIn(False, throttle.record_failure(now))


def is_local_address(address: str | None) -> bool:
    """Whether a server listening on ``address`` is reachable from this machine only.

    ``localhost`` and loopback addresses (127.0.0.0/8, ``::1``) are; an empty address
    (Streamlit's default: every interface), ``0.0.0.0``, ``::`` and any other address
    or host name are not.
    """
    if not address:
        return False
    addr = address.strip().strip("[]").lower()
    if addr == "localhost":
        return True
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def served_remotely(address: str | None, headers: Mapping[str, str] | None = None) -> bool:
    """Whether the app may be reached from other machines: it listens beyond loopback, or
    a request came through a reverse proxy (forwarding headers), which may be public."""
    if not is_local_address(address):
        return True
    return any(h.lower() in PROXY_HEADERS for h in (headers or {}))


def gate(*, remote: bool, password_set: bool, oidc_configured: bool, signed_in: bool) -> str:
    """What the app shows: ``"open"`` (the app), ``"sign-in"`` or ``"configure"`` (how to set up sign-in).

    Any configured sign-in is required wherever the app listens; with none, a local app
    is open and a remotely served one shows only how to configure sign-in.
    """
    if signed_in:
        return "open"
    if password_set or oidc_configured:
        return "sign-in"
    return "configure" if remote else "open"


def email_allowed(email: str | None, patterns: Iterable[str], verified: bool | None = None) -> bool:
    """Whether an OpenID Connect user may use the app: their email matches one of
    ``patterns`` (case-insensitive shell patterns: ``ann@example.org``, ``*@example.org``,
    ``*`` for everyone the identity provider signs in) and is not marked unverified."""
    if not email or verified is False:
        return False
    email = email.strip().lower()
    return any(fnmatchcase(email, p.strip().lower()) for p in patterns if p and p.strip())


def photo_roots(configured: Sequence[Path] | None, remote: bool, home: Path | None = None) -> list[Path]:
    """The folders (resolved) under which the Tag photos page may read photos.

    ``configured`` (``FACEREC_PHOTO_ROOTS``) when given; otherwise the user's home folder
    when the app is local, and none (uploads only) when it is served to other machines.
    """
    if configured is not None:
        roots = list(configured)
    elif remote:
        roots = []
    else:
        roots = [Path.home() if home is None else home]
    return [Path(os.path.realpath(Path(r).expanduser())) for r in roots]


def within_roots(path: Path, roots: Sequence[Path]) -> bool:
    """Whether ``path``, symlinks resolved, is one of ``roots`` or lies under one."""
    real = Path(os.path.realpath(path))
    return any(real == r or r in real.parents for r in roots)


def allowed_folder(folder: str | Path, roots: Sequence[Path]) -> Path:
    """The real path of ``folder`` when it is an existing folder under ``roots``.

    A missing folder and one outside the roots (a symlink pointing out of them
    included) get the same answer, so the page does not tell which server paths exist.

    Raises:
        FaceRecError: not an allowed folder.
    """
    where = ", ".join(map(str, roots)) or "none"
    text = str(folder).strip()
    path = Path(text).expanduser()
    real = Path(os.path.realpath(path))
    if not text or not path.is_absolute() or not within_roots(real, roots) or not real.is_dir():
        raise FaceRecError(f"{text}: no such folder under the allowed photo folders ({where}). To allow "
                           f"another folder, start the app with FACEREC_PHOTO_ROOTS set to it (several "
                           f"folders separated by ':'), e.g. FACEREC_PHOTO_ROOTS=/srv/photos ./run.sh app")
    return real
