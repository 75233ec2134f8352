import json

import numpy as np
import pytest

from facerec import cli
from facerec.errors import EmptyGalleryError, ManyFacesError, NoFaceError
from facerec.types import UNKNOWN

from conftest import png_bytes, synthetic_photo, tree_snapshot


def test_enroll_then_identify_names_the_right_people(recognizer):
    for person, name in [(1, "Ann"), (2, "Bob")]:
        for seed in range(2):
            recognizer.enroll(name, png_bytes(synthetic_photo([person], seed=seed)), source=f"{name}{seed}.png")
    results = recognizer.identify(synthetic_photo([2, 9, 1], seed=7))
    names = [m.name for _, m in sorted(results, key=lambda r: r[0].box[0])]
    assert names == ["Bob", UNKNOWN, "Ann"]
    assert all(0 <= m.score <= 1 for _, m in results)


def test_enrol_refusals_leave_gallery_untouched(recognizer):
    recognizer.enroll("Ann", png_bytes(synthetic_photo([1])), source="a.png")
    before = tree_snapshot(recognizer.gallery.root)
    with pytest.raises(NoFaceError):
        recognizer.enroll("Bob", png_bytes(np.zeros((50, 50, 3), np.uint8)), source="black.png")
    with pytest.raises(ManyFacesError):
        recognizer.enroll("Bob", png_bytes(synthetic_photo([2, 3])), source="two.png")
    assert tree_snapshot(recognizer.gallery.root) == before
    rec = recognizer.enroll("Bob", png_bytes(synthetic_photo([2, 3])), source="two.png", largest=True)
    assert rec.record.person == "Bob"


def test_empty_gallery_is_a_clear_error(recognizer):
    with pytest.raises(EmptyGalleryError, match="enrol"):
        recognizer.identify(synthetic_photo([1]))


def test_new_enrolment_is_seen_without_restart(recognizer):
    recognizer.enroll("Ann", png_bytes(synthetic_photo([1])), source="a.png")
    assert recognizer.identify(synthetic_photo([2], seed=3))[0][1].name == UNKNOWN
    recognizer.enroll("Bob", png_bytes(synthetic_photo([2])), source="b.png")
    assert recognizer.identify(synthetic_photo([2], seed=3))[0][1].name == "Bob"


@pytest.fixture
def cli_env(recognizer, monkeypatch, tmp_path):
    """The CLI running over the fake detector and tiny embedder."""
    from facerec.pipeline import FaceRecognizer

    def make(args):
        return FaceRecognizer(cli._settings(args), detector=recognizer.detector, embedder=recognizer.embedder)

    monkeypatch.setattr(cli, "_recognizer", make)
    people = tmp_path / "people"
    for person, name in [(1, "Ann"), (2, "Bob")]:
        (people / name).mkdir(parents=True)
        for seed in range(2):
            (people / name / f"{seed}.png").write_bytes(png_bytes(synthetic_photo([person], seed=seed)))
    (people / "Cleo.png").write_bytes(png_bytes(synthetic_photo([3])))
    (people / "Ann" / "group.png").write_bytes(png_bytes(synthetic_photo([1, 4])))
    (people / "Ann" / "broken.png").write_bytes(b"\x89PNG broken")
    return ["--gallery", str(tmp_path / "g"), "-q"], people, tmp_path


