"""Read an inference out_dir: the contract between ``infer.py`` and the report.

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

import pandas as pd
import pyarrow.parquet as pq

from q16.errors import Q16Error
from q16.outdir import (
    ERRORS_FILE,
    FLAGGED_COLUMNS,
    FLAGGED_FILE,
    SCORES_DIR,
    SUMMARY_FILE,
    UNKNOWN_CLASS,
)

__all__ = [
    "FLAGGED_COLUMNS",
    "UNKNOWN_CLASS",
    "InferenceRun",
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
    def threshold(self) -> float:
        return float(self.summary.get("threshold", float("nan")))

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
            frames.append(pd.read_parquet(path, columns=list(columns)))
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        return pd.concat(frames, ignore_index=True)


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
    flagged = _read_flagged(out / FLAGGED_FILE)
    score_files = sorted((out / SCORES_DIR).glob("*.parquet"))
    if not score_files:
        raise Q16Error(f"{out}: no scores/*.parquet (the per-shard score tables are missing)")
    return InferenceRun(out, summary, flagged, _read_errors(out / ERRORS_FILE), score_files)


def _read_flagged(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise Q16Error(f"{path.parent}: no flagged.csv (the inference run did not finish)")
    flagged = pd.read_csv(path, dtype={"key": str, "shard": str, "source": str})
    missing = set(FLAGGED_COLUMNS) - set(flagged.columns)
    if missing:
        raise Q16Error(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    flagged["class_name"] = flagged["class_name"].fillna(UNKNOWN_CLASS).astype(str)
    flagged["file_name"] = (
        flagged["file_name"].astype(object).where(flagged["file_name"].notna(), None)
    )
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
            errors.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s:%d: not JSON, skipped", path, number)
    return errors


def per_class_table(run: InferenceRun) -> pd.DataFrame:
    """Scored and flagged counts per class, most flagged first, with the share of the class."""
    per_class = run.summary.get("per_class") or {}
    rows = [
        {"class_name": name, "scored": int(v.get("scored", 0)), "flagged": int(v["flagged"])}
        for name, v in per_class.items()
    ]
    table = pd.DataFrame(rows, columns=["class_name", "scored", "flagged"])
    table["class_name"] = table["class_name"].fillna(UNKNOWN_CLASS).astype(str)
    table = table.groupby("class_name", as_index=False, sort=False).sum(min_count=1)
    scored = pd.to_numeric(table["scored"], errors="coerce")
    table["share_flagged"] = table["flagged"] / scored.where(scored > 0)
    return table.sort_values(["flagged", "share_flagged"], ascending=False).reset_index(drop=True)
