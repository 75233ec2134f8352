"""Running ``.tflite`` networks with LiteRT (``ai-edge-litert``, TensorFlow's own runtime for
TFLite files), without importing TensorFlow.

The one private home of LiteRT's interpreter API (tensor details, fixed batch sizes, per-thread
interpreters): callers hand in float32 NHWC batches and get numpy arrays back. Importing this
module loads nothing; :func:`available` tells whether the runtime is installed.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

import numpy as np

from facerec.errors import ModelUnavailableError
from facerec.tflogs import quiet_native_stderr

_NATIVE_STDERR_LOCK = threading.Lock()  # fd 2 is captured by one thread at a time


def _log_level() -> int:
    """LiteRT log lines below this severity are dropped (0 INFO, 1 WARNING, 2 ERROR): the user's
    ``TF_CPP_MIN_LOG_LEVEL``, else 1 (its "Created TensorFlow Lite XNNPACK delegate" line goes)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1"))
    except ValueError:
        return 1


def available() -> bool:
    """Whether the LiteRT runtime (``ai_edge_litert``) can be imported (nothing is imported)."""
    try:
        return importlib.util.find_spec("ai_edge_litert") is not None
    except (ImportError, ValueError):
        return False


class TfliteNet:
    """A ``.tflite`` network with one input, run on numpy batches of any length.

    The file's batch size is kept (MobileFaceNet's is fixed at 2 by a RESHAPE in its graph,
    O-Net's is 1 but resizable): batches are cut into pieces of that size, the last one padded
    by repeating its first row, or, for a resizable graph, the input is resized once per new
    batch length. Each thread gets its own interpreter (LiteRT interpreters are not thread-safe),
    all reading the same file bytes.

    Args:
        path: the ``.tflite`` file.
        outputs: names of the output tensors to return, in this order (``None``: all, in the
            file's order).
        transpose_hw: swap each input's height and width axes before running (networks converted
            from Caffe, like MTCNN's O-Net, take images column-major).
        threads: CPU threads per interpreter (1: tagging already runs photos in parallel).
        resizable: the graph accepts any batch length (resized per length) instead of its
            file's fixed batch.

    Raises:
        ModelUnavailableError: LiteRT is not installed or cannot load the file.
    """

    def __init__(self, path: Path, outputs: tuple[str, ...] | None = None, transpose_hw: bool = False,
                 threads: int = 1, resizable: bool = False) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise ModelUnavailableError(f"LiteRT is not installed ({exc}); pip install ai-edge-litert") from None
        self.path = Path(path)
        self._content = self.path.read_bytes()
        self._Interpreter = Interpreter
        self._threads = int(threads)
        self._transpose = transpose_hw
        self._resizable = resizable
        self._local = threading.local()
        probe = self._interpreter()
        details = probe.get_input_details()
        if len(details) != 1:
            raise ModelUnavailableError(f"{self.path}: expected one input, the graph has {len(details)}")
        shape = tuple(int(v) for v in details[0]["shape"])
        self.batch = shape[0]
        self.input_shape = shape[1:]
        """``(H, W, C)`` as the caller gives it (after undoing ``transpose_hw``)."""
        if transpose_hw:
            self.input_shape = (shape[2], shape[1], shape[3])
        names = [d["name"] for d in probe.get_output_details()]
        self.outputs = tuple(outputs) if outputs is not None else tuple(names)
        missing = [n for n in self.outputs if n not in names]
        if missing:
            raise ModelUnavailableError(f"{self.path}: no output tensor {missing[0]!r} (it has {', '.join(names)})")
        # tensor indices are the same in every interpreter built from these bytes: looked up once, not per batch
        self._input_index = int(details[0]["index"])
        self._output_indices = [int(d["index"]) for d in self._output_details(probe)]

    def _interpreter(self):
        it = getattr(self._local, "interpreter", None)
        if it is None:
            try:
                with _NATIVE_STDERR_LOCK, quiet_native_stderr(_log_level()):  # the delegate's INFO line
                    it = self._Interpreter(model_content=self._content, num_threads=self._threads)
                    it.allocate_tensors()
            except (ValueError, RuntimeError) as exc:
                raise ModelUnavailableError(f"LiteRT cannot load {self.path}: {exc}") from None
            self._local.interpreter = it
            self._local.batch = None
        return it

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        """Run ``x``, ``(N, H, W, C)`` float32, returning one ``(N, ...)`` float32 array per
        name in :attr:`outputs`."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"{self.path.name} takes (N, {', '.join(map(str, self.input_shape))}), got {x.shape}")
        if self._transpose:
            x = x.transpose(0, 2, 1, 3)
        it = self._interpreter()
        n = len(x)
        if self._resizable and n:
            return self._invoke(it, np.ascontiguousarray(x), n)
        pieces = []
        for i in range(0, n, self.batch):
            part = x[i:i + self.batch]
            k = len(part)
            if k < self.batch:
                part = np.concatenate([part, np.repeat(part[:1], self.batch - k, axis=0)])
            pieces.append([o[:k] for o in self._invoke(it, np.ascontiguousarray(part), self.batch)])
        if not pieces:
            return [np.zeros((0,) + tuple(int(v) for v in d["shape"][1:]), np.float32)
                    for d in self._output_details(it)]
        return [np.concatenate([p[j] for p in pieces]) for j in range(len(self.outputs))]

    def _output_details(self, it) -> list[dict]:
        by_name = {d["name"]: d for d in it.get_output_details()}
        return [by_name[n] for n in self.outputs]

    def _invoke(self, it, x: np.ndarray, n: int) -> list[np.ndarray]:
        index = self._input_index
        if self._resizable and self._local.batch != n:
            it.resize_tensor_input(index, [n, *x.shape[1:]])
            it.allocate_tensors()
            self._local.batch = n
        it.set_tensor(index, x)
        it.invoke()
        return [it.get_tensor(i).copy() for i in self._output_indices]
