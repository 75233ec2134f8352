"""The sign-in gate, drawn before any page: an admin password or OpenID Connect, required
wherever one is configured and whenever the app is served to other machines (facerec.auth.gate). A password
sign-in is kept in the address (``?session=<id>``, facerec.auth.new_session) across reloads and new tabs."""

from __future__ import annotations

import math
from collections.abc import Mapping

import streamlit as st

from facerec import Settings, auth
from facerec.app.common import is_served_remotely

SIGNED_IN_KEY = "facerec_signed_in"  # the password hash this session signed in with
SESSION_KEY = "facerec_session"  # this browser session's sign-in id (facerec.auth.new_session)
SESSION_PARAM = "session"  # the address bar's copy of it: a reload, a new tab or a bookmark stays signed in
CONFIGURE_HELP = """This app holds people's faces. It is served to other machines, so it needs a sign-in first;
until one is set up it shows nothing else. Choose one (README, section "The app", paragraph "Who can open it"), then reload this page:

- **An admin password**: on the server, `facerec admin set-password` (with the same `--gallery` or
  `FACEREC_GALLERY` as the app).
- **OpenID Connect** (Google, Microsoft, Okta, Keycloak...): an `[auth]` section in `.streamlit/secrets.toml`
  and the emails allowed in, `[facerec] allowed_emails = ["ann@example.org", "*@example.org"]`;
  needs `pip install Authlib`.
- **This machine only**: start it with `--server.address localhost` (the default in `.streamlit/config.toml`).
"""


def oidc_settings() -> tuple[list[str | None], list[str]] | None:
    """The OpenID Connect providers of secrets.toml's ``[auth]`` (``None`` is its default
    provider) and ``[facerec] allowed_emails``; ``None`` when ``[auth]`` is not configured."""
    try:
        section = st.secrets.get("auth")
        allowed = (st.secrets.get("facerec") or {}).get("allowed_emails", [])
    except Exception:  # no secrets.toml, or one that cannot be read
        return None
    if not section:
        return None
    named = [k for k, v in section.items() if isinstance(v, Mapping)]
    providers = ([None] if "client_id" in section or not named else []) + named
    return providers, [allowed] if isinstance(allowed, str) else [str(a) for a in allowed]


def session_query() -> str:
    """``&session=<id>`` for links that load the app anew (the People grid), or ``""`` when not signed in so."""
    token = st.session_state.get(SESSION_KEY)
    return f"&{SESSION_PARAM}={token}" if token else ""


def keep_session(settings: Settings, encoded: str) -> None:
    """Keep this signed-in session's id in the address bar (moving between pages drops query parameters);
    a new id when the one held has expired or there is none yet."""
    token = st.session_state.get(SESSION_KEY)
    if not auth.session_valid(settings.gallery, token, encoded):
        try:
            token = st.session_state[SESSION_KEY] = auth.new_session(settings.gallery, encoded)
        except OSError:  # a read-only gallery: signed in in this tab only
            st.session_state.pop(SESSION_KEY, None)
            st.query_params.pop(SESSION_PARAM, None)
            return
    if st.query_params.get(SESSION_PARAM) != token:
        st.query_params[SESSION_PARAM] = token


def sign_in_gate(settings: Settings) -> bool:
    """True when this session may see the app; otherwise draw the sign-in (or how to set one up).

    Any configured sign-in (admin password, OpenID Connect) is required wherever the app
    listens; with none, a local app is open and a remotely served one shows only how to
    configure sign-in (facerec.auth.gate).
    """
    encoded = auth.stored_hash(settings.gallery)
    oidc = oidc_settings()
    oidc_user = oidc is not None and bool(getattr(st.user, "is_logged_in", False))
    oidc_ok = oidc_user and auth.email_allowed(st.user.get("email"), oidc[1], st.user.get("email_verified"))
    password_ok = encoded is not None and st.session_state.get(SIGNED_IN_KEY) == encoded
    token = st.query_params.get(SESSION_PARAM)
    if not password_ok and token:  # a reload, a new tab or a bookmark of a signed-in page
        if auth.session_valid(settings.gallery, token, encoded):
            st.session_state[SIGNED_IN_KEY], st.session_state[SESSION_KEY] = encoded, token
            password_ok = True
        else:
            st.query_params.pop(SESSION_PARAM, None)  # expired, signed out, or the password changed
    state = auth.gate(remote=is_served_remotely(), password_set=encoded is not None,
                      oidc_configured=oidc is not None, signed_in=password_ok or oidc_ok)
    if state == "open":
        if password_ok:
            keep_session(settings, encoded)
        if (password_ok or oidc_ok) and st.sidebar.button("Sign out"):
            st.session_state.pop(SIGNED_IN_KEY, None)
            auth.end_session(settings.gallery, st.session_state.pop(SESSION_KEY, None))
            st.query_params.pop(SESSION_PARAM, None)
            if oidc_user:
                st.logout()
            st.rerun()
        return True
    st.title("facerec")
    if state == "configure":
        st.warning("Sign-in is not set up.")
        st.markdown(CONFIGURE_HELP)
        return False
    if oidc_user and not oidc_ok:
        st.error(f"{st.user.get('email') or 'This account'} may not use this app; ask its admin.")
        if st.button("Sign out"):
            st.logout()
    if encoded is not None:
        with st.form("sign_in"):
            password = st.text_input("Admin password", type="password")
            submitted = st.form_submit_button("Sign in")
        if submitted:
            result = auth.attempt_sign_in(settings.gallery, password)
            if result.ok:
                st.session_state[SIGNED_IN_KEY] = encoded
                keep_session(settings, encoded)
                st.rerun()
            wait = math.ceil(result.wait_s)
            if not result.checked:
                st.error(f"Too many wrong passwords: try again in {wait} s.")
            else:
                st.error("Wrong password." + (f" Wait {wait} s before the next try." if wait else ""))
    if oidc is not None:
        for provider in oidc[0]:
            if st.button(f"Sign in with {provider or 'your identity provider'}", key=f"login_{provider}"):
                st.login(provider)
    return False
