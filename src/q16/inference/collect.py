"""The run-level reduction: every finished shard -> ``flagged.csv``, ``errors.jsonl``, counts.

Runs on rank 0 once all ranks are done, and again on every resume, so the run-level files
always describe every shard finished so far, whichever run scored it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from q16.fileio import atomic_write_text
from q16.inference.flagged import flagged_sorter
from q16.inference.writer import SCHEMA
from q16.outdir import (
    ERRORS_FILE,
    FLAGGED_COLUMNS,
    FLAGGED_FILE,
    UNKNOWN_CLASS,
    scores_path,
    shard_errors_path,
)

FLAGGED_SCHEMA = pa.schema([SCHEMA.field(c) for c in FLAGGED_COLUMNS])
"""Columns and types of ``flagged.csv``: those of the scores, in ``FLAGGED_COLUMNS`` order."""


@dataclass(frozen=True)
class RunCounts:
    """What ``collect`` counted over the finished shards (the counts of ``summary.json``)."""

    images_scored: int
    images_flagged: int
    errors: int
    """Lines of ``errors.jsonl``."""
    per_class: dict[str, dict[str, int]]
    """Class name (``UNKNOWN_CLASS`` if none) -> ``{"scored": n, "flagged": n}``, sorted."""
    shards_done: int


def collect(
    out_dir: Path, shards: Iterable[str], max_flagged_in_memory: int = 1_000_000
) -> RunCounts:
    """Counts over every finished shard; writes ``flagged.csv`` and ``errors.jsonl``.

    Reads one shard at a time; flagged rows beyond ``max_flagged_in_memory`` are sorted on
    disk (``q16.inference.flagged``), so memory does not grow with the dataset.
    ``errors.jsonl`` also lists the last failure of shards not done (unreadable: retried).
    """
    scored = shards_done = 0
    per_class: dict[str, dict[str, int]] = {}
    error_lines: list[str] = []
    with flagged_sorter(FLAGGED_SCHEMA, out_dir, max_flagged_in_memory) as flagged:
        for shard in shards:
            path = scores_path(out_dir, shard)
            errors = shard_errors_path(out_dir, shard)
            if not path.is_file():
                if errors.is_file():  # could not be read: not done, retried by the next run
                    error_lines.extend(errors.read_text().splitlines(keepends=True))
                continue
            shards_done += 1
            table = pq.read_table(path)
            scored += table.num_rows
            _count_classes(table, per_class)
            flagged.add(table.filter(table["flagged"]))
            if errors.is_file():
                error_lines.extend(errors.read_text().splitlines(keepends=True))
        flagged.write_csv(out_dir / FLAGGED_FILE)
    atomic_write_text(out_dir / ERRORS_FILE, "".join(error_lines))
    return RunCounts(
        images_scored=scored,
        images_flagged=flagged.rows,
        errors=len(error_lines),
        per_class=dict(sorted(per_class.items())),
        shards_done=shards_done,
    )


def _count_classes(table: pa.Table, per_class: dict[str, dict[str, int]]) -> None:
    """Add one shard's scored and flagged counts per class name (none: UNKNOWN_CLASS)."""
    grouped = table.group_by("class_name").aggregate([("flagged", "count"), ("flagged", "sum")])
    for row in grouped.to_pylist():
        entry = per_class.setdefault(
            row["class_name"] or UNKNOWN_CLASS, {"scored": 0, "flagged": 0}
        )
        entry["scored"] += int(row["flagged_count"])
        entry["flagged"] += int(row["flagged_sum"] or 0)
