"""The wrong-password throttle fails closed (issue 20, "Smaller"): a count that cannot be read
locks the sign-in with a message saying how to unlock, instead of counting as no failures."""

from __future__ import annotations

import json
import os
import stat

import pytest

from facerec import auth
from facerec.errors import ConfigError

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch):
    """Argon2id with small costs, so that each test hashes in milliseconds (same code path)."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(auth, "_hasher", lambda: PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def checked(monkeypatch):
    """The passwords actually checked against the hash."""
    seen: list[str] = []
    real = auth.verify_password
    monkeypatch.setattr(auth, "verify_password", lambda password, encoded: seen.append(password) or
                        real(password, encoded))
    return seen


BAD_COUNTS = {
    "not JSON": "{\"failures\": 9, ",
    "empty": "",
    "no count": json.dumps({"last_failure": 1000.0}),
    "a negative count": json.dumps({"failures": -50, "last_failure": 1000.0}),
    "a count that is not a number": json.dumps({"failures": "many", "last_failure": 1000.0}),
    "a time that is not a number": json.dumps({"failures": 9, "last_failure": "NaN"}),
    "not an object": json.dumps([9, 1000.0]),
}


@pytest.mark.parametrize("content", BAD_COUNTS.values(), ids=BAD_COUNTS.keys())
def test_a_corrupt_count_locks_the_sign_in(tmp_path, checked, content):
    auth.set_password(tmp_path, PASSWORD)
    auth.throttle_file(tmp_path).write_text(content)
    for password in (PASSWORD, "nope nope"):  # even the right password: no guess is checked
        with pytest.raises(auth.ThrottleUnreadableError) as err:
            auth.attempt_sign_in(tmp_path, password, now=10_000.0)
        assert isinstance(err.value, ConfigError)
        message = str(err.value)
        assert message.startswith("sign-in is locked: the wrong-password count ")
        assert "facerec admin set-password" in message and "\n" not in message
    assert checked == []
    assert auth.throttle_file(tmp_path).read_text() == content  # left as found, for the admin to see


def test_an_unreadable_count_locks_the_sign_in(tmp_path, checked):
    auth.set_password(tmp_path, PASSWORD)
    auth.throttle_file(tmp_path).mkdir()  # reading it fails (EISDIR), whoever runs the test
    with pytest.raises(auth.ThrottleUnreadableError, match="cannot be read"):
        auth.attempt_sign_in(tmp_path, PASSWORD)
    assert checked == []


def test_setting_the_password_again_unlocks(tmp_path):
    auth.set_password(tmp_path, PASSWORD)
    auth.throttle_file(tmp_path).write_text("garbage")
    with pytest.raises(auth.ThrottleUnreadableError):
        auth.attempt_sign_in(tmp_path, PASSWORD)
    auth.set_password(tmp_path, PASSWORD)
    assert auth.attempt_sign_in(tmp_path, PASSWORD).ok


def test_the_count_is_a_private_file_written_through_the_storage_floor(tmp_path, monkeypatch):
    from facerec import storage

    written = []
    real = storage.write_atomic
    monkeypatch.setattr(storage, "write_atomic", lambda path, data, mode=None: written.append((path, mode)) or
                        real(path, data, mode))
    monkeypatch.setattr(auth, "write_atomic", storage.write_atomic)
    old = os.umask(0)
    try:
        auth.set_password(tmp_path, PASSWORD)
        assert auth.attempt_sign_in(tmp_path, "nope nope", now=1000.0) == auth.SignIn(False, 0.0)
    finally:
        os.umask(old)
    files = storage.GalleryFiles(tmp_path)
    assert written == [(files.admin_password, 0o600), (files.signin_failures, 0o600)]
    assert auth.Throttle(files.signin_failures).load() == (1, 1000.0)
    for path in (files.admin_password, files.signin_failures):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.state.stat().st_mode) == 0o700


def test_setting_the_password_again_makes_a_loose_password_file_private(tmp_path):
    path = auth.set_password(tmp_path, PASSWORD)
    path.chmod(0o666)
    with pytest.raises(ConfigError, match="chmod 600"):
        auth.stored_hash(tmp_path)
    auth.set_password(tmp_path, PASSWORD)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth.verify_password(PASSWORD, auth.stored_hash(tmp_path))
