"""The Live page: webcam video through WebRTC, every face boxed and named, who is in view beside it.
The model never runs in the video thread (facerec.video.LiveProcessor); the frame callback calls no st.*."""

from __future__ import annotations

import time

import streamlit as st

from facerec import FaceRecognizer, history
from facerec.app.common import WEBRTC_MISSING, WebRtcMode, av, browser_url, camera_blocked, webrtc_streamer
from facerec.app.identify import identify_picture
from facerec.types import Match
from facerec.verdict import verdict
from facerec.video import LiveProcessor, LiveSnapshot


def live_processor(rec: FaceRecognizer) -> LiveProcessor:
    """This browser session's processor (tracks belong to one video stream), for the current recogniser.
    It records who it names into the gallery's who-was-here history (from the video thread, through
    the history module's non-blocking writer: no st.* there)."""
    proc = st.session_state.get("live_processor")
    if proc is None or proc.recognizer is not rec:
        if proc is not None:
            proc.close()
        proc = LiveProcessor(rec, recorder=history.writer(rec.settings.gallery).observe)
        st.session_state["live_processor"] = proc
    return proc


def presence_text(snap: LiveSnapshot, now: float | None = None) -> str:
    """The who-is-in-view list as plain text, one person a line: verdict and for how long."""
    now = time.time() if now is None else now
    lines = []
    for p in snap.present:
        if snap.threshold is None:
            what = p.name
        else:
            v = verdict(Match(p.name, p.score), snap.threshold)
            what = v.headline if v.known else "unknown"
        lines.append(f"{what}  ·  for {history.format_duration(now - p.since)}")
    if lines:
        return "\n".join(lines)
    return "nobody" if snap.looked else "looking..."


@st.fragment(run_every=1.0)
def live_panel(proc: LiveProcessor) -> None:
    """Who is in view and the frame rate, redrawn every second while the camera runs (only this
    part of the page reruns: no "Running..." for the whole page, no frozen list)."""
    snap = proc.snapshot()
    st.text(f"{snap.fps:.1f} fps · {snap.detections_per_s:.1f} detections/s")
    st.text(presence_text(snap))
    if snap.error:
        st.warning(snap.error)
    writer_error = history.writer(proc.recognizer.settings.gallery).error
    if writer_error:
        st.warning(writer_error)


def needs_https(url: str) -> str:
    """What to do when the page was opened over plain http from another machine (the browser would refuse the
    camera with an error of its own)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return (f"Live needs HTTPS: this page was opened at {parts.scheme}://{parts.netloc}, and browsers give the camera "
            "only to https:// addresses or to the machine the app runs on (http://localhost). Ask whoever runs the "
            "app to serve it over HTTPS (a TLS reverse proxy, or Streamlit's --server.sslCertFile and "
            "--server.sslKeyFile; README, \"Remote deployment\"), then open it at https://. Meanwhile the "
            "Identify page names the faces of an uploaded photo.")


def page_live(rec: FaceRecognizer) -> None:
    st.header("Live")
    url = browser_url()
    if camera_blocked(url):
        st.error(needs_https(url))
        return
    if webrtc_streamer is None:
        st.warning(f"Live video is not available here ({WEBRTC_MISSING}); identifying single snapshots instead.")
        identify_picture(rec, st.camera_input("Camera snapshot", key="live_camera"))
        return
    st.caption("Press START and allow the camera. Every face is boxed and named (strangers: unknown; "
               "a name ending in ? is a possible match); who was here is kept on the Who was here page.")
    proc = live_processor(rec)

    def on_frame(frame):  # runs in the WebRTC thread: no st.* here
        out = proc.process(frame.to_ndarray(format="rgb24"))
        return av.VideoFrame.from_ndarray(out, format="rgb24")

    video, side = st.columns([3, 2])
    with video:
        rtc = {"iceServers": rec.settings.ice_server_list()}
        try:
            ctx = webrtc_streamer(
                key="live", mode=WebRtcMode.SENDRECV, rtc_configuration=rtc,
                media_stream_constraints={"video": {"width": 640, "height": 480}, "audio": False},
                video_frame_callback=on_frame, async_processing=True,
            )
        except Exception as exc:  # no WebRTC runtime (e.g. a test harness): fall back to snapshots
            st.warning(f"Live video could not start ({type(exc).__name__}: {exc}); "
                       "identifying single snapshots instead.")
            identify_picture(rec, st.camera_input("Camera snapshot", key="live_camera"))
            return
    with side:
        st.subheader("In view")
        if ctx.state.playing:
            with st.spinner("Loading face models..."):
                _ = rec.detector, rec.embedder  # now, rather than in the worker on the first frames
            live_panel(proc)
        else:
            st.text("Press START to turn the camera on.")
