"""What img2dataset says it downloaded, from the files it writes beside each tar.

img2dataset (1.47) writes, per shard ``00000.tar``, a ``00000_stats.json`` (``count``,
``successes``, ``failed_to_download``, ``failed_to_resize``, ``status_dict``: reason -> count)
and a ``00000.parquet`` (one row per listed URL: ``url``, ``key``, ``status``,
``error_message``, ...). A datasheet should say how many URLs were listed, how many never
reached the dataset and why, and how many q16 screened: a screening of the survivors says
nothing about what failed to download.

These files are inputs like any other: a wrong type, a negative or absurd count, a cut or
foreign parquet, a file too large is ignored with a warning (that shard then counts as one
without stats), never a reason to stop a run whose images were all scored.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from q16.sources.base import is_remote
from q16.sources.sample_meta import valid_text
from q16.sources.shardlist import TAR_SUFFIXES

log = logging.getLogger(__name__)

MAX_STATS_BYTES = 16 * 2**20
"""A ``_stats.json`` is a few kB (img2dataset caps ``status_dict`` at 1,000 reasons)."""
MAX_COUNT = 10**12
"""More URLs than any web crawl per shard: a count above it is not a count."""
MAX_REASONS = 1000
"""Distinct failure reasons kept per run; more are summed as ``(other reasons)``."""
TOP_REASONS = 5
MAX_WARNINGS = 5
SUCCESS, FAILED_DOWNLOAD, FAILED_RESIZE = "success", "failed_to_download", "failed_to_resize"
OTHER_REASONS = "(other reasons)"


class BadStats(ValueError):
    """A stats file that cannot be trusted (the message says why)."""


@dataclass
class DownloadCounts:
    """Counts summed over the shards whose stats could be read."""

    listed: int = 0
    successes: int = 0
    failed_to_download: int = 0
    failed_to_resize: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    shards: int = 0

    def add(self, other: DownloadCounts) -> None:
        self.listed += other.listed
        self.successes += other.successes
        self.failed_to_download += other.failed_to_download
        self.failed_to_resize += other.failed_to_resize
        self.shards += other.shards
        for reason, count in other.reasons.items():
            self.add_reason(reason, count)

    def add_reason(self, reason: str, count: int) -> None:
        if reason not in self.reasons and len(self.reasons) >= MAX_REASONS:
            reason = OTHER_REASONS
        self.reasons[reason] += count


def shard_stem(tar: str) -> str | None:
    """The path without its tar suffix (img2dataset names the sidecars after it)."""
    return next((tar[: -len(s)] for s in TAR_SUFFIXES if tar.endswith(s)), None)


def _count(record: dict[str, Any], key: str, required: bool = True) -> int:
    value = record.get(key, None if required else 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadStats(f"{key!r} is {type(value).__name__}, not a whole number")
    if not 0 <= value <= MAX_COUNT:
        raise BadStats(f"{key!r} = {value} is out of range (0..{MAX_COUNT})")
    return value


def _reason(text: object) -> str:
    return valid_text(str(text), limit=200)


def read_stats_json(path: Path) -> DownloadCounts:
    """One ``_stats.json``; raises :class:`BadStats` (or OSError) when it cannot be trusted."""
    if path.stat().st_size > MAX_STATS_BYTES:
        raise BadStats(f"larger than {MAX_STATS_BYTES} bytes")
    try:
        record = json.loads(path.read_bytes().decode("utf-8", "replace"))
    except (ValueError, RecursionError) as err:
        raise BadStats(f"not valid JSON ({type(err).__name__})") from None
    if not isinstance(record, dict):
        raise BadStats("not a JSON object")
    counts = DownloadCounts(
        listed=_count(record, "count"),
        successes=_count(record, "successes"),
        failed_to_download=_count(record, FAILED_DOWNLOAD),
        failed_to_resize=_count(record, FAILED_RESIZE, required=False),
        shards=1,
    )
    if counts.successes + counts.failed_to_download + counts.failed_to_resize > counts.listed:
        raise BadStats("successes and failures add up to more than 'count'")
    statuses = record.get("status_dict")
    if isinstance(statuses, dict):
        for reason, n in statuses.items():
            if reason != SUCCESS and isinstance(n, int) and not isinstance(n, bool) and n > 0:
                counts.add_reason(_reason(reason), min(n, MAX_COUNT))
    return counts


def read_status_parquet(path: Path) -> DownloadCounts:
    """One per-shard parquet, read in batches (memory does not grow with it)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
        names = file.schema_arrow.names
        if "status" not in names:
            raise BadStats("no 'status' column")
        columns = ["status"] + (["error_message"] if "error_message" in names else [])
        counts = DownloadCounts(shards=1)
        statuses: Counter[str] = Counter()
        for batch in file.iter_batches(columns=columns, batch_size=65536):
            counts.listed += batch.num_rows
            status = pc.cast(batch.column(0), "string")
            for entry in pc.value_counts(status).to_pylist():
                statuses[str(entry["values"])] += int(entry["counts"])
            if len(columns) == 2:
                failed = pc.not_equal(status, SUCCESS)
                reasons = pc.cast(pc.filter(batch.column(1), failed), "string")
                for entry in pc.value_counts(reasons.drop_null()).to_pylist():
                    counts.add_reason(_reason(entry["values"]), int(entry["counts"]))
    except BadStats:
        raise
    except Exception as err:  # ArrowInvalid, ArrowNotImplementedError: a cut or foreign file
        raise BadStats(f"not a readable parquet ({type(err).__name__})") from None
    counts.successes = statuses[SUCCESS]
    counts.failed_to_download = statuses[FAILED_DOWNLOAD]
    counts.failed_to_resize = statuses[FAILED_RESIZE]
    return counts


def shard_counts(stem: str, warn: list[str]) -> DownloadCounts | None:
    """A shard's counts from its ``_stats.json``, else its parquet; None if neither is usable."""
    readers = (
        (Path(f"{stem}_stats.json"), read_stats_json),
        (Path(f"{stem}.parquet"), read_status_parquet),
    )
    for path, reader in readers:
        if not path.is_file():
            continue
        try:
            return reader(path)
        except (BadStats, OSError) as err:
            warn.append(f"{path}: {err}")
    return None


def tar_stems(tars: Sequence[str]) -> list[str | None]:
    """Where img2dataset's files for these tars would be (None: a remote tar)."""
    return [None if is_remote(t) else shard_stem(t) for t in tars]


def download_stats(stems: Sequence[str | None]) -> dict[str, Any] | None:
    """``summary.json``'s ``source_stats`` for the shards img2dataset named ``stems``
    (``/d/00000`` for ``/d/00000.tar`` or the folder ``/d/00000/``; None: a shard that has no
    such files); None when no shard has stats."""
    total, problems = DownloadCounts(), list[str]()
    for stem in stems:
        counts = None if stem is None else shard_counts(stem, problems)
        if counts is not None:
            total.add(counts)
    for problem in problems[:MAX_WARNINGS]:
        log.warning("img2dataset stats ignored: %s", problem)
    if len(problems) > MAX_WARNINGS:
        log.warning("img2dataset stats ignored in %d more files", len(problems) - MAX_WARNINGS)
    if total.shards == 0:
        return None
    return {
        "kind": "img2dataset",
        "shards_total": len(stems),
        "shards_with_stats": total.shards,
        "urls_listed": total.listed,
        "successes": total.successes,
        "failed_to_download": total.failed_to_download,
        "failed_to_resize": total.failed_to_resize,
        "top_failure_reasons": [[r, n] for r, n in total.reasons.most_common(TOP_REASONS)],
        "files_ignored": len(problems),
    }
