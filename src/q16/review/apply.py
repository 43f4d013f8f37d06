"""Decisions in, a filtered key list back: a filled-in review sheet applied to its run.

``review.csv`` (:mod:`q16.review.sheet`) lists the flagged images (highest score first) with an
empty ``decision`` column. A curator writes ``keep``, ``remove`` or ``unsure`` per row (blank =
not reviewed yet).
:func:`apply_review` then writes, next to the review unless told otherwise:

- ``keys_remove.csv`` — ``shard,key`` of every image decided ``remove``: the blocklist.
- ``keys_keep.csv`` — ``shard,key`` of every *scored* image not decided ``remove``: the
  allowlist of the filtered dataset. Only a human ``remove`` removes an image; ``unsure`` and
  unreviewed rows stay in and are counted, so the curator sees what is still open.

An audit review (``q16 audit OUT -n N``: a stratified sample over every scored image, ``audit.json``
beside it; see :mod:`q16.review.audit`) is applied the same way and also gives estimates with
95 % intervals (:mod:`q16.review.estimates`), written to ``estimates.json``; it must belong to
this run and this audit, and hold at least one keep/remove decision.

Keys are written with their shard because webdataset keys need only be unique within a shard.
Every file here is meant for spreadsheets: text cells that a spreadsheet would run as a formula
get a leading quote (``q16.spreadsheet``), and the review is read back to the exact keys: with
or without that quote, never ``NA`` or ``null`` turned into blanks. A review with two different
decisions for one image, or keys a spreadsheet turned into numbers (``000123`` -> ``123``), is
refused with a message that says so.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from q16.fileio import atomic_path
from q16.review.audit_files import estimates_for_review
from q16.review.estimates import Estimates
from q16.review.match import match_images, one_decision_per_image
from q16.review.questions import EXTRA_QUESTIONS
from q16.review.run import InferenceRun
from q16.review.sheet import read_review
from q16.review.versions import shard_versions
from q16.spreadsheet import write_text_csv

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReviewOutcome:
    """Counts (per image) of one applied review and where the key lists went."""

    reviewed: int
    keep: int
    remove: int
    unsure: int
    undecided: int
    keep_path: Path
    remove_path: Path
    n_keep_keys: int
    estimates: Estimates | None = None
    """From an audit review (``audit.json`` beside it); None for a review of the flags."""
    estimates_path: Path | None = None

    def describe(self) -> str:
        what = "audit sample" if self.estimates else "flagged"
        text = (
            f"review of {self.reviewed} {what} images: {self.remove} remove, {self.keep} keep, "
            f"{self.unsure} unsure, {self.undecided} undecided -> {self.remove_path} "
            f"({self.remove} keys), {self.keep_path} ({self.n_keep_keys} keys)"
        )
        prevalence = self.estimates.prevalence if self.estimates else None
        if prevalence is not None:
            text += (
                f"\nestimated share inappropriate: {100 * prevalence.share:.2f} % (95 % CI "
                f"{100 * prevalence.low:.2f}-{100 * prevalence.high:.2f} %) "
                f"-> {self.estimates_path}"
            )
        for question in EXTRA_QUESTIONS:
            other = self.estimates.questions.get(question.column) if self.estimates else None
            if other is not None and other.prevalence is not None:
                p = other.prevalence
                text += (
                    f"\nestimated share that {question.text}: {100 * p.share:.2f} % (95 % CI "
                    f"{100 * p.low:.2f}-{100 * p.high:.2f} %, {p.decided} answers)"
                )
        return text


def apply_review(
    run: InferenceRun, review_path: str | Path, out_dir: Path | None = None
) -> ReviewOutcome:
    """Write ``keys_remove.csv`` and ``keys_keep.csv`` (see module docstring)."""
    review = read_review(review_path)
    scored = run.scores(("shard", "key")).fillna("").astype(str)
    images = list(zip(scored["shard"], scored["key"], strict=True))
    versions = shard_versions(run.score_files)
    matched = match_images(review, set(images), f"{review_path}", run.out_dir, versions=versions)
    decisions = one_decision_per_image(matched, review["decision"].tolist(), f"{review_path}")
    answers = {
        q.column: one_decision_per_image(matched, review[q.column].tolist(), f"{review_path}")
        for q in EXTRA_QUESTIONS
        if q.column in review.columns
    }
    estimates = estimates_for_review(
        run, Path(review_path).expanduser(), list(review.columns), decisions, len(images), answers
    )
    removed = {image for image, decision in decisions.items() if decision == "remove"}
    counts = Counter(decisions.values())
    remove = pd.DataFrame(sorted(removed), columns=["shard", "key"])
    keep = scored.loc[[image not in removed for image in images], ["shard", "key"]]
    target = Path(out_dir) if out_dir else Path(review_path).expanduser().parent
    target.mkdir(parents=True, exist_ok=True)
    remove_path, keep_path = target / "keys_remove.csv", target / "keys_keep.csv"
    for frame, path in ((remove, remove_path), (keep, keep_path)):
        with atomic_path(path) as tmp:
            write_text_csv(frame, tmp)
    estimates_path = None
    if estimates is not None:
        estimates_path = target / "estimates.json"
        with atomic_path(estimates_path) as tmp:
            tmp.write_text(json.dumps(estimates.to_json(), indent=1) + "\n", encoding="utf-8")
    outcome = ReviewOutcome(
        reviewed=len(decisions),
        keep=counts["keep"],
        remove=len(removed),
        unsure=counts["unsure"],
        undecided=counts[""],
        keep_path=keep_path,
        remove_path=remove_path,
        n_keep_keys=len(keep),
        estimates=estimates,
        estimates_path=estimates_path,
    )
    if outcome.undecided or outcome.unsure:
        log.warning(
            "%d reviewed images are unsure or not decided yet; they stay in keys_keep.csv",
            outcome.undecided + outcome.unsure,
        )
    return outcome
