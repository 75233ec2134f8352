"""Keep TensorFlow's C++ start-up logs off stderr, however facerec is started.

TensorFlow prints, while its native libraries load, lines such as ``WARNING: All log
messages before absl::InitializeLog() is called are written to STDERR``, ``oneDNN
custom operations are on`` and ``Could not find cuda drivers``. Some are written before
``TF_CPP_MIN_LOG_LEVEL`` is read, so setting it is not enough: :func:`install` (called by
``import facerec``) hooks the first import of ``tensorflow``, sets
``TF_CPP_MIN_LOG_LEVEL=3`` unless the user chose a level, and sends file descriptor 2 to
a temporary file for the length of that import; what was written there is then passed
on to stderr, less the log lines below the chosen level. Nothing else is hidden, and an
import of TensorFlow made before ``import facerec`` is left alone.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

DEFAULT_LEVEL = "3"
"""``TF_CPP_MIN_LOG_LEVEL`` set when the user set none: errors of start-up included (a
machine without a GPU driver logs one), since facerec reports its own errors."""

_GLOG = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+\s+\S+:\d+\] ")
_SEVERITY = "IWEF"
_TFLITE = re.compile(r"^(INFO|WARNING|ERROR): ")  # LiteRT's own logger ("INFO: Created TensorFlow Lite XNNPACK ...")
_TFLITE_SEVERITY = ("INFO", "WARNING", "ERROR")
_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CONTINUATION = ("To enable the following instructions", "rebuild TensorFlow with the appropriate")


def min_level() -> int:
    """The ``TF_CPP_MIN_LOG_LEVEL`` in force (0: everything is shown)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def filter_logs(text: str, level: int) -> str:
    """``text`` less TensorFlow's native log lines below ``level`` (0 keeps everything)."""
    if level <= 0:
        return text
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        found = _GLOG.match(line)
        lite = _TFLITE.match(line)
        if found:
            dropping = _SEVERITY.index(found.group(1)) < level
        elif line.startswith(_BANNER):
            dropping = True
        elif lite:
            dropping = _TFLITE_SEVERITY.index(lite.group(1)) < level
        elif not (dropping and line.startswith(_CONTINUATION)):
            dropping = False
        if not dropping:
            kept.append(line)
    return "".join(kept)


@contextmanager
def quiet_native_stderr(level: int | None = None) -> Iterator[None]:
    """Capture file descriptor 2 (native code's stderr) for the block, then write it back
    to stderr without TensorFlow's (and LiteRT's) log lines below ``level`` (default:
    ``TF_CPP_MIN_LOG_LEVEL``). Not re-entrant: callers in several threads hold one lock."""
    import tempfile

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (e.g. pythonw): nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError, AttributeError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            rest = filter_logs(tmp.read().decode("utf-8", "replace"), min_level() if level is None else level)
            if rest:
                os.write(2, rest.encode("utf-8", "replace"))


class _QuietLoader:
    """Runs the real loader of ``tensorflow`` inside :func:`quiet_native_stderr`."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        try:
            with quiet_native_stderr():
                self._loader.exec_module(module)
        finally:  # the module keeps its own loader (resources, reloads)
            module.__loader__ = self._loader
            if getattr(module, "__spec__", None) is not None:
                module.__spec__.loader = self._loader

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class _TensorFlowFinder:
    """On the first import of ``tensorflow``: set the log level, wrap its loader."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname != "tensorflow" or self._done:
            return None
        with self._lock:
            if self._done:
                return None
            self._done = True  # also keeps importlib.util.find_spec below from coming back here
        import importlib.util

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LEVEL)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _QuietLoader(spec.loader)
        return spec


_FINDER = _TensorFlowFinder()


def install() -> None:
    """Hook the first import of TensorFlow (idempotent; no-op once TensorFlow is loaded)."""
    if "tensorflow" in sys.modules or _FINDER in sys.meta_path:
        return
    sys.meta_path.insert(0, _FINDER)
