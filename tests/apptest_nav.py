"""Moving between the app's pages in AppTest (the app uses st.navigation with callable pages,
which ``AppTest.switch_page`` cannot reach: it only knows page files)."""

from __future__ import annotations


def goto(at, title: str):
    """Open the page titled ``title`` (``"People"``, ``"Settings"``...) and run the app; returns ``at``.

    Needs one ``at.run()`` before (the pages are registered by a run)."""
    pages = {info.get("page_name"): h for h, info in (getattr(at, "_registered_pages", None) or {}).items()}
    if title not in pages:  # not run yet, or the last run drew no navigation (e.g. the sign-in)
        at.run()
        pages = {info.get("page_name"): h for h, info in (at._registered_pages or {}).items()}
    if title not in pages:
        raise ValueError(f"no page {title!r}; pages: {sorted(p for p in pages if p)}")
    at._page_hash = pages[title]
    return at.run()
