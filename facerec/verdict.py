"""What a match means to a person: a verdict relative to the recognition threshold.

A match score is a cosine similarity, and where scores fall depends on the base network
(face-resnet's strangers score 0.90-0.95 and its enrolled people 0.94-0.985; resnet50's
spread over most of [0, 1]). So the app never shows a raw score on its own: it says

- ``match``: the best person scores clearly above the threshold (by at least a third of
  the way from the threshold to 1);
- ``possible match``: the best person scores at or above the threshold, but only just;
- ``unknown``: below the threshold (a stranger), whatever the similarity.

with the similarity beside it in small type. Nothing here touches Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass

from facerec.types import Match

MATCH, POSSIBLE, UNKNOWN_VERDICT = "match", "possible match", "unknown"


def margin(threshold: float) -> float:
    """How far above ``threshold`` a score must be to count as a sure match: a third of the
    way to 1, at least 0.01 (face-resnet at 0.94: 0.02; resnet50 at 0.37: 0.21)."""
    return max(0.01, (1.0 - threshold) / 3.0)


@dataclass(frozen=True)
class Verdict:
    """A match explained.

    Attributes:
        name: the person, or ``"unknown"``.
        kind: ``"match"``, ``"possible match"`` or ``"unknown"``.
        score: the similarity, in [0, 1].
        threshold: the threshold it was judged against.
    """

    name: str
    kind: str
    score: float
    threshold: float

    @property
    def known(self) -> bool:
        return self.kind != UNKNOWN_VERDICT

    @property
    def sure(self) -> bool:
        return self.kind == MATCH

    @property
    def label(self) -> str:
        """What is drawn in the photo: ``"Ann Lee"``, ``"Ann Lee?"`` or ``"unknown"``."""
        if self.kind == MATCH:
            return self.name
        return f"{self.name}?" if self.kind == POSSIBLE else "unknown"

    @property
    def headline(self) -> str:
        """One line for a list: ``"Ann Lee — match"``, ``"Ann Lee? — possible match"``, ``"unknown"``."""
        return "unknown" if self.kind == UNKNOWN_VERDICT else f"{self.label} — {self.kind}"

    @property
    def detail(self) -> str:
        """The similarity in small type, relative to the threshold."""
        where = "below" if self.kind == UNKNOWN_VERDICT else "above"
        what = "closest similarity" if self.kind == UNKNOWN_VERDICT else "similarity"
        return f"{what} {self.score:.3f}, {where} the threshold {self.threshold:.3f}"


def verdict(match: Match, threshold: float) -> Verdict:
    """The verdict of one match against ``threshold`` (the recogniser's, calibrated or set)."""
    if not match.known or match.score < threshold:
        return Verdict("unknown", UNKNOWN_VERDICT, float(match.score), float(threshold))
    kind = MATCH if match.score >= threshold + margin(threshold) else POSSIBLE
    return Verdict(match.name, kind, float(match.score), float(threshold))
