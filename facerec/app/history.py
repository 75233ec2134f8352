"""The Who was here page: the people Live and the HTTP API named, by day, person and source,
downloadable as CSV."""

from __future__ import annotations

import base64
from datetime import datetime

import streamlit as st

from facerec import FaceRecognizer, history


def page_history(rec: FaceRecognizer) -> None:
    st.header("Who was here")
    st.caption("Everyone the Live page and the HTTP API (facerec serve) named: when they came, when they were "
               "last seen, for how long and where (\"live\", or the name of the API key that sent the photo, "
               "e.g. doorbell). Kept in the gallery's folder; forgetting a person removes theirs too.")
    log = history.History(rec.settings.gallery)
    everyone = log.people()
    if not everyone:
        st.info("Nobody has been seen yet: people named on the Live page or through the HTTP API appear here.")
        return
    sources = log.sources()
    left, middle, right = st.columns(3)
    day = left.date_input("Day", value=None, format="YYYY-MM-DD", key="history_day",
                          help="Leave empty for every day.")
    chosen = middle.multiselect("People", everyone, key="history_people", placeholder="Everyone")
    where = right.multiselect("Seen by", sources, key="history_sources", placeholder="Every source",
                              help="live: the Live page; any other name: the API key that sent the photo.")
    rows = log.appearances(day, chosen or None, where or None)
    if not rows:
        st.info("Nobody was seen then.")
        return

    def face_url(jpeg: bytes | None) -> str | None:
        return None if jpeg is None else "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()

    table = [{"face": face_url(a.snapshot), "name": a.name,
              "first seen": datetime.fromtimestamp(a.first_seen).strftime("%Y-%m-%d %H:%M:%S"),
              "last seen": datetime.fromtimestamp(a.last_seen).strftime("%H:%M:%S"),
              "for": history.format_duration(a.duration), "seen by": a.source} for a in rows]
    st.write(f"{len(rows)} appearance(s).")
    st.dataframe(table, width="stretch", hide_index=True,
                 column_config={"face": st.column_config.ImageColumn("face")})
    st.download_button("Download CSV", history.to_csv(rows), file_name="facerec_who_was_here.csv",
                       mime="text/csv", on_click="ignore")
