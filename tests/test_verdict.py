"""Verdicts instead of raw scores."""

import pytest

from facerec.enrolcheck import batch_duplicates, concerns, name_key, Resemblance, similar_names
from facerec.types import Match
from facerec.verdict import verdict


@pytest.mark.parametrize("match, threshold, kind, label", [
    (Match("Ann", 0.975), 0.94, "match", "Ann"),
    (Match("Ann", 0.945), 0.94, "possible match", "Ann?"),
    (Match("unknown", 0.935), 0.94, "unknown", "unknown"),
    (Match("Ann", 0.60), 0.37, "match", "Ann"),
    (Match("Ann", 0.45), 0.37, "possible match", "Ann?"),
])
def test_verdicts_are_relative_to_the_threshold(match, threshold, kind, label):
    v = verdict(match, threshold)
    assert (v.kind, v.label) == (kind, label)
    assert f"{match.score:.3f}" in v.detail and f"{threshold:.3f}" in v.detail


def test_a_strangers_score_is_never_the_headline():
    v = verdict(Match("unknown", 0.9), 0.94)
    assert v.headline == "unknown" and "0.9" not in v.headline
    assert v.detail == "closest similarity 0.900, below the threshold 0.940"


def test_names_differing_in_case_accents_or_spaces():
    assert name_key("  Zoë   MARTIN ") == name_key("zoe martin")
    assert similar_names("benjamin affleck", ["Benjamin Affleck", "Ben Affleck"]) == ["Benjamin Affleck"]
    assert similar_names("Ann", ["Ann"]) == []


def test_batch_duplicates_and_concerns():
    assert batch_duplicates(["a", "b", "a", "a"]) == {2: 0, 3: 0}
    assert concerns(Resemblance("Ben", 0.97, 0.5), "Madonna", 0.94) == ["This looks like Ben (0.97), not Madonna."]
    assert concerns(Resemblance("Madonna", 0.97, 0.97), "Madonna", 0.94) == []
    assert "does not look like Elton's" in concerns(Resemblance("Elton", 0.6, 0.6), "Elton", 0.94)[0]
    assert concerns(Resemblance(None, 0.0, None), "Ann", 0.94) == []
