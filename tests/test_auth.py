"""Sign-in, throttling, allowed photo folders and the upload cap (issue 12 items 1 and 5).

facerec.auth is tested as plain functions; the app's gate with Streamlit's AppTest
(run from the repository root, so .streamlit/config.toml applies), the server address
set through Streamlit's config as ``streamlit run --server.address`` would.
"""

from __future__ import annotations

import io
import os
import stat
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from facerec import auth, cli
from facerec.errors import ConfigError, FaceRecError
from facerec.gallery import Gallery
from facerec.settings import Settings

from apptest_nav import everything_shown, goto
from conftest import png_bytes, synthetic_photo

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PASSWORD = "correct horse battery"
NAME = "Zoe Secret"


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch):
    """Argon2id with small costs, so that each test hashes in milliseconds (same code path)."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(auth, "_hasher", lambda: PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


# -- passwords -------------------------------------------------------------------------


def test_password_hash_is_salted_argon2id():
    a, b = auth.hash_password(PASSWORD), auth.hash_password(PASSWORD)
    assert a.startswith("$argon2id$") and a != b  # a random salt each time
    assert PASSWORD not in a
    assert auth.verify_password(PASSWORD, a) and auth.verify_password(PASSWORD, b)
    assert not auth.verify_password("wrong password", a)
    assert not auth.verify_password(PASSWORD, "not a hash")


def test_set_password_writes_a_private_file_in_the_gallery_state_dir(tmp_path):
    old = os.umask(0)  # even with a permissive umask
    try:
        path = auth.set_password(tmp_path, PASSWORD)
    finally:
        os.umask(old)
    assert path == tmp_path / ".facerec" / "admin_password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PASSWORD not in path.read_text()
    assert auth.verify_password(PASSWORD, auth.stored_hash(tmp_path))
    assert [p.name for p in path.parent.iterdir()] == ["admin_password"]  # no temporary file left
    with pytest.raises(ConfigError, match="at least 8"):
        auth.set_password(tmp_path, "short")
    assert auth.verify_password(PASSWORD, auth.stored_hash(tmp_path))  # unchanged
    assert auth.clear_password(tmp_path) and auth.stored_hash(tmp_path) is None
    assert not auth.clear_password(tmp_path)


def test_a_password_file_others_may_write_is_refused(tmp_path):
    path = auth.set_password(tmp_path, PASSWORD)
    path.chmod(0o666)
    with pytest.raises(ConfigError, match="chmod 600"):
        auth.stored_hash(tmp_path)


# -- throttling ------------------------------------------------------------------------


def test_delay_grows_exponentially_after_a_few_typos():
    assert [auth.delay_after(n) for n in range(7)] == [0, 0, 0, 2, 4, 8, 16]
    assert auth.delay_after(100) == auth.MAX_DELAY_S


def test_wrong_passwords_slow_down_and_are_recorded_on_the_server(tmp_path):
    auth.set_password(tmp_path, PASSWORD)
    t = 1000.0
    for _ in range(2):
        assert auth.attempt_sign_in(tmp_path, "nope nope", now=t) == auth.SignIn(False, 0.0)
    third = auth.attempt_sign_in(tmp_path, "nope nope", now=t)
    assert not third.ok and third.wait_s == 2
    # during the delay even the right password is refused, unchecked and not counted
    early = auth.attempt_sign_in(tmp_path, PASSWORD, now=t + 1)
    assert not early.ok and not early.checked and early.wait_s == pytest.approx(1)
    # the count lives in a file: any session (or a restarted server) sees it
    assert auth.Throttle(tmp_path / ".facerec" / auth.THROTTLE_FILE).load() == (3, t)
    assert auth.attempt_sign_in(tmp_path, "nope nope", now=t + 2).wait_s == 4
    assert auth.attempt_sign_in(tmp_path, PASSWORD, now=t + 6).ok
    assert auth.attempt_sign_in(tmp_path, "nope nope", now=t + 6).wait_s == 0  # a success resets the count


def test_signing_in_without_a_password_set_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="set-password"):
        auth.attempt_sign_in(tmp_path, PASSWORD)


# -- where the app listens, what it shows ------------------------------------------------


@pytest.mark.parametrize("address, local", [
    ("localhost", True), ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    (None, False), ("", False), ("0.0.0.0", False), ("::", False), ("192.168.1.20", False),
    ("myhost.example.org", False),
])
def test_is_local_address(address, local):
    assert auth.is_local_address(address) is local


def test_a_request_through_a_reverse_proxy_counts_as_remote():
    assert not auth.served_remotely("localhost", {"Host": "localhost:8501"})
    assert auth.served_remotely("localhost", {"X-Forwarded-For": "203.0.113.9"})
    assert auth.served_remotely("0.0.0.0", {})


def test_gate():
    g = auth.gate
    assert g(remote=False, password_set=False, oidc_configured=False, signed_in=False) == "open"
    assert g(remote=True, password_set=False, oidc_configured=False, signed_in=False) == "configure"
    for remote in (False, True):
        assert g(remote=remote, password_set=True, oidc_configured=False, signed_in=False) == "sign-in"
        assert g(remote=remote, password_set=False, oidc_configured=True, signed_in=False) == "sign-in"
        assert g(remote=remote, password_set=True, oidc_configured=True, signed_in=True) == "open"


def test_email_allowed():
    allowed = ["ann@example.org", "*@team.example.org"]
    assert auth.email_allowed("Ann@Example.org", allowed)
    assert auth.email_allowed("bob@team.example.org", allowed, verified=True)
    assert not auth.email_allowed("bob@team.example.org", allowed, verified=False)
    assert not auth.email_allowed("eve@evil.example", allowed)
    assert not auth.email_allowed(None, ["*"])
    assert not auth.email_allowed("ann@example.org", [])  # nobody unless listed
    assert auth.email_allowed("anyone@anywhere", ["*"])


# -- folders the Tag photos page may read --------------------------------------------------


def test_photo_roots_default_home_when_local_none_when_remote(tmp_path):
    assert auth.photo_roots(None, remote=False, home=tmp_path) == [tmp_path.resolve()]
    assert auth.photo_roots(None, remote=True, home=tmp_path) == []
    assert auth.photo_roots((tmp_path / "a",), remote=True) == [(tmp_path / "a").resolve()]
    env = {"FACEREC_PHOTO_ROOTS": os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")])}
    assert Settings.from_env(env).photo_roots == (tmp_path / "a", tmp_path / "b")
    assert Settings.from_env({}).photo_roots is None


def test_allowed_folder_stays_under_the_roots(tmp_path):
    root, outside = tmp_path / "photos", tmp_path / "secret"
    (root / "party").mkdir(parents=True)
    outside.mkdir()
    (outside / "x.jpg").write_bytes(b"x")
    (root / "escape").symlink_to(outside)
    (root / "party" / "leak.jpg").symlink_to(outside / "x.jpg")
    roots = auth.photo_roots((root,), remote=True)
    assert auth.allowed_folder(str(root / "party"), roots) == (root / "party").resolve()
    assert auth.allowed_folder(str(root), roots) == root.resolve()
    for bad in (outside, root / "escape", root / "party" / ".." / ".." / "secret", root / "missing", "/", "party", ""):
        with pytest.raises(FaceRecError, match="no such folder under the allowed photo folders"):
            auth.allowed_folder(str(bad), roots)
    assert not auth.within_roots(root / "party" / "leak.jpg", roots)
    with pytest.raises(FaceRecError):
        auth.allowed_folder(str(root), [])


# -- the CLI -------------------------------------------------------------------------------


def test_cli_sets_and_clears_the_password(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert cli.main(["admin", "set-password", "--gallery", str(tmp_path), "--password-stdin"]) == 0
    assert auth.verify_password(PASSWORD, auth.stored_hash(tmp_path))
    assert "admin password set" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert cli.main(["admin", "set-password", "--gallery", str(tmp_path), "--password-stdin"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("facerec: error: ") and "at least 8" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal, no --password-stdin
    assert cli.main(["admin", "set-password", "--gallery", str(tmp_path)]) != 0
    assert "--password-stdin" in capsys.readouterr().err
    assert auth.verify_password(PASSWORD, auth.stored_hash(tmp_path))  # failures changed nothing
    assert cli.main(["admin", "clear-password", "--gallery", str(tmp_path)]) == 0
    assert auth.stored_hash(tmp_path) is None


# -- the app -------------------------------------------------------------------------------


def test_config_listens_on_localhost_only():
    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert server["address"] == "localhost"
    assert server["maxUploadSize"] >= 20


@pytest.fixture
def address():
    """Set Streamlit's ``server.address`` for the AppTest runs (restored afterwards)."""
    old = st_config.get_option("server.address")
    yield lambda value: st_config.set_option("server.address", value)
    st_config.set_option("server.address", old)


