"""facerec in the browser: people (the home page), live video, identify, enrol, who was here,
photo library, tag photos, settings; one URL per page (``st.navigation``: ``/``, ``/live``,
``/identify``, ``/enrol``, ``/history``, ``/library``, ``/tag``, ``/settings``), drawn only after the sign-in gate.

``streamlit run app.py`` runs :func:`main`. A thin layer over the facerec library, one module
per page (people, live, identify, enrol, history, tag, settings, signin) over what they share
(common): one cached recogniser per settings (``st.cache_resource``), shared by all pages
and sessions; every FaceRecError reaches the user as ``st.error``. Matches are shown
as verdicts (facerec.verdict), enrolment checks come from facerec.enrolcheck, the People
page's pictures from facerec.thumbs (cached on disk), the who-was-here history from
facerec.history (written from Live's video thread through its non-blocking writer).

Nothing in the library imports this package, and ``import facerec`` does not import it.
"""

from __future__ import annotations

import streamlit as st

from facerec.app.common import PAGE_OBJECTS, base_settings, recognizer  # first: WebRTC before TensorFlow
from facerec.app.enrol import page_enroll
from facerec.app.history import page_history
from facerec.app.identify import page_identify
from facerec.app.library import page_library, sidebar_scan_status
from facerec.app.live import page_live
from facerec.app.people import page_people
from facerec.app.settings import page_settings
from facerec.app.signin import sign_in_gate
from facerec.app.tag import page_tag
from facerec import FaceRecError, Settings

PAGES = [  # (title, url path, icon, page function); People is the home page
    ("People", "people", ":material/groups:", page_people),
    ("Live", "live", ":material/videocam:", page_live),
    ("Identify", "identify", ":material/image_search:", page_identify),
    ("Enrol", "enrol", ":material/person_add:", page_enroll),
    ("Who was here", "history", ":material/history:", page_history),
    ("Library", "library", ":material/photo_album:", page_library),
    ("Tag photos", "tag", ":material/photo_library:", page_tag),
    ("Settings", "settings", ":material/settings:", None),
]
def make_page(settings: Settings, title: str, url: str, icon: str, draw):
    """One st.Page with its own URL (``/live``...; the home page is ``/``)."""
    def run() -> None:
        if draw is None:
            page_settings(settings)
        else:
            draw(recognizer(settings))

    run.__name__ = f"page_{url}"
    return st.Page(run, title=title, url_path=url, icon=icon, default=url == "people")


def main() -> None:
    st.set_page_config(page_title="facerec", page_icon=":material/face:", layout="wide")
    try:
        settings = base_settings()
        allowed = sign_in_gate(settings)  # first: nothing else is drawn before sign-in
        pages = {url: make_page(settings, *spec) for spec in PAGES for url in [spec[1]]}
        # Navigation even before sign-in (hidden, nothing drawn): the page asked for (/identify...) is
        # the one shown once signed in, not the home page.
        page = st.navigation(list(pages.values()), position="sidebar" if allowed else "hidden")
        if not allowed:
            return
        # Shared by every session of this process (it was per run when app.py held the pages): updated,
        # never cleared, so another session never finds it empty; st.page_link uses only a page's URL.
        PAGE_OBJECTS.update(pages)
        st.sidebar.caption(f"Gallery: {settings.gallery} · base: {settings.backbone}")
        sidebar_scan_status(settings)
        page.run()
    except FaceRecError as exc:
        st.error(str(exc))
    except Exception as exc:  # never a traceback in the browser (Streamlit's own rerun/stop are BaseException)
        st.error(f"Something went wrong: {type(exc).__name__}: {exc}")
