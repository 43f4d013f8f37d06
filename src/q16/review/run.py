"""Read an inference out_dir: the contract between ``infer.py`` and the review loop.

An out_dir holds ``scores/<shard>.parquet`` (every scored image), ``flagged.csv`` (those at or
above the threshold, highest first), ``errors.jsonl`` (one ``{"key","shard","reason"}`` per
unreadable input) and ``summary.json`` (counts, timing, model, threshold, provenance).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from q16.errors import Q16Error
from q16.imageload import DEFAULT_MAX_BYTES
from q16.outdir import (
    ERRORS_FILE,
    FINGERPRINT_FILE,
    FLAGGED_COLUMNS,
    FLAGGED_FILE,
    META_PREFIX,
    SCORES_DIR,
    SUMMARY_FILE,
    UNKNOWN_CLASS,
)
from q16.spreadsheet import read_text_csv, restore_columns

__all__ = [
    "FLAGGED_COLUMNS",
    "UNKNOWN_CLASS",
    "Coverage",
    "InferenceRun",
    "coverage",
    "load_run",
    "per_class_table",
]

log = logging.getLogger(__name__)


@dataclass
class InferenceRun:
    """What the report needs from one out_dir; scores are read lazily, by column."""

    out_dir: Path
    summary: dict[str, Any]
    flagged: pd.DataFrame
    errors: list[dict[str, Any]]
    score_files: list[Path]

    @property
    def max_bytes(self) -> int:
        """The run's ``data.max_bytes`` (fingerprint.json): the largest image file it read."""
        try:
            value = json.loads((self.out_dir / FINGERPRINT_FILE).read_text(encoding="utf-8"))
            value = value.get("max_bytes") if isinstance(value, dict) else None
        except (OSError, ValueError):
            value = None
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        return int(value) if ok else DEFAULT_MAX_BYTES  # type: ignore[arg-type]

    @property
    def threshold(self) -> float:
        try:
            return float(self.summary.get("threshold", float("nan")))
        except (TypeError, ValueError):
            return float("nan")

    @property
    def random_weights(self) -> bool:
        """Trust the run's own flag (hub models have no tag but real weights); guess if absent."""
        if "random_weights" in self.summary:
            return bool(self.summary["random_weights"])
        return self.summary.get("pretrained") is None

    def scores(self, columns: tuple[str, ...] = ("p_inappropriate",)) -> pd.DataFrame:
        """The chosen columns of every scored image (all shards, in file order)."""
        frames = []
        for path in self.score_files:
            names = set(pq.read_schema(path).names)
            missing = set(columns) - names
            if missing:
                raise Q16Error(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            # pyarrow keeps strings as written; pandas' CSV-style NA guessing never runs
            frames.append(pq.read_table(path, columns=list(columns)).to_pandas())
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class Coverage:
    """Which images the report's numbers are about. A run whose images were not scored must
    never read as "0 flagged": every page and draft states what was not scored.

    ``unscored``: images without a score, unreadable or given no finite one. summary.json's
    ``images_unscored`` (the records of errors.jsonl about one input) when it is there, else
    those records counted here; plus any non-finite score in ``scores/`` (older runs wrote
    them as rows). ``shard_problems``: records about a whole shard (``key`` null: a cut or
    unopenable tar), which may hide images nobody counted.
    """

    scored: int
    flagged: int
    unscored: int
    shard_problems: int

    @property
    def total(self) -> int:
        return self.scored + self.unscored

    @property
    def complete(self) -> bool:
        return not self.unscored and not self.shard_problems

    def warning(self) -> str:
        """What every report and draft says when some images were not scored."""
        hidden = (
            f" {self.shard_problems:,} problem(s) with whole shards (cut or unopenable tars, see "
            "errors.jsonl) may hide more images."
            if self.shard_problems
            else ""
        )
        if not self.scored:
            return (
                f"NO IMAGE WAS SCORED: {self.unscored:,} images could not be scored (unreadable, "
                f"or no finite score).{hidden} This run says nothing about the dataset; check "
                "errors.jsonl and the prompt file, then run infer.py again."
            )
        if not self.unscored:
            return hidden.strip() + " Every count here covers only the scored images."
        return (
            f"{self.unscored:,} of {self.total:,} images were NOT scored (unreadable, or no "
            f"finite score): nothing is known about them, and every count here covers only "
            f"the {self.scored:,} scored images.{hidden}"
        )


def coverage(run: InferenceRun, scores: np.ndarray) -> Coverage:
    """Counts from the score files themselves, and from summary.json and errors.jsonl."""
    scores = np.asarray(scores, dtype=np.float64)
    nonfinite = int((~np.isfinite(scores)).sum())
    per_image = sum(err.get("key") is not None for err in run.errors)
    return Coverage(
        scored=int(scores.size) - nonfinite,
        flagged=_count(run.summary, "images_flagged", len(run.flagged)),
        unscored=_count(run.summary, "images_unscored", per_image) + nonfinite,
        shard_problems=len(run.errors) - per_image,
    )


def _count(summary: dict[str, Any], key: str, default: int) -> int:
    try:
        return int(summary.get(key, default))
    except (TypeError, ValueError):
        log.warning("summary.json: %s=%r is not a count; using %d", key, summary[key], default)
        return default


def load_run(out_dir: str | Path) -> InferenceRun:
    """Validate and read ``out_dir``; every problem a user can fix is a one-line Q16Error."""
    out = Path(out_dir).expanduser()
    if not out.is_dir():
        raise Q16Error(f"{out}: no such inference out_dir (run infer.py first, or check the path)")
    summary_path = out / SUMMARY_FILE
    if not summary_path.is_file():
        raise Q16Error(
            f"{out}: no summary.json — not a finished inference out_dir (infer.py writes it last)"
        )
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as err:
        raise Q16Error(f"{summary_path}: not valid JSON ({err.msg}, line {err.lineno})") from err
    if not isinstance(summary, dict):
        raise Q16Error(f"{summary_path}: expected a JSON object, got {type(summary).__name__}")
    flagged = _read_flagged(out / FLAGGED_FILE)
    score_files = sorted((out / SCORES_DIR).glob("*.parquet"))
    if not score_files:
        raise Q16Error(f"{out}: no scores/*.parquet (the per-shard score tables are missing)")
    return InferenceRun(out, summary, flagged, _read_errors(out / ERRORS_FILE), score_files)


TEXT_COLUMNS = ("key", "shard", "source", "file_name", "class_name")
"""Columns of ``flagged.csv`` that hold text from the dataset (neutralised for spreadsheets);
so do the ``meta_<column>`` columns a run carried from the dataset (``data.meta_columns``)."""


def meta_columns(frame: pd.DataFrame) -> list[str]:
    """The dataset's own fields carried with each score (url, caption, ...), in file order."""
    return [str(c) for c in frame.columns if str(c).startswith(META_PREFIX)]


def is_head_column(name: str) -> bool:
    """``p_<head>`` / ``flagged_<head>`` of a ``heads:`` run (``p_inappropriate`` is the
    primary head's own column, already among the flagged columns)."""
    return (name.startswith("p_") and name != "p_inappropriate") or name.startswith("flagged_")


def carried_columns(frame: pd.DataFrame) -> list[str]:
    """What a review shows beside the flagged columns: every head's score and flag (so an
    image flagged by another head than the first says which), then the dataset's fields."""
    heads = [str(c) for c in frame.columns if is_head_column(str(c))]
    return [*heads, *meta_columns(frame)]


def _read_flagged(path: Path) -> pd.DataFrame:
    """Keys and names as the exact strings written (``NA``, ``null``, ``000123`` included)."""
    if not path.is_file():
        raise Q16Error(f"{path.parent}: no flagged.csv (the inference run did not finish)")
    flagged = read_text_csv(path)
    restore_columns(flagged, [*TEXT_COLUMNS, *meta_columns(flagged)])
    missing = set(FLAGGED_COLUMNS) - set(flagged.columns)
    if missing:
        raise Q16Error(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    flagged["class_name"] = flagged["class_name"].where(flagged["class_name"] != "", UNKNOWN_CLASS)
    flagged["file_name"] = flagged["file_name"].astype(object).where(flagged["file_name"] != "")
    flagged["file_name"] = flagged["file_name"].where(flagged["file_name"].notna(), None)
    flagged["class_id"] = pd.to_numeric(flagged["class_id"], errors="coerce").astype("Int64")
    flagged["p_inappropriate"] = pd.to_numeric(flagged["p_inappropriate"], errors="coerce")
    return flagged.sort_values("p_inappropriate", ascending=False, kind="stable").reset_index(
        drop=True
    )


def _read_errors(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    errors = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            errors.append(record)
        else:
            log.warning("%s:%d: not a JSON object, skipped", path, number)
    return errors


def per_class_table(run: InferenceRun) -> pd.DataFrame:
    """Scored and flagged counts per class, most flagged first, with the share of the class."""
    per_class = run.summary.get("per_class") or {}
    if not isinstance(per_class, dict):
        raise Q16Error(f"{run.out_dir / SUMMARY_FILE}: per_class is not a JSON object")
    rows = []
    for name, v in per_class.items():
        counts = v if isinstance(v, dict) else {}
        rows.append(
            {
                "class_name": str(name),
                "scored": _count(counts, "scored", 0),
                "flagged": _count(counts, "flagged", 0),
            }
        )
    table = pd.DataFrame(rows, columns=["class_name", "scored", "flagged"]).astype(
        {"class_name": object, "scored": np.int64, "flagged": np.int64}
    )
    table = table.groupby("class_name", as_index=False, sort=False).sum()
    scored = table["scored"].astype(np.float64)
    table["share_flagged"] = table["flagged"] / scored.where(scored > 0)
    return table.sort_values(["flagged", "share_flagged"], ascending=False).reset_index(drop=True)