@pytest.fixture
def gallery(tmp_path, monkeypatch):
    """A gallery with one enrolled person; the app reads it (cache dir in tmp too)."""
    root = tmp_path / "g"
    Gallery(root).add_photo(NAME, png_bytes(synthetic_photo([1])), (0, 0, 10, 10), np.ones(4, np.float32), "m", ".png")
    monkeypatch.setenv("FACEREC_GALLERY", str(root))
    monkeypatch.setenv("FACEREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FACEREC_PHOTO_ROOTS", raising=False)
    return root


def new_session() -> AppTest:
    return AppTest.from_file(APP, default_timeout=60)


def shows_nothing_of_the_app(at: AppTest) -> None:
    assert not at.exception
    assert len(at.sidebar.radio) == 0 and len(at.header) == 0
    assert len(at.camera_input) == 0 and len(at.get("file_uploader")) == 0 and len(at.image) == 0
    assert NAME not in everything_shown(at) and "data:image" not in everything_shown(at)  # no face, inlined or not


def test_remote_without_sign_in_shows_only_how_to_configure_it(gallery, address):
    address("0.0.0.0")
    at = new_session()
    at.run()
    shows_nothing_of_the_app(at)
    text = everything_shown(at)
    assert "facerec admin set-password" in text and "secrets.toml" in text and str(gallery) not in text


