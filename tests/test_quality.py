"""The face-quality score (issue 13): size, sharpness and pose, and enrolment's warning."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facerec.quality import MAX_YAW, MIN_EYE_DISTANCE, face_quality, sharpness_of, yaw_of
from facerec.types import Face
from conftest import LFW, needs_shared

FRONTAL = np.array([[100, 100], [140, 100], [120, 125], [104, 150], [136, 150]], dtype=np.float32)


def test_yaw_and_size_from_the_landmarks():
    yaw, dist = yaw_of(FRONTAL)
    assert abs(yaw) < 1e-6 and dist == pytest.approx(40)
    turned = FRONTAL.copy()
    turned[2, 0] += 30  # the nose near the right eye: a head turned to one side
    assert yaw_of(turned)[0] == pytest.approx(0.75)
    mirrored = FRONTAL.copy()
    mirrored[2, 0] -= 30
    assert yaw_of(mirrored)[0] == pytest.approx(-0.75)
    rotated = FRONTAL @ np.array([[0, 1], [-1, 0]], np.float32)  # a rolled head: still frontal
    assert abs(yaw_of(rotated)[0]) < 1e-5


def _face(landmarks, crop=None):
    return Face((90.0, 80.0, 60.0, 80.0), 0.99, None if landmarks is None else np.asarray(landmarks, np.float32), crop)


def test_each_problem_is_named():
    sharp = cv2.resize(cv2.imread(str(next(iter(sorted(LFW.glob("*/*.jpg")))))) if LFW.is_dir()
                       else np.random.default_rng(0).integers(0, 255, (150, 150, 3), np.uint8), (150, 150))
    assert sharpness_of(sharp) > 50
    good = face_quality(_face(FRONTAL, sharp))
    assert not good.poor and good.describe() == "good"
    turned = FRONTAL.copy()
    turned[2, 0] += (MAX_YAW + 0.1) * 40
    assert face_quality(_face(turned, sharp)).problems == ("head turned away",)
    small = FRONTAL * (MIN_EYE_DISTANCE - 2) / 40
    assert face_quality(_face(small, sharp)).problems[0].startswith("small face (10 px")
    blurred = cv2.GaussianBlur(sharp, (0, 0), 5)
    assert face_quality(_face(FRONTAL, blurred)).problems == ("blurred",)
    assert face_quality(_face(None, sharp)).problems == ()  # Haar: no landmarks, sharpness only


@needs_shared
def test_a_blurred_photo_waits_for_yes_on_the_cli(tmp_path, capsys):
    """A real photo, blurred as by a shaky hand: the face is still found, the CLI says on
    stderr that it is a poor photo for recognition and saves it only with --yes, as the
    app's Enrol page asks for a tick."""
    from facerec import cli
    from facerec.errors import ConfirmationNeededError

    photo = sorted((LFW / "Colin_Powell").glob("*.jpg"))[0]
    image = cv2.imread(str(photo))
    blurred = tmp_path / "blurred.jpg"
    cv2.imwrite(str(blurred), cv2.GaussianBlur(image, (0, 0), 3.5))
    sharp = tmp_path / "sharp.jpg"
    cv2.imwrite(str(sharp), image)
    gallery = tmp_path / "g"
    assert cli.main(["enroll", "--gallery", str(gallery), "--name", "Colin Powell", str(sharp), "-q"]) == 0
    assert "poor photo" not in capsys.readouterr().err
    argv = ["enroll", "--gallery", str(gallery), "--name", "Colin Powell", str(blurred), "-q"]
    assert cli.main(argv) == ConfirmationNeededError.exit_code
    err = capsys.readouterr().err
    assert f"{blurred}: A poor photo for recognition (blurred)" in err and "needs --yes" in err
    assert len(list((gallery / "Colin Powell").glob("*.jpg"))) == 1
    assert cli.main([*argv, "--yes"]) == 0
    err = capsys.readouterr().err
    assert f"{blurred}: a poor photo for recognition (blurred)" in err and "enrolled 1 photo(s)" in err
    assert len(list((gallery / "Colin Powell").glob("*.jpg"))) == 2
