"""The run-level reduction: every finished shard -> ``flagged.csv``, ``errors.jsonl``, counts.

Runs on rank 0 once all ranks are done, and again on every resume, so the run-level files
always describe every shard finished so far, whichever run scored it. Flags are derived here
from ``p_inappropriate`` and this run's threshold, never taken on trust from a parquet: a
shard whose stored ``flagged`` column disagrees (scored at another threshold) is rewritten.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from q16.fileio import atomic_path, atomic_write_text
from q16.inference.flagged import flagged_sorter
from q16.inference.writer import SCHEMA, head_columns, scores_schema
from q16.outdir import (
    ERRORS_FILE,
    FLAGGED_COLUMNS,
    FLAGGED_FILE,
    UNKNOWN_CLASS,
    scores_path,
    shard_errors_path,
)
from q16.sources.base import INCOMPLETE_FIELD, unscored_images

log = logging.getLogger(__name__)

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
    images_unscored: int = 0
    """Inputs that were not scored: one per record of ``errors.jsonl`` about one input (``key``
    set), and the rows a record of a whole file counts (``images``: a cut ``.npy``). Problems
    of a whole tar (``key`` null: cut, unopenable) may hide more."""
    shards_incomplete: list[str] = field(default_factory=list)
    """Shards whose file ends before its end (a tar without its end-of-archive marker, a cut
    ``.npy``): what they hold beyond the cut was never seen."""
    heads_flagged: dict[str, int] = field(default_factory=dict)
    """``heads:`` name -> images it flagged (empty without ``heads:``)."""
    images_flagged_any_head: int = 0
    """Rows of ``flagged.csv``: images flagged by any head (= ``images_flagged`` with one)."""
    heads_per_class: dict[str, dict[str, int]] = field(default_factory=dict)
    """``heads:`` name -> class name -> images it flagged (faces per class, as ImageNet's
    face-obfuscation table)."""


def collect(
    out_dir: Path,
    shards: Iterable[str],
    max_flagged_in_memory: int = 1_000_000,
    *,
    threshold: float,
    meta_columns: tuple[str, ...] = (),
    heads: tuple[tuple[str, float], ...] = (),
    unlisted: frozenset[str] = frozenset(),
) -> RunCounts:
    """Counts over every finished shard; writes ``flagged.csv`` and ``errors.jsonl``.

    Reads one shard at a time; flagged rows beyond ``max_flagged_in_memory`` are sorted on
    disk (``q16.inference.flagged``), so memory does not grow with the dataset.
    ``errors.jsonl`` also lists the last failure of shards not done (unreadable: retried).
    With ``heads`` (name, threshold): each head's flags are derived at its threshold, and
    ``flagged.csv`` holds the images flagged by any head, with every head's columns, except
    for heads in ``unlisted`` (the faces head: counted, not a flag to review).
    """
    scored = shards_done = primary_flagged = 0
    heads_flagged = {name: 0 for name, _ in heads}
    heads_per_class: dict[str, dict[str, int]] = {name: {} for name, _ in heads}
    per_class: dict[str, dict[str, int]] = {}
    error_lines: list[str] = []
    names = tuple(name for name, _ in heads)
    extra = [f for f in scores_schema(meta_columns, names) if f.name not in SCHEMA.names]
    schema = pa.schema(list(FLAGGED_SCHEMA) + extra)
    with flagged_sorter(schema, out_dir, max_flagged_in_memory) as flagged:
        for shard in shards:
            path = scores_path(out_dir, shard)
            errors = shard_errors_path(out_dir, shard)
            table = _read_scores(path, threshold, heads)
            if table is None:
                if errors.is_file():  # could not be read: not done, retried by the next run
                    error_lines.extend(errors.read_text().splitlines(keepends=True))
                continue
            shards_done += 1
            scored += table.num_rows
            _count_classes(table, per_class)
            any_head = table["flagged"]
            primary_flagged += int(pc.sum(any_head).as_py() or 0)
            for name, _ in heads:
                column = table[head_columns(name)[1]]
                heads_flagged[name] += int(pc.sum(column).as_py() or 0)
                _count_head_classes(table, head_columns(name)[1], heads_per_class[name])
                if name not in unlisted:  # a face is counted, not content to review
                    any_head = pc.or_(any_head, column)
            flagged.add(table.filter(any_head))
            if errors.is_file():
                error_lines.extend(errors.read_text().splitlines(keepends=True))
        flagged.write_csv(out_dir / FLAGGED_FILE)
    atomic_write_text(out_dir / ERRORS_FILE, "".join(error_lines))
    records = [_record(line) for line in error_lines]
    return RunCounts(
        images_scored=scored,
        images_flagged=primary_flagged,
        errors=len(error_lines),
        images_unscored=sum(unscored_images(record) for record in records),
        shards_incomplete=sorted({str(r.get("shard")) for r in records if r.get(INCOMPLETE_FIELD)}),
        per_class=dict(sorted(per_class.items())),
        shards_done=shards_done,
        heads_flagged=heads_flagged,
        images_flagged_any_head=flagged.rows,
        heads_per_class={k: dict(sorted(v.items())) for k, v in heads_per_class.items()},
    )


def _count_head_classes(table: pa.Table, column: str, counts: dict[str, int]) -> None:
    grouped = table.group_by("class_name").aggregate([(column, "sum")])
    for row in grouped.to_pylist():
        name = row["class_name"] or UNKNOWN_CLASS
        counts[name] = counts.get(name, 0) + int(row[f"{column}_sum"] or 0)


def _record(line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _count_classes(table: pa.Table, per_class: dict[str, dict[str, int]]) -> None:
    """Add one shard's scored and flagged counts per class name (none: UNKNOWN_CLASS)."""
    grouped = table.group_by("class_name").aggregate([("flagged", "count"), ("flagged", "sum")])
    for row in grouped.to_pylist():
        entry = per_class.setdefault(
            row["class_name"] or UNKNOWN_CLASS, {"scored": 0, "flagged": 0}
        )
        entry["scored"] += int(row["flagged_count"])
        entry["flagged"] += int(row["flagged_sum"] or 0)


def _read_scores(
    path: Path, threshold: float, heads: tuple[tuple[str, float], ...] = ()
) -> pa.Table | None:
    """A done shard's rows with ``flagged`` = p >= threshold, and each head's flags at its
    own (rewritten where they were not); None if the shard is not done or its parquet cannot
    be read (the next run scores it)."""
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
    except Exception as err:  # ArrowInvalid / OSError: cut or corrupt since it was committed
        log.warning("%s is unreadable (%s): not counted; re-run to score it again", path, err)
        return None
    changed = False
    for p_col, flagged_col, at in [
        ("p_inappropriate", "flagged", threshold),
        *((*head_columns(name), t) for name, t in heads),
    ]:
        flags = pc.greater_equal(table[p_col], pa.scalar(at, pa.float32()))
        if not flags.equals(table[flagged_col]):
            log.warning("%s: %s was set at another threshold: rewritten at %g", path, p_col, at)
            index = table.schema.get_field_index(flagged_col)
            table = table.set_column(index, flagged_col, flags)
            changed = True
    if changed:
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    return table
