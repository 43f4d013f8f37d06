"""A curator's review sheet read back: one reader for ``--apply-review``, ``--next-batch`` and
``train.py data=review``, so every consumer refuses the same bad sheets with the same words."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from q16.errors import Q16Error
from q16.spreadsheet import read_text_csv

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
