"""The curator's review sheet: written for a run, read back by one reader for ``q16 apply``,
``q16 next`` and ``train.py data=review``, so every consumer refuses the same bad sheets with
the same words.

A sheet may hold days of decisions. q16 replaces one only when it is provably its own blank
sheet: stored as q16 writes it (UTF-8, commas), with only the columns q16 writes and no
decision or note filled in. Anything else, a sheet that cannot be read included, is refused,
never replaced. Read back, a sheet saved by a spreadsheet (``;`` separator, a byte-order mark,
UTF-16, Windows-1252) is read as it was meant (``q16.spreadsheet``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from q16.errors import Q16Error
from q16.fileio import atomic_path
from q16.outdir import META_PREFIX
from q16.review.questions import EXTRA_QUESTIONS
from q16.review.run import (
    FLAGGED_COLUMNS,
    TEXT_COLUMNS,
    InferenceRun,
    carried_columns,
    is_head_column,
    meta_columns,
)
from q16.review.versions import VERSION_COLUMN, shard_versions
from q16.spreadsheet import SAVE_AS, read_header, read_sheet, write_text_csv
from q16.text import clean

DECISIONS = ("keep", "remove", "unsure")
"""What a curator may write in ``decision`` (blank = not reviewed yet)."""


REQUIRED = ("decision", "key", "shard")
DESIGN_COLUMNS = ("stratum", "stratum_size", "inclusion_probability")
"""What an audit sheet adds to each row (``q16.review.audit_files``)."""


def read_review(path: str | Path) -> pd.DataFrame:
    """A filled-in review, all cells exact strings, decisions normalised to lower case."""
    path = Path(path).expanduser()
    if not path.exists():
        raise Q16Error(f"{path}: review file not found")
    review = read_sheet(path, REQUIRED).frame
    missing = set(REQUIRED) - set(review.columns)
    if missing:
        header = clean(", ".join(map(str, review.columns)), 80)
        raise Q16Error(
            f"{path}: missing column(s) {', '.join(sorted(missing))} (header read as: "
            f"{header}); not a review sheet. If a spreadsheet saved it, {SAVE_AS}"
        )
    review["decision"] = review["decision"].str.strip().str.lower()
    bad = review[~review["decision"].isin([*DECISIONS, ""])]
    if not bad.empty:
        lines = ", ".join(f"line {i + 2}: {d!r}" for i, d in bad["decision"].head(3).items())
        raise Q16Error(
            f"{path}: {len(bad)} invalid decision(s) ({lines}); use keep, remove, unsure or blank"
        )
    for question in EXTRA_QUESTIONS:
        if question.column in review.columns:
            column = review[question.column].str.strip().str.lower()
            review[question.column] = column
            wrong = column[~column.isin([*question.answers, ""])]
            if not wrong.empty:
                lines = ", ".join(f"line {i + 2}: {d!r}" for i, d in wrong.head(3).items())
                raise Q16Error(
                    f"{path}: {len(wrong)} invalid answer(s) in {question.column} ({lines}); "
                    f"use {', '.join(question.answers)} or blank ({question.text}?)"
                )
    return review


REVIEW_COLUMNS = ("decision", *FLAGGED_COLUMNS, "note")


def write_review(run: InferenceRun, path: Path) -> Path:
    """The flagged rows with empty ``decision`` and ``note`` columns for the curator, and the
    dataset's own fields (``meta_*``: caption, url ...) so the text that came with an image is
    reviewed with it; each row's ``shard_version`` binds its decision to this scoring."""
    meta = meta_columns(run.flagged)
    review = run.flagged.reindex(columns=[*FLAGGED_COLUMNS, *carried_columns(run.flagged)])
    review.insert(0, "decision", "")
    review["note"] = ""
    write_sheet(with_versions(review, shard_versions(run.score_files)), path, meta, "%.6f")
    return path


def with_versions(frame: pd.DataFrame, versions: Mapping[str, str]) -> pd.DataFrame:
    """``frame`` with the last column ``shard_version`` (:mod:`q16.review.versions`)."""
    frame = frame.copy()
    frame[VERSION_COLUMN] = [versions.get(str(shard), "") for shard in frame["shard"]]
    return frame


def write_sheet(frame: pd.DataFrame, path: Path, meta: list[str], float_format: str) -> None:
    """A review sheet, atomically, its text cells safe for spreadsheets."""
    with atomic_path(path) as tmp:
        write_text_csv(frame, tmp, [*TEXT_COLUMNS, *meta], float_format=float_format)


def read_review_header(path: Path) -> list[str]:
    """The column names of a sheet (read as :func:`read_review` reads it), from its first
    line only: a folder's key lists of 10^8 rows are not parsed to learn their columns."""
    return read_header(path, REQUIRED)


def check_replaceable(path: Path) -> None:
    """Refuse to replace ``path`` unless it is missing or provably q16's own blank sheet.

    Raises:
        Q16Error: not a file, unreadable, stored or shaped otherwise than q16 writes it, or
            holding a decision or a note.
    """
    if not path.exists() and not path.is_symlink():
        return
    keep = "apply it with q16 apply, or move it away (or pass --report-dir)"
    if not path.is_file():
        raise Q16Error(f"{path} exists and is not a file; move it away (or pass --report-dir)")
    try:
        sheet = read_sheet(path, REQUIRED)
    except Q16Error as err:
        raise Q16Error(
            f"{path} cannot be read as a review sheet ({err}), so it may hold decisions: "
            "q16 does not replace it; move it away (or pass --report-dir)"
        ) from None
    columns = [str(c) for c in sheet.frame.columns]
    foreign = [c for c in columns if not _q16_column(c)]
    if not sheet.as_q16_writes or columns[:1] != ["decision"] or foreign:
        how = f"saved as {sheet.encoding}, separator {sheet.separator!r}"
        if foreign:
            how = f"column(s) q16 does not write: {clean(', '.join(foreign[:3]), 80)}"
        raise Q16Error(f"{path} is not a blank sheet as q16 writes it ({how}); {keep}")
    answered = ("decision", "note", *(q.column for q in EXTRA_QUESTIONS))
    filled = sum(int((sheet.frame[c].str.strip() != "").sum()) for c in answered if c in columns)
    if filled:
        raise Q16Error(f"{path} holds {filled} filled-in decision/note cell(s); {keep}")


def _q16_column(name: str) -> bool:
    known = {"decision", "note", VERSION_COLUMN, *FLAGGED_COLUMNS, *DESIGN_COLUMNS}
    known |= {q.column for q in EXTRA_QUESTIONS}
    return name in known or name.startswith(META_PREFIX) or is_head_column(name)