def test_local_without_sign_in_is_open(gallery, address):
    address("localhost")
    at = new_session()
    at.run()
    assert not at.exception and at.header[0].value == "People"


@pytest.mark.parametrize("where", ["localhost", "0.0.0.0"])
def test_a_set_password_is_asked_for_wherever_the_app_listens(gallery, address, where):
    address(where)
    auth.set_password(gallery, PASSWORD)
    at = new_session()
    at.run()
    shows_nothing_of_the_app(at)
    at.text_input[0].input("wrong password")
    at.button[0].click().run()  # a form: typed and submitted at once
    assert "Wrong password" in at.error[0].value
    shows_nothing_of_the_app(at)
    at.text_input[0].input(PASSWORD)
    at.button[0].click().run()  # a form: typed and submitted at once
    assert not at.exception and at.header[0].value == "People"
    goto(at, "People")  # the session remembers the sign-in
    assert f"<b>{NAME}</b>" in everything_shown(at)  # in the People grid
    [b for b in at.sidebar.button if b.label == "Sign out"][0].click().run()
    shows_nothing_of_the_app(at)


def test_failures_in_one_session_slow_down_a_new_one(gallery, address, monkeypatch):
    monkeypatch.setattr(auth, "delay_after", lambda n: 0.0 if n < 2 else 3600.0)
    address("0.0.0.0")
    auth.set_password(gallery, PASSWORD)
    first = new_session()
    first.run()
    for _ in range(2):
        first.text_input[0].input("guess guess")
        first.button[0].click().run()  # a form: typed and submitted at once
    assert "Wait 3600 s" in first.error[0].value
    second = new_session()  # a new browser session
    second.run()
    second.text_input[0].input(PASSWORD)
    second.button[0].click().run()  # a form: typed and submitted at once
    assert "Too many wrong passwords" in second.error[0].value
    shows_nothing_of_the_app(second)


def oidc_secrets(at: AppTest, allowed=None) -> None:
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s" * 32,
                          "google": {"client_id": "id", "client_secret": "secret",
                                     "server_metadata_url": "https://accounts.google.com/.well-known/openid-configuration"}}
    if allowed is not None:
        at.secrets["facerec"] = {"allowed_emails": allowed}


