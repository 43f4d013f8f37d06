"""The questions an audit sheet asks a person about each sampled image.

The first is Question 16's (``decision``: remove = inappropriate, keep = not). A run with a
faces head adds a second (``person``: does the image show an identifiable person?), for the
datasheet's "is it possible to identify individuals?". The audit's design and estimator are
the same for every question: the answers are just another column of the same sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Question:
    column: str
    text: str
    yes: str
    no: str
    unsure: str = "unsure"

    @property
    def answers(self) -> tuple[str, str, str]:
        return (self.yes, self.no, self.unsure)


Q16 = Question("decision", "might be offensive or otherwise inappropriate", "remove", "keep")
PERSON = Question("person", "contains an identifiable person", "yes", "no")
EXTRA_QUESTIONS = (PERSON,)
"""Asked beside ``decision`` when the run has the detector head they are about."""


def asks_person(summary: Mapping[str, Any]) -> bool:
    """Whether the run had a face detector head (so its audit asks about people)."""
    heads = summary.get("heads")
    return isinstance(heads, list) and any(
        isinstance(h, dict) and h.get("topic") == "faces" for h in heads
    )
