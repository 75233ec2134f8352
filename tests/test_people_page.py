"""The People page: a grid of enrolled faces (cached on disk), search, and a person's page with
confirmed removals and success messages (AppTest; no models loaded)."""

from __future__ import annotations

import html
import re
import stat
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import png_bytes, synthetic_photo
from facerec import history, photonames, thumbs
from facerec.gallery import Gallery
from facerec.storage import content_hash

APP = str(Path(__file__).resolve().parents[1] / "app.py")
BOX = (30, 20, 48, 48)  # where synthetic_photo puts the first face


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEREC_GALLERY", str(tmp_path / "g"))
    monkeypatch.setenv("FACEREC_CACHE_DIR", str(tmp_path / "cache"))
    return AppTest.from_file(APP, default_timeout=60), Gallery(tmp_path / "g"), tmp_path / "cache"


def add(g: Gallery, name: str, person: int, seed: int = 0, original: str | None = None) -> str:
    data = png_bytes(synthetic_photo([person], seed=seed))
    g.add_photo(name, data, BOX, np.ones(4, np.float32), "m", ".png")
    if original:
        photonames.remember(g.root, content_hash(data), original)
    return content_hash(data)


def grid(at) -> list[tuple[str, str, bool]]:
    """The People grid as ``(name, photo count, has a face picture)``, from its one HTML block."""
    block = next((m.value for m in at.markdown if 'class="fr-grid"' in m.value), "")
    return [(html.unescape(name), count, face.startswith("<img"))
            for face, name, count in re.findall(r'target="_self">(<img[^>]*>|<span[^>]*></span>)<b>(.*?)</b>'
                                                 r'<small>(\d+) photo', block)]


def people_listed(at) -> list[str]:
    return [name for name, _, _ in grid(at)]


def open_person(at, name: str) -> None:
    """What clicking a face does: the person's own address, ``?person=<name>``."""
    at.query_params["person"] = name
    at.run()


def test_grid_of_faces_with_counts_and_search(app, monkeypatch):
    at, g, cache = app
    for i, name in enumerate(["Ann Lee", "Bob Stone", "Zoë Martin"]):
        add(g, name, i + 1)
    add(g, "Ann Lee", 1, seed=7)
    at.run()
    assert grid(at) == [("Ann Lee", "2", True), ("Bob Stone", "1", True), ("Zoë Martin", "1", True)]
    assert len(list((cache / "thumbs").glob("*_face.jpg"))) == 3
    assert {oct(stat.S_IMODE(f.stat().st_mode)) for f in (cache / "thumbs").iterdir()} == {"0o600"}  # faces
    # a second visit decodes nothing: every face comes from the disk cache
    decoded = []
    monkeypatch.setattr(thumbs, "load_photo", lambda *a, **k: decoded.append(a) or pytest.fail("decoded"))
    at.run()
    assert decoded == [] and [has_face for _, _, has_face in grid(at)] == [True] * 3
    at.text_input[0].input("zoe").run()  # accents and case do not matter
    assert people_listed(at) == ["Zoë Martin"] and "1 match" in at.main.caption[0].value


def test_person_page_removes_a_photo_only_after_confirmation(app):
    at, g, cache = app
    add(g, "Ann Lee", 1, seed=1, original="beach.jpg")
    sha = add(g, "Ann Lee", 1, seed=2, original="party 2019.png")
    at.run()
    open_person(at, "Ann Lee")
    assert sorted(i.captions[0] for i in at.image) == ["beach.jpg", "party 2019.png"]  # the original names
    [b for b in at.button if b.key == f"rm_{sha[:16]}.png"][0].click().run()
    assert "Remove party 2019.png from Ann Lee?" in at.warning[0].value
    assert len(g.photos("Ann Lee")) == 2  # nothing removed yet
    [b for b in at.button if b.label == "Cancel"][0].click().run()
    assert len(at.warning) == 0 and len(g.photos("Ann Lee")) == 2
    [b for b in at.button if b.key == f"rm_{sha[:16]}.png"][0].click().run()
    [b for b in at.button if b.label == "Yes, remove it"][0].click().run()
    assert at.success[0].value == "Removed party 2019.png from Ann Lee."
    assert [p.sha for p in g.photos("Ann Lee")] != [] and sha not in {p.sha for p in g.photos("Ann Lee")}
    assert not list((cache / "thumbs").glob(f"{sha[:32]}_*"))