def test_openid_connect_sign_in_is_honoured(gallery, address):
    address("0.0.0.0")
    at = new_session()
    oidc_secrets(at, ["*@example.org"])
    at.user = {"is_logged_in": False}
    at.run()
    shows_nothing_of_the_app(at)
    assert [b.label for b in at.button] == ["Sign in with google"]

    at = new_session()
    oidc_secrets(at, ["*@example.org"])
    at.user = {"is_logged_in": True, "email": "ann@example.org", "email_verified": True}
    at.run()
    assert not at.exception and at.header[0].value == "People"

    at = new_session()
    oidc_secrets(at)  # no allowed_emails: nobody the provider signs in is let in
    at.user = {"is_logged_in": True, "email": "eve@gmail.com"}
    at.run()
    shows_nothing_of_the_app(at)
    assert "may not use this app" in at.error[0].value


def open_tag_folder_page(gallery, address, where: str) -> AppTest:
    address(where)
    at = new_session()
    if where != "localhost":
        auth.set_password(gallery, PASSWORD)
        at.run()
        at.text_input[0].input(PASSWORD)
        at.button[0].click().run()  # a form: typed and submitted at once
    else:
        at.run()
    goto(at, "Tag photos")
    assert not at.exception and at.header[0].value == "Tag photos"
    return at


def test_served_remotely_the_tag_page_reads_no_folder_by_default(gallery, address):
    at = open_tag_folder_page(gallery, address, "0.0.0.0")
    assert len(at.text_input) == 0 and "FACEREC_PHOTO_ROOTS" in at.info[0].value
    at.radio[0].set_value("an uploaded zip").run()
    assert len(at.get("file_uploader")) == 1  # uploads keep working


def test_tag_page_reads_only_under_the_photo_roots(gallery, address, tmp_path, monkeypatch):
    root, outside = tmp_path / "photos", tmp_path / "secret"
    (root / "party").mkdir(parents=True)
    outside.mkdir()
    (root / "party" / "a.png").write_bytes(png_bytes(synthetic_photo([1])))
    (outside / "b.png").write_bytes(png_bytes(synthetic_photo([2])))
    (root / "party" / "leak.png").symlink_to(outside / "b.png")
    (root / "escape").symlink_to(outside)
    monkeypatch.setenv("FACEREC_PHOTO_ROOTS", str(root))
    import facerec.tagging
    from facerec.tagging import PhotoResult

    seen = []

    def fake_identify(rec, paths, cache=None, **_):
        for p in paths:
            seen.append(Path(p))
            yield PhotoResult(path=Path(p))

    monkeypatch.setattr(facerec.tagging, "identify_files", fake_identify)
    at = open_tag_folder_page(gallery, address, "0.0.0.0")
    for bad in (outside, root / "escape", "/"):
        at.text_input[0].input(str(bad)).run()
        [b for b in at.button if b.label == "Tag photos"][0].click().run()
        assert "no such folder under the allowed photo folders" in at.error[0].value
    assert seen == []
    at.text_input[0].input(str(root / "party")).run()
    [b for b in at.button if b.label == "Tag photos"][0].click().run()
    assert not at.exception and not at.error
    assert seen == [(root / "party" / "a.png").resolve()]  # not the symlink out of the root


def test_photo_uploads_over_20_mb_are_refused_before_reading(gallery, address, monkeypatch):
    from streamlit.runtime.uploaded_file_manager import UploadedFile

    real_getvalue, real_read = UploadedFile.getvalue, UploadedFile.read

    def guarded(real):
        def read(self, *a):  # the test harness reads uploads to register them; the app must not
            caller = Path(sys._getframe(1).f_code.co_filename).resolve()
            if caller == Path(APP).resolve() or caller.parent == ROOT / "facerec" / "app":
                raise AssertionError(f"the app ({caller.name}) read an oversized upload")
            return real(self, *a)
        return read

    address("localhost")
    at = new_session()
    at.run()
    goto(at, "Identify")
    uploader = at.get("file_uploader")[0]
    # the browser does not refuse it (that shows only a red icon): the server does, in words
    assert uploader.proto.max_upload_size_mb > 20 and "20 MB" in uploader.proto.help
    monkeypatch.setattr(UploadedFile, "getvalue", guarded(real_getvalue))
    monkeypatch.setattr(UploadedFile, "read", guarded(real_read))
    uploader.upload("big.png", b"\0" * (20 * 2**20 + 1), "image/png").run()
    assert not at.exception and "larger than 20 MB" in at.error[0].value
    goto(at, "Enrol")
    enrol = at.get("file_uploader")[0]
    assert enrol.proto.max_upload_size_mb > 20 and "20 MB" in enrol.proto.help
