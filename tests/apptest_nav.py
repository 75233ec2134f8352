"""AppTest helpers: moving between the app's pages (the app uses st.navigation with callable
pages, which ``AppTest.switch_page`` cannot reach: it only knows page files), and the page's text."""

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


def everything_shown(at) -> str:
    """All text of the rendered page, sidebar included (values, labels, bodies, help, placeholders,
    captions), for checking what a visitor can see."""
    parts = []
    for node in at.main, at.sidebar:
        stack = [node]
        while stack:
            n = stack.pop()
            stack.extend(getattr(n, "children", {}).values())
            for attr in ("value", "label", "body", "help", "placeholder", "caption"):
                v = getattr(n, attr, None)
                if isinstance(v, str):
                    parts.append(v)
    return "\n".join(parts)
