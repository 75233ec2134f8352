"""The Settings page: base network, detector and unknown threshold, saved next to the gallery."""

from __future__ import annotations

import math
import os

import streamlit as st

from facerec import BACKBONES, FaceRecError, Settings
from facerec.app.common import recognizer, save_choices


# What each base is, in words for the people using the app (BACKBONES' descriptions are for --help).
BASE_IN_WORDS: dict[str, str] = {
    "mobilefacenet": "A network trained on faces: the most accurate here, and the default.",
    "arcface-mbf": "InsightFace's face network, trained on faces; its licence allows non-commercial research "
                   "use only.",
    "face-resnet": "dlib's face network, trained on faces: the fastest, a little less accurate.",
    "resnet50": "A general picture network (not trained on faces), tuned for faces here: slower and less "
                "accurate than the face networks.",
    "vgg16": "A general picture network like resnet50, not measured here; its weights must be downloaded first.",
}


def base_in_words(backbone: str) -> str:
    """One plain sentence about ``backbone`` for the Settings page."""
    return BASE_IN_WORDS.get(backbone, "")


def threshold_in_use(saved: dict[str, float], key: str, backbone: str, settings: Settings) -> float | None:
    """The threshold chosen for ``backbone`` (``key``: its base and head), or ``None`` for its calibrated one:
    the one saved for it, else the configured one when it is the base in use (a number set for one base
    never carries over to another)."""
    return saved[key] if key in saved else settings.threshold if backbone == settings.backbone else None


def slider_range(default: float, current: float) -> tuple[float, float, float]:
    """The Unknown threshold slider's ``(lo, hi, step)``: the base's useful range around its calibrated
    ``default`` (facerec.classify.threshold_range), widened to hold ``current``, on whole steps of 0.005
    (0.01 when the range is wider than 0.3), within [0, 1]."""
    from facerec.classify import threshold_range

    lo, hi = threshold_range(default)
    step = 0.005 if hi - lo <= 0.3 else 0.01
    lo = round(max(0.0, math.floor(min(lo, current) / step) * step), 3)
    hi = round(min(1.0, math.ceil(max(hi, current) / step) * step), 3)
    return lo, hi, step


def threshold_state(default: float, mine: float | None, backbone: str, people: int) -> str:
    """What the threshold caption says about the calibrated value and the one in use."""
    return f"calibrated value for this base and {people} {'person' if people == 1 else 'people'}: {default:.3f}, " + (
        "in use" if mine is None else f"in use: {mine:.3f}, saved for {backbone}")


def page_settings(settings: Settings) -> None:
    """Base network, detector and unknown threshold, saved next to the gallery.

    The threshold is saved per base (and head): switching base shows that base's own
    threshold (its calibrated one unless one was saved for it), on a slider spanning the
    base's useful range, and "Use the calibrated threshold" restores the calibrated one.
    A base whose weights cannot be loaded here is not saved; the page says what to do.
    """
    from facerec import weights
    from facerec.embed import build_architecture, get_backbone
    from facerec.settings import (DETECTORS, load_choices, saved_thresholds, settings_file, threshold_key,
                                  with_threshold)
    from facerec.thresholds import recognition_threshold

    st.header("Settings")
    missing = {name: why for name in BACKBONES if name != settings.backbone
               and (why := weights.unavailable_reason(name, settings)) is not None}
    names = [name for name in BACKBONES if name not in missing]  # a base that could only fail at Save is not offered
    st.caption(f"Saved with the gallery ({settings_file(settings.gallery)}); they apply to every page and session, "
               "and to the command line on this gallery. Command-line options and FACEREC_* variables override them "
               "for one run.")
    try:
        choices = load_choices(settings.gallery)
    except FaceRecError as exc:
        st.warning(f"{exc} Until then the defaults apply; saving here replaces the file.")
        choices = {}
    overriding = [f"FACEREC_{name.upper()}" for name in ("backbone", "detector", "threshold")
                  if os.environ.get(f"FACEREC_{name.upper()}")]
    if overriding:
        st.info(f"{', '.join(overriding)} {'is' if len(overriding) == 1 else 'are'} set where the app runs: "
                "what is saved here applies once unset.")
    backbone = st.selectbox("Base network", names, index=names.index(settings.backbone))
    for name, why in missing.items():
        st.caption(f"{name} is not offered: {why}.")
    st.caption("The model that recognises faces: it turns each face into numbers that are compared with the "
               "enrolled people's. After a switch the enrolled photos are read again once. "
               f"{base_in_words(backbone)}")
    detector = st.selectbox("Detector", list(DETECTORS), index=DETECTORS.index(settings.detector))
    st.caption("What finds the faces: YuNet (the default) and MTCNN also find eyes, nose and mouth for alignment; "
               "YuNet is several times faster and finds more small faces. OpenCV's Haar cascade misses more faces "
               "and does not align them.")

    key = threshold_key(backbone, settings.head)
    enrolled = [r.person for r in recognizer(settings).gallery.photos()]  # no model is loaded for this
    default = recognition_threshold(settings.replace(backbone=backbone, threshold=None), enrolled)
    saved = saved_thresholds(choices)
    mine = threshold_in_use(saved, key, backbone, settings)
    current = default if mine is None else mine
    lo, hi, step = slider_range(default, current)
    generation = st.session_state.get("threshold_generation", 0)  # a new slider after "use the calibrated"
    threshold = st.slider("Unknown threshold", lo, hi, float(current), step, format="%.3f",
                          key=f"threshold_{key}_{generation}")
    state = threshold_state(default, mine, backbone, len(set(enrolled)))
    st.caption(f"Faces whose best match scores below this are called unknown: higher means fewer wrong names but "
               f"more unknowns ({state}). Each base keeps its own threshold.")

    def save(value: float | None) -> None:
        base = get_backbone(backbone)
        try:  # a base that cannot load its weights would break every page
            weights.load_weights(backbone, build_architecture(base, base.input_size), settings)
        except FaceRecError as exc:
            how = getattr(weights, "how_to_get_weights", None)
            what = how(backbone) if how else f"run `facerec fetch-weights {backbone}` on the server"
            st.error(f"Not saved: the weights of {backbone} cannot be loaded here; to use it, {what}.")
            with st.expander("What was tried"):
                st.text(str(exc))
            return
        save_choices(settings, **with_threshold(choices, key, value, backbone=backbone, detector=detector))
        st.session_state["settings_saved"] = True
        st.session_state["threshold_generation"] = generation + 1
        st.rerun()

    at_calibrated = mine is None and threshold == float(current)  # an untouched slider keeps "calibrated"
    left, right = st.columns(2)
    if left.button("Save settings"):
        with st.spinner(f"Checking that {backbone} can load its weights..."):
            save(None if at_calibrated else threshold)
    if right.button(f"Use the calibrated threshold ({default:.3f})", disabled=at_calibrated):
        with st.spinner(f"Checking that {backbone} can load its weights..."):
            save(None)
    if st.session_state.pop("settings_saved", False):
        st.success("Saved; they apply to every page now.")
