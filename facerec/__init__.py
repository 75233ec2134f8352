"""facerec: offline face recognition on a laptop CPU.

Detect faces (YuNet, MTCNN or OpenCV), align them, embed them with a frozen
pretrained base plus a small trained head, and match them against the
enrolled people of a gallery folder, saying ``unknown`` for strangers::

    import facerec
    rec = facerec.FaceRecognizer(facerec.Settings(gallery="enroll_data"))
    for face, match in rec.identify(facerec.load_image("photo.jpg")):
        print(face.box, match.name, match.score)

Importing this package loads no model; models load on first use. It does hook the
first import of TensorFlow so that its C++ start-up logs stay off stderr
(:mod:`facerec.tflogs`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from facerec import tflogs as _tflogs

_tflogs.install()

__version__ = "0.10.0"

# Public names are resolved on first use (PEP 562), so that ``import facerec`` (and the
# tag cache's fast path) imports neither scikit-learn nor TensorFlow.
_MODULES = {
    "facerec.align": "align_face crop_box face_crop similarity_transform",
    "facerec.classify": "CosineMatcher calibrate_threshold",
    "facerec.cluster": "UnknownGroup cluster_unknown enroll_cluster write_contact_sheet",
    "facerec.detect": "Detector MTCNNDetector OpenCVDetector YuNetDetector make_detector",
    "facerec.embed": "BACKBONES Backbone Embedder build_base build_head l2_normalize load_embedder",
    "facerec.errors": ("ClusterError ConfigError ConfirmationNeededError DiskFullError EmptyGalleryError "
                       "FaceRecError ForgetIncompleteError ImageError InvalidNameError ManyFacesError MetadataError "
                       "ModelUnavailableError NoFaceError PersonExistsError PersonNotFoundError"),
    "facerec.gallery": "Gallery Person PhotoRecord validate_name",
    "facerec.images": "Photo PixelBudget decode_image decode_photo load_image load_photo pixel_budget",
    "facerec.people": "ForgetReport People PhotoCheck",
    "facerec.pipeline": "FaceRecognizer pick_face",
    "facerec.quality": "Quality face_quality",
    "facerec.settings": "Settings",
    "facerec.tagcache": "TagCache",
    "facerec.tagging": "PhotoResult PhotoWorker csv_report find_photos identify_files json_report tag_photos",
    "facerec.thresholds": "StrangerCurve recognition_threshold",
    "facerec.types": "UNKNOWN Face Match",
    "facerec.xmp": "write_sidecar",
    "facerec.video": "LiveProcessor LiveSnapshot Presence TrackedFace",
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names.split()}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'facerec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:
    from facerec.align import align_face, crop_box, face_crop, similarity_transform
    from facerec.classify import CosineMatcher, calibrate_threshold
    from facerec.cluster import UnknownGroup, cluster_unknown, enroll_cluster, write_contact_sheet
    from facerec.detect import Detector, MTCNNDetector, OpenCVDetector, YuNetDetector, make_detector
    from facerec.embed import BACKBONES, Backbone, Embedder, build_base, build_head, l2_normalize, load_embedder
    from facerec.errors import (
        ClusterError,
        ConfigError,
        ConfirmationNeededError,
        DiskFullError,
        EmptyGalleryError,
        FaceRecError,
        ForgetIncompleteError,
        ImageError,
        InvalidNameError,
        ManyFacesError,
        MetadataError,
        ModelUnavailableError,
        NoFaceError,
        PersonExistsError,
        PersonNotFoundError,
    )
    from facerec.gallery import Gallery, Person, PhotoRecord, validate_name
    from facerec.images import Photo, PixelBudget, decode_image, decode_photo, load_image, load_photo, pixel_budget
    from facerec.people import ForgetReport, People, PhotoCheck
    from facerec.pipeline import FaceRecognizer, pick_face
    from facerec.quality import Quality, face_quality
    from facerec.settings import Settings
    from facerec.tagcache import TagCache
    from facerec.tagging import PhotoResult, PhotoWorker, csv_report, find_photos, identify_files, json_report, tag_photos
    from facerec.thresholds import StrangerCurve, recognition_threshold
    from facerec.types import UNKNOWN, Face, Match
    from facerec.xmp import write_sidecar
    from facerec.video import LiveProcessor, LiveSnapshot, Presence, TrackedFace
