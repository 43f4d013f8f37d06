"""The curator's review sheet: written for a run, read back by one reader for ``q16 apply``,
``q16 next`` and ``train.py data=review``, so every consumer refuses the same bad sheets with
the same words."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from q16.errors import Q16Error
from q16.fileio import atomic_path
from q16.review.run import (
    FLAGGED_COLUMNS,
    TEXT_COLUMNS,
    InferenceRun,
    carried_columns,
    meta_columns,
)
from q16.spreadsheet import read_text_csv, write_text_csv

DECISIONS = ("keep", "remove", "unsure")
"""What a curator may write in ``decision`` (blank = not reviewed yet)."""


def read_review(path: str | Path) -> pd.DataFrame:
    """A filled-in review, all cells exact strings, decisions normalised to lower case."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise Q16Error(f"{path}: review file not found")
    review = read_text_csv(path)
    missing = {"decision", "key", "shard"} - set(review.columns)
    if missing:
        raise Q16Error(f"{path}: missing column(s) {', '.join(sorted(missing))}; not a review.csv")
    review["decision"] = review["decision"].str.strip().str.lower()
    bad = review[~review["decision"].isin([*DECISIONS, ""])]
    if not bad.empty:
        lines = ", ".join(f"line {i + 2}: {d!r}" for i, d in bad["decision"].head(3).items())
        raise Q16Error(
            f"{path}: {len(bad)} invalid decision(s) ({lines}); use keep, remove, unsure or blank"
        )
    return review


REVIEW_COLUMNS = ("decision", *FLAGGED_COLUMNS, "note")


def write_review(run: InferenceRun, path: Path) -> Path:
    """The flagged rows with empty ``decision`` and ``note`` columns for the curator, and the
    dataset's own fields (``meta_*``: caption, url ...) so the text that came with an image is
    reviewed with it."""
    meta = meta_columns(run.flagged)
    review = run.flagged.reindex(columns=[*FLAGGED_COLUMNS, *carried_columns(run.flagged)])
    review = review.copy()
    review.insert(0, "decision", "")
    review["note"] = ""
    with atomic_path(path) as tmp:
        write_text_csv(review, tmp, [*TEXT_COLUMNS, *meta], float_format="%.6f")
    return path


def check_not_filled_in(path: Path) -> None:
    """Refuse to overwrite a review that a curator has started filling in."""
    if not path.is_file():
        return
    try:
        old = read_text_csv(path)
    except Q16Error:
        return  # not a review anyone can apply: nothing to lose
    filled = sum(
        (old[column].str.strip() != "").sum() for column in ("decision", "note") if column in old
    )
    if filled:
        raise Q16Error(
            f"{path} holds {filled} filled-in decision/note cell(s); apply it with q16 apply "
            "or move it away before writing a new report there (or pass --report-dir)"
        )