def test_rename_says_so_and_a_failed_rename_keeps_everything(app):
    at, g, _ = app
    add(g, "Ann Lee", 1)
    add(g, "Bob Stone", 2)
    history.History(g.root).record("Ann Lee", 1000.0)
    at.run()
    open_person(at, "Ann Lee")
    at.text_input[0].input("Bob Stone").run()
    [b for b in at.button if b.label == "Rename"][0].click().run()
    assert "already enrolled" in at.warning[0].value and "Merge Ann Lee into them?" in at.warning[0].value
    assert [b.label for b in at.button if b.label in ("Merge", "Rename")] == ["Merge"]  # a merge is offered
    assert "Ann Lee (1 photo(s))" in at.subheader[0].value  # still on Ann's page, nothing changed yet
    assert [p.name for p in g.people()] == ["Ann Lee", "Bob Stone"]
    at.text_input[0].input("Ann Lee-Smith").run()
    [b for b in at.button if b.label == "Rename"][0].click().run()
    assert at.success[0].value == "Renamed Ann Lee to Ann Lee-Smith."
    assert [p.name for p in g.people()] == ["Ann Lee-Smith", "Bob Stone"]
    assert history.History(g.root).people() == ["Ann Lee-Smith"]
    assert at.query_params["person"] in ("Ann Lee-Smith", ["Ann Lee-Smith"])  # the address follows the new name
    [b for b in at.button if b.label == "← Everyone"][0].click().run()
    assert people_listed(at) == ["Ann Lee-Smith", "Bob Stone"] and "person" not in at.query_params


def test_forget_removes_history_thumbnails_and_names(app):
    at, g, cache = app
    sha = add(g, "Ann Lee", 1, original="me.jpg")
    history.History(g.root).record("Ann Lee", 1000.0, b"face")
    at.run()
    assert list((cache / "thumbs").glob(f"{sha[:32]}_*"))
    open_person(at, "Ann Lee")
    at.checkbox[0].check().run()
    [b for b in at.button if b.label == "Forget this person"][0].click().run()
    assert "Forgot Ann Lee" in at.success[0].value
    assert g.people() == [] and history.History(g.root).people() == []
    assert not list((cache / "thumbs").glob(f"{sha[:32]}_*")) and photonames.names(g.root) == {}


def test_renaming_onto_an_enrolled_person_merges_them_when_asked(app):
    at, g, _ = app
    add(g, "Ann Lee", 1)
    add(g, "Annie Lee", 1, seed=5)
    at.run()
    open_person(at, "Annie Lee")
    at.text_input[0].input("ann lee").run()  # a look-alike of the enrolled name
    [b for b in at.button if b.label == "Rename"][0].click().run()
    [b for b in at.button if b.label == "Merge"][0].click().run()
    assert at.success[0].value == "Merged Annie Lee into Ann Lee."
    assert [(p.name, p.photos) for p in g.people()] == [("Ann Lee", 2)]


def test_a_forget_that_fails_is_shown_and_finished_from_the_people_page(app):
    at, g, cache = app
    add(g, "Ann Lee", 1)
    add(g, "Bob Stone", 2)
    history.History(g.root).record("Ann Lee", 1000.0)
    tags = cache / "tags.sqlite"
    tags.mkdir(parents=True)  # the tag cache cannot be opened
    at.run()
    open_person(at, "Ann Lee")
    at.checkbox[0].check().run()
    [b for b in at.button if b.label == "Forget this person"][0].click().run()
    assert "tag cache" in at.error[0].value and "forget Ann Lee again" in at.error[0].value
    assert people_listed(at) == ["Bob Stone"] and history.History(g.root).people() == []
    assert "Ann Lee is half forgotten" in at.warning[0].value
    tags.rmdir()
    [b for b in at.button if b.label == "Finish forgetting"][0].click().run()
    assert "Forgot Ann Lee" in at.success[0].value
    assert not [w for w in at.warning if "half forgotten" in w.value]
    assert [p.name for p in g.people()] == ["Bob Stone"] and g.forgetting() == []


def test_the_remove_confirmation_is_under_the_photo_not_below_the_whole_grid(app):
    """With many photos the "Remove?" question appeared ~1,100 px down, below the grid, so Remove
    seemed to do nothing; it is now asked in the photo's own column, right under it."""
    at, g, _ = app
    shas = [add(g, "Ann Lee", 1, seed=s, original=f"photo{s:02d}.png") for s in range(9)]
    at.run()
    open_person(at, "Ann Lee")
    [b for b in at.button if b.key == f"rm_{shas[0][:16]}.png"][0].click().run()
    column = next(c for c in at.columns if any(i.captions and i.captions[0] == "photo00.png" for i in c.image))
    assert [w.value for w in column.warning] == ["Remove photo00.png from Ann Lee? The photo and its face vectors "
                                                 "are deleted."]
    assert any(b.label == "Yes, remove it" for b in column.button)
