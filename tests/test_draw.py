"""Labels in any script, inside the photo (issue 12, item 6)."""

import numpy as np
import pytest

from facerec import draw
from facerec.draw import draw_labels, draw_matches, put_text, text_mask
from facerec.types import Face, Match

GREY = 90


def _label(text: str, box=(100, 80, 60, 60), shape=(240, 320)) -> np.ndarray:
    return draw_labels(np.full((*shape, 3), GREY, np.uint8), [(box, text, True)])


def _white(image: np.ndarray) -> int:
    """Pixels of the (white) label text: the box and the label's fill are green."""
    return int((image.min(axis=2) > 160).sum())


def test_the_shipped_font_is_used():
    assert draw.FONT_FILE.is_file() and draw.font_files()[0] == str(draw.FONT_FILE)


@pytest.mark.parametrize("name", ["Анна Петрова", "Ελένη Παππά", "Zoë Łukasiewicz", "Ştefan Dvořák"])
def test_names_in_any_script_are_drawn_not_question_marks(name):
    drawn = _label(f"{name} 0.91")
    ink = _white(drawn)
    assert ink > 150  # letters were drawn in the label area
    question = _label("?" * len(name) + " 0.91")
    assert not np.array_equal(drawn, question)  # cv2.putText drew every letter as '?'
    mask, marks = text_mask(name, 24), text_mask("?" * len(name), 24)
    assert mask.shape != marks.shape or (mask != marks).any()


def test_each_letter_has_a_glyph_of_its_own():
    """Cyrillic and Greek letters come out as distinct shapes, not a 'missing glyph' box each."""
    masks = [text_mask(ch, 32) for ch in "ЖЯλΩ"]
    assert all(m.max() > 0 for m in masks)
    assert len({m.tobytes() for m in masks}) == 4


def test_cjk_where_a_font_has_it():
    fonts = draw.font_files()
    if not any(draw._covers(i, "王") for i in range(len(fonts))):
        pytest.skip("no installed font covers CJK")
    mask, marks = text_mask("王小明", 24), text_mask("???", 24)
    assert mask.shape != marks.shape or (mask != marks).any()


@pytest.mark.parametrize("box", [
    (290, 100, 60, 60),  # past the right edge
    (-20, 0, 50, 50),  # top-left corner, partly outside
    (250, 0, 70, 240),  # as tall as the photo, at the right: no room above or below
    (0, 220, 40, 40),  # past the bottom
])
def test_labels_stay_inside_the_photo(box):
    text = "Анна 0.91"
    whole = _white(_label(text))  # the same label, drawn in the middle
    assert _white(_label(text, box)) == whole  # nothing cut off at the edge


def test_a_label_wider_than_the_photo_is_drawn_smaller():
    small = draw_labels(np.full((60, 80, 3), GREY, np.uint8),
                        [((10, 10, 30, 30), "Александра Константинова 0.99", True)])
    green = (small[..., 1] > 150) & (small[..., 0] < 100)
    cols = np.flatnonzero(green.any(axis=0))
    assert cols.min() >= 0 and cols.max() <= 79 and _white(small) > 20


def test_put_text_clips_and_matches_draw_matches():
    img = np.zeros((30, 40, 3), np.uint8)
    put_text(img, "Ωμέγα", (-5, -3), 20)  # partly outside: no error, some ink
    assert img.max() == 255
    out = draw_matches(np.zeros((100, 100, 3), np.uint8),
                       [(Face(box=(20.0, 30.0, 40.0, 40.0), score=0.9), Match("Ωμέγα", 0.5))])
    assert _white(out) > 30
