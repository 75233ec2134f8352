"""The app package's layout and what its pages decide, without running Streamlit's script."""

from __future__ import annotations

import subprocess
import sys

import pytest

from facerec import BACKBONES
from facerec.settings import Settings


def test_import_facerec_loads_neither_streamlit_nor_the_app():
    code = "import sys, facerec; assert 'streamlit' not in sys.modules and 'facerec.app' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_threshold_slider_spans_the_useful_range_and_holds_the_current_value():
    from facerec.app.settings import slider_range
    from facerec.classify import threshold_range

    lo, hi, step = slider_range(0.4, 0.4)
    base_lo, base_hi = threshold_range(0.4)
    assert lo <= base_lo and hi >= base_hi and step in (0.005, 0.01)
    lo, hi, _ = slider_range(0.4, 0.99)  # a saved value outside the range widens it
    assert hi >= 0.99 and hi <= 1.0 and lo >= 0.0


def test_threshold_in_use_never_carries_over_to_another_base(tmp_path):
    from facerec.app.settings import threshold_in_use, threshold_state

    settings = Settings(gallery=tmp_path).replace(threshold=0.5)
    assert threshold_in_use({}, "k", settings.backbone, settings) == 0.5
    assert threshold_in_use({"k": 0.6}, "k", settings.backbone, settings) == 0.6
    other = next(b for b in BACKBONES if b != settings.backbone)
    assert threshold_in_use({}, "k", other, settings) is None
    assert threshold_state(0.4, None, "b", 1).endswith("1 person: 0.400, in use")
    assert threshold_state(0.4, 0.5, "b", 2).endswith("2 people: 0.400, in use: 0.500, saved for b")


@pytest.mark.parametrize("module", ["people", "live", "identify", "enrol", "history", "library", "tag", "settings", "signin"])
def test_every_page_is_its_own_module(module):
    import importlib

    page = importlib.import_module(f"facerec.app.{module}")
    assert any(name.startswith("page_") or name == "sign_in_gate" for name in vars(page))