def test_cli_enroll_identify_people(cli_env, capsys):
    g, people, tmp = cli_env
    assert cli.main(["enroll", str(people), *g]) == 0
    err = capsys.readouterr().err
    assert "group.png: 2 faces" in err and "broken.png" in err
    assert cli.main(["people", "list", *g]) == 0
    assert capsys.readouterr().out.splitlines() == ["Ann,2", "Bob,2", "Cleo,1"]

    probe = tmp / "probe"
    probe.mkdir()
    (probe / "b.png").write_bytes(png_bytes(synthetic_photo([2, 5], seed=9)))
    (probe / "empty.jpg").write_bytes(b"")
    assert cli.main(["identify", str(probe), *g]) == 1  # one file failed
    out, err = capsys.readouterr()
    rows = sorted(line.split(",")[1] for line in out.splitlines())
    assert rows == ["Bob", UNKNOWN] and "empty.jpg: file is empty" in err

    assert cli.main(["identify", str(probe / "b.png"), "--json", *g]) == 0
    doc = json.loads(capsys.readouterr().out)
    faces = sorted(doc[0]["faces"], key=lambda f: f["box"][0])
    assert [f["name"] for f in faces] == ["Bob", UNKNOWN] and faces[0]["box"] == [30, 20, 48, 48]

    assert cli.main(["people", "rename", "Cleo", "Cléo D", *g]) == 0
    assert cli.main(["people", "remove", "Bob", *g]) == 0
    assert cli.main(["people", "list", *g]) == 0
    assert capsys.readouterr().out.splitlines() == ["Ann,2", "Cléo D,1"]


def test_cli_errors_are_one_line_and_leave_gallery(cli_env, capsys):
    g, people, tmp = cli_env
    assert cli.main(["enroll", str(people), *g]) == 0
    root = tmp / "g"
    before = tree_snapshot(root)
    capsys.readouterr()
    for argv in (["enroll", "--name", "../x", str(people / "Cleo.png")], ["people", "remove", "Nobody"],
                 ["people", "rename", "Ann", "Bob"], ["enroll", str(tmp / "missing")]):
        code = cli.main([*argv, *g])
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and len(err) == 1 and err[0].startswith("facerec: error:"), (argv, err)
    assert tree_snapshot(root) == before


def test_cli_identify_on_empty_gallery_fails_clearly(cli_env, capsys):
    g, people, _ = cli_env
    assert cli.main(["identify", str(people / "Cleo.png"), *g]) == 5
    assert "nobody is enrolled" in capsys.readouterr().err


def test_help_explains_every_command(capsys):
    for cmd in ["enroll", "identify", "tag", "people", "train-head", "eval"]:
        with pytest.raises(SystemExit) as e:
            cli.main([cmd, "--help"])
        assert e.value.code == 0
        assert "usage: facerec " + cmd in capsys.readouterr().out


def test_switching_the_base_re_embeds_instead_of_mixing(recognizer, settings, tiny_embedder):
    from facerec.embed import Embedder, build_head
    from facerec.pipeline import FaceRecognizer

    from conftest import BlobDetector

    recognizer.enroll("Ann", png_bytes(synthetic_photo([1])), source="a.png")
    other = Embedder(tiny_embedder.backbone, tiny_embedder._model, head=build_head(64, 16), head_id="h2",
                     threshold=0.0)
    rec2 = FaceRecognizer(settings, detector=BlobDetector(), embedder=other)
    assert rec2.identify(synthetic_photo([1], seed=4))[0][1].name == "Ann"
    g = recognizer.gallery
    assert g.vectors(other.key)[0].shape == (1, 16) and g.vectors(tiny_embedder.key)[0].shape == (1, 64)


def test_importing_the_package_the_tagger_and_the_cli_loads_neither_sklearn_nor_tensorflow():
    import subprocess
    import sys

    code = ("import sys, facerec, facerec.tagging, facerec.cli; "
            "print(sorted(m for m in ('sklearn', 'tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip() == "[]"
    code = "import facerec; print(facerec.Settings.__name__, facerec.CosineMatcher.__module__, 'Gallery' in dir(facerec))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.split() == ["Settings", "facerec.classify", "True"]


def test_photos_are_decoded_small_whatever_their_format():
    """A large JPEG is reduced by the decoder, a large PNG right after decoding: either way
    the tagger's queues hold a photo at about the detector's working size, with the
    displayed size kept for the boxes."""
    import io

    from PIL import Image

    from facerec.pipeline import decode_for_detection
    from facerec.settings import Settings

    settings = Settings(max_detect_side=400)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (1500, 2000, 3), dtype=np.uint8))
    for fmt in ("JPEG", "PNG"):
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        photo = decode_for_detection(buf.getvalue(), f"big.{fmt.lower()}", settings)
        assert photo.size == (2000, 1500)
        assert 300 <= max(photo.pixels.shape[:2]) <= 600, fmt
