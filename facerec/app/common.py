"""What the app's pages share: upload limits, the settings saved from the Settings page, the one
cached recogniser per settings, reading an upload, preparing the gallery after a base switch, and
whether the app is served to other machines. Imported first by every page: it imports WebRTC
before anything can load TensorFlow."""

from __future__ import annotations

import sys
import time

import streamlit as st

# WebRTC (aiortc) must be imported before anything loads TensorFlow: the other way
# round, aiortc's libsrtp and TensorFlow's bundled SSL symbols crash the process.
try:
    import av
    from streamlit_webrtc import WebRtcMode, webrtc_streamer
    WEBRTC_MISSING = ""
except ImportError as _exc:
    av = WebRtcMode = webrtc_streamer = None
    WEBRTC_MISSING = str(_exc)

from facerec import FaceRecError, FaceRecognizer, Settings, auth
from facerec.errors import EmptyGalleryError, GalleryBusyError

MAX_UPLOAD_MB = 20
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
PHOTO_HELP = f"JPEG, PNG, WebP or BMP, at most {MAX_UPLOAD_MB} MB each."
MAX_ZIP_UPLOAD_BYTES = 200 * 1024 * 1024  # an uploaded zip (.streamlit/config.toml: maxUploadSize)
IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp"]
PAGE_OBJECTS: dict = {}  # url path -> st.Page (for st.page_link); filled by facerec.app.main


def base_settings() -> Settings:
    """The app's settings: ``FACEREC_*`` variables over the choices saved for the gallery (the
    same source and order as the CLI: :func:`facerec.settings.effective_settings`). Saved
    settings that cannot be used are left out with a line in the server's log (the Settings
    page, behind the sign-in, says so too)."""
    from facerec.settings import effective_settings

    return effective_settings(warn=lambda msg: print(f"facerec: {msg}", file=sys.stderr))


def save_choices(settings: Settings, **choices) -> None:
    """Save the Settings page's choices as the gallery's settings (atomic, 0600), where the CLI
    reads them too (:func:`facerec.settings.save_choices`)."""
    from facerec.settings import save_choices as save_gallery_choices

    save_gallery_choices(settings.gallery, choices)


@st.cache_resource(show_spinner="Loading face models...")
def recognizer(settings: Settings) -> FaceRecognizer:
    """One recogniser per settings for the whole server process (thread-safe)."""
    return FaceRecognizer(settings)


def read_upload(upload, limit: int = MAX_UPLOAD_BYTES) -> tuple[bytes, str]:
    """Bytes and name of an uploaded file, refusing ones over ``limit`` bytes; the size
    Streamlit reports (``UploadedFile.size``) is checked before the bytes are read."""
    size = getattr(upload, "size", None)
    if size is None or size <= limit:
        data = upload.getvalue()
        size = len(data)
    if size > limit:
        raise FaceRecError(f"{upload.name} is {size / 2**20:.0f} MB, larger than {limit // 2**20} MB, the most a file may "
                           "be here (save a smaller copy, e.g. resized to 4000 pixels wide, and upload that)")
    return data, upload.name


def prepare_gallery(rec: FaceRecognizer) -> None:
    """Embed the enrolled photos that lack vectors for this base (after a base switch) with a
    progress bar; while another session is doing it, show its progress and look again in a moment."""
    bar = None

    def progress(items):
        nonlocal bar
        items = list(items)
        bar = st.progress(0.0, text=f"Preparing the gallery for {rec.settings.backbone}...")
        for i, item in enumerate(items, start=1):
            yield item
            bar.progress(i / len(items), text=f"Preparing the gallery for {rec.settings.backbone}: "
                                              f"{i} of {len(items)} photos")

    try:
        rec.refresh(progress, wait=False)
    except EmptyGalleryError:
        pass
    except GalleryBusyError:
        done, total = rec.preparing or (0, 0)
        st.info(f"The gallery is being prepared for {rec.settings.backbone} ({done} of {total} photos); "
                "this page continues when it is ready.")
        time.sleep(1.0)
        st.rerun()
    finally:
        if bar is not None:
            bar.empty()


def gallery_matcher(rec: FaceRecognizer):
    """The fitted matcher over everyone enrolled, or ``None`` with nobody (or not ready yet)."""
    try:
        return rec.refresh(wait=False)
    except (EmptyGalleryError, GalleryBusyError):
        return None


def is_served_remotely() -> bool:
    """Whether other machines may reach this app: it listens beyond loopback
    (``server.address``), or the request came through a reverse proxy."""
    try:
        headers = dict(st.context.headers)
    except Exception:  # no request context (a test harness)
        headers = {}
    return auth.served_remotely(st.get_option("server.address"), headers)


def browser_url() -> str | None:
    """The address the browser shows for this app (``st.context.url``), else the page's origin from the
    request's ``Origin`` header; ``None`` when neither is known (a test harness)."""
    try:
        url = st.context.url
        if url:
            return url
        return dict(st.context.headers).get("Origin") or None
    except Exception:  # no request context
        return None


def camera_blocked(url: str | None) -> bool:
    """Whether a browser at ``url`` refuses the camera: it gives it only to a secure origin, ``https://`` or
    this machine itself (``localhost``, ``127.x.x.x``, ``[::1]``, ``*.localhost``); ``False`` when unknown."""
    from ipaddress import ip_address
    from urllib.parse import urlsplit

    if not url:
        return False
    parts = urlsplit(url)
    if parts.scheme.lower() != "http":
        return False
    host = (parts.hostname or "").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ip_address(host).is_loopback
    except ValueError:
        return True

