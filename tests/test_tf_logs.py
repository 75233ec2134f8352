"""stderr free of TensorFlow's C++ start-up logs however facerec is started (issue 12, item 6)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from facerec.tflogs import filter_logs

from conftest import png_bytes, synthetic_photo

TF_LOG = re.compile(r"absl::InitializeLog|oneDNN|cuda|cudart|cpu_feature_guard|^[IWEF]\d{4} ", re.M)
FACEREC = Path(sys.executable).parent / "facerec"

SAMPLE = """WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796041597.040766    3952 port.cc:153] oneDNN custom operations are on.
I0000 00:00:1796041597.041824    3952 cudart_stub.cc:31] Could not find cuda drivers on your machine.
I0000 00:00:1796041597.091824    3952 cpu_feature_guard.cc:227] This TensorFlow binary is optimized.
To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
E0000 00:00:1796041597.1    3952 cuda_executor.cc:1] failed call to cuInit: UNKNOWN (303)
UserWarning: something of our own
"""


def test_filter_keeps_what_is_not_below_the_level():
    assert filter_logs(SAMPLE, 3) == "UserWarning: something of our own\n"
    assert filter_logs(SAMPLE, 2).splitlines() == [SAMPLE.splitlines()[-2], SAMPLE.splitlines()[-1]]
    assert filter_logs(SAMPLE, 0) == SAMPLE


def _run(args: list[str], tmp_path: Path, level: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level  # still leaves absl's pre-init lines without facerec's hook
    env["FACEREC_GALLERY"] = str(tmp_path / "empty_gallery")
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


@pytest.fixture
def photo(tmp_path) -> str:
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes(synthetic_photo([1])))
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("how,level", [("console script", None), ("python -m", "3")])
def test_the_cli_prints_no_tensorflow_logs(tmp_path, photo, how, level):
    """``facerec identify`` on an empty gallery loads TensorFlow and the models, then says
    one line; nothing from TensorFlow's C++ side comes before it."""
    if how == "console script" and not FACEREC.exists():
        pytest.skip("no installed facerec console script beside this Python")
    cmd = [str(FACEREC)] if how == "console script" else [sys.executable, "-m", "facerec"]
    res = _run(cmd + ["identify", photo], tmp_path, level)
    assert res.returncode != 0 and "nobody is enrolled" in res.stderr
    assert not TF_LOG.search(res.stderr), res.stderr
    assert all(line.startswith("facerec:") for line in res.stderr.splitlines()), res.stderr


@pytest.mark.slow
def test_importing_facerec_then_tensorflow_prints_no_logs(tmp_path):
    code = ("import facerec\nfrom facerec.embed import import_tensorflow\nimport_tensorflow()\n"
            "import tensorflow as tf\nprint(int(tf.constant(2) + 1))\n")
    res = _run([sys.executable, "-c", code], tmp_path, None)
    assert res.returncode == 0 and res.stdout.strip() == "3"
    assert not TF_LOG.search(res.stderr), res.stderr
