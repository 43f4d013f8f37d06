"""The curator's loop: ``review.csv`` out, decisions in, a filtered key list back.

``review.csv`` lists the flagged images (highest score first) with an empty ``decision``
column. A curator writes ``keep``, ``remove`` or ``unsure`` per row (blank = not reviewed yet).
:func:`apply_review` then writes, next to the review unless told otherwise:

- ``keys_remove.csv`` — ``shard,key`` of every image decided ``remove``: the blocklist.
- ``keys_keep.csv`` — ``shard,key`` of every *scored* image not decided ``remove``: the
  allowlist of the filtered dataset. Only a human ``remove`` removes an image; ``unsure`` and
  unreviewed rows stay in and are counted, so the curator sees what is still open.

Keys are written with their shard because webdataset keys need only be unique within a shard.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from q16.errors import Q16Error
from q16.report.inputs import FLAGGED_COLUMNS, InferenceRun

log = logging.getLogger(__name__)

DECISIONS = ("keep", "remove", "unsure")
REVIEW_COLUMNS = ("decision", *FLAGGED_COLUMNS, "note")


def write_review(run: InferenceRun, path: Path) -> Path:
    """The flagged rows with empty ``decision`` and ``note`` columns for the curator."""
    review = run.flagged.reindex(columns=list(FLAGGED_COLUMNS)).copy()
    review.insert(0, "decision", "")
    review["note"] = ""
    review.to_csv(path, index=False, float_format="%.6f")
    return path


@dataclass(frozen=True)
class ReviewOutcome:
    """Counts of one applied review and where the key lists went."""

    reviewed: int
    keep: int
    remove: int
    unsure: int
    undecided: int
    keep_path: Path
    remove_path: Path
    n_keep_keys: int

    def describe(self) -> str:
        return (
            f"review of {self.reviewed} flagged images: {self.remove} remove, {self.keep} keep, "
            f"{self.unsure} unsure, {self.undecided} undecided -> {self.remove_path} "
            f"({self.remove} keys), {self.keep_path} ({self.n_keep_keys} keys)"
        )


def read_review(path: str | Path) -> pd.DataFrame:
    """A filled-in review, decisions normalised to lower case; bad values are a Q16Error."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise Q16Error(f"{path}: review file not found")
    try:
        review = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise Q16Error(f"{path}: not a readable CSV ({err})") from err
    missing = {"decision", "key", "shard"} - set(review.columns)
    if missing:
        raise Q16Error(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    review["decision"] = review["decision"].str.strip().str.lower()
    bad = review[~review["decision"].isin([*DECISIONS, ""])]
    if not bad.empty:
        lines = ", ".join(f"line {i + 2}: {d!r}" for i, d in bad["decision"].head(3).items())
        raise Q16Error(
            f"{path}: {len(bad)} invalid decision(s) ({lines}); use keep, remove, unsure or blank"
        )
    return review


def apply_review(
    run: InferenceRun, review_path: str | Path, out_dir: Path | None = None
) -> ReviewOutcome:
    """Write ``keys_remove.csv`` and ``keys_keep.csv`` (see module docstring)."""
    review = read_review(review_path)
    scored = run.scores(("shard", "key")).astype(str)
    known = set(zip(scored["shard"], scored["key"], strict=True))
    pairs = list(zip(review["shard"], review["key"], strict=True))
    unknown = [f"{s}/{k}" for s, k in pairs if (s, k) not in known]
    if unknown:
        raise Q16Error(
            f"{review_path}: {len(unknown)} row(s) are not images of {run.out_dir} "
            f"(first: {unknown[0]}); was the review made for another run?"
        )
    counts = review["decision"].value_counts()
    remove = review.loc[review["decision"] == "remove", ["shard", "key"]].drop_duplicates()
    removed = set(zip(remove["shard"], remove["key"], strict=True))
    keep_mask = [pair not in removed for pair in zip(scored["shard"], scored["key"], strict=True)]
    keep = scored.loc[keep_mask, ["shard", "key"]]
    target = Path(out_dir) if out_dir else Path(review_path).expanduser().parent
    target.mkdir(parents=True, exist_ok=True)
    remove_path, keep_path = target / "keys_remove.csv", target / "keys_keep.csv"
    remove.to_csv(remove_path, index=False)
    keep.to_csv(keep_path, index=False)
    outcome = ReviewOutcome(
        reviewed=len(review),
        keep=int(counts.get("keep", 0)),
        remove=len(remove),
        unsure=int(counts.get("unsure", 0)),
        undecided=int(counts.get("", 0)),
        keep_path=keep_path,
        remove_path=remove_path,
        n_keep_keys=len(keep),
    )
    if outcome.undecided or outcome.unsure:
        log.warning(
            "%d flagged images are unsure or not reviewed yet; they stay in keys_keep.csv",
            outcome.undecided + outcome.unsure,
        )
    return outcome
