"""Writer stage: per-shard parquet committed atomically, then the run's summary files.

A shard is *done* exactly when ``scores/<shard>.parquet`` exists; it is renamed into place
after its embeddings and error records, so a run killed at any moment leaves either a whole
shard or none of it, and resume never loses or duplicates an image.
"""

from __future__ import annotations

import json
import os
import signal
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from q16.errors import Q16Error
from q16.inference.flagged import flagged_sorter
from q16.inference.layout import (
    EMBEDDINGS_DIR,
    ERRORS_DIR,
    ERRORS_FILE,
    FLAGGED_COLUMNS,
    FLAGGED_FILE,
    SCORES_DIR,
    UNKNOWN_CLASS,
)
from q16.inference.reader import Batch
from q16.inference.scorer import Scores
from q16.inference.state import atomic_write_bytes

IDENTITY_KEY = b"q16.input"
"""Parquet metadata: the shard's input identity (``state.shard_identity``), checked on resume."""
TEST_KILL_ENV = "Q16_TEST_KILL"
"""Test-only: ``<point>:<n>`` SIGKILLs this process in its n-th commit (tests/integration)."""

SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),
        ("source", pa.string()),
        ("file_name", pa.string()),
        ("class_id", pa.int64()),
        ("class_name", pa.string()),
        ("p_inappropriate", pa.float32()),
        ("label", pa.int8()),
        ("flagged", pa.bool_()),
        ("synset", pa.string()),
    ]
)
"""One row per scored image (``synset`` is extra to the documented contract)."""


def _test_kill(point: str, commit: int) -> None:
    """Test-only crash point: SIGKILL ourselves where ``Q16_TEST_KILL=<point>:<commit>``."""
    if os.environ.get(TEST_KILL_ENV) == f"{point}:{commit}":
        os.kill(os.getpid(), signal.SIGKILL)


def scores_path(out_dir: Path, shard: str) -> Path:
    return out_dir / SCORES_DIR / f"{shard}.parquet"


def is_done(out_dir: Path, shard: str, identity: str | None = None) -> bool:
    """Whether the shard's parquet exists; with ``identity``, also that it was made from the
    same input (a Q16Error if not: the out_dir holds another dataset's shard of that name)."""
    path = scores_path(out_dir, shard)
    if not path.is_file():
        return False
    if identity is not None:
        stored = (pq.read_schema(path).metadata or {}).get(IDENTITY_KEY)
        if stored is not None and stored.decode() != identity:
            raise Q16Error(
                f"{path} was made from other input files than shard {shard!r} of this run; "
                "pass a new infer.out_dir (or delete the old one)"
            )
    return True


@dataclass
class _Pending:
    columns: dict[str, list[Any]] = field(default_factory=lambda: {n: [] for n in SCHEMA.names})
    embeddings: list[np.ndarray] = field(default_factory=list)


@dataclass
class ShardWriter:
    """Accumulates the rows of shards in flight (at most one per worker) and commits them.

    Commits run on one background thread so the device does not wait for parquet encoding;
    ``close()`` waits for them (and re-raises their errors). At most ``max_queued`` finished
    shards wait to be written, so memory stays bounded.
    """

    out_dir: Path
    threshold: float
    save_embeddings: bool = False
    background: bool = True
    max_queued: int = 4
    pending: dict[str, _Pending] = field(default_factory=dict)
    _pool: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    _queued: deque[Future[int]] = field(default_factory=deque, init=False, repr=False)
    _commits: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        for sub in (SCORES_DIR, ERRORS_DIR) + ((EMBEDDINGS_DIR,) if self.save_embeddings else ()):
            (self.out_dir / sub).mkdir(parents=True, exist_ok=True)
        if self.background:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="q16-writer")

    def add(self, batch: Batch, scores: Scores) -> None:
        acc = self.pending.setdefault(batch.shard, _Pending())
        probs = scores.p_inappropriate.float().numpy()
        cols = acc.columns
        cols["key"].extend(batch.keys)
        cols["shard"].extend([batch.shard] * len(batch))
        cols["source"].extend(batch.sources)
        cols["file_name"].extend(batch.file_names)
        cols["class_id"].extend(batch.class_ids)
        cols["class_name"].extend(batch.class_names)
        cols["synset"].extend(batch.synsets)
        cols["p_inappropriate"].extend(probs.tolist())
        cols["label"].extend(scores.label.tolist())
        cols["flagged"].extend((probs >= self.threshold).tolist())
        if self.save_embeddings and scores.embeddings is not None:
            acc.embeddings.append(scores.embeddings.float().numpy())

    def finish(
        self,
        shard: str,
        errors: Iterable[dict[str, Any]],
        commit: bool = True,
        identity: str | None = None,
    ) -> None:
        """Hand a finished shard to the commit thread (or commit it now without one).

        ``commit=False`` (a shard that could not be read at all) writes its error records
        but no parquet, so the shard is not done and the next run retries it.
        """
        acc, records = self.pending.pop(shard, _Pending()), list(errors)
        if not commit:
            self._write_errors(shard, records)
            return
        if self._pool is None:
            self.commit(shard, acc, records, identity)
            return
        while len(self._queued) >= self.max_queued:
            self._queued.popleft().result()
        self._queued.append(self._pool.submit(self.commit, shard, acc, records, identity))

    def close(self) -> None:
        """Wait for queued commits; a failed commit raises here."""
        while self._queued:
            self._queued.popleft().result()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def commit(
        self, shard: str, acc: _Pending, errors: list[dict[str, Any]], identity: str | None = None
    ) -> int:
        """Embeddings, then errors, then the parquet whose presence marks the shard done."""
        self._commits += 1
        if self.save_embeddings:
            dim = acc.embeddings[0].shape[1] if acc.embeddings else 0
            array = np.concatenate(acc.embeddings) if acc.embeddings else np.zeros((0, dim))
            path = self.out_dir / EMBEDDINGS_DIR / f"{shard}.npy"
            tmp = path.with_name(f".{path.stem}.tmp.npy")
            np.save(tmp, array.astype(np.float32))
            os.replace(tmp, path)
        self._write_errors(shard, errors)
        table = pa.table(acc.columns, schema=SCHEMA)
        if identity is not None:
            table = table.replace_schema_metadata({IDENTITY_KEY: identity.encode()})
        path = scores_path(self.out_dir, shard)
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(table, tmp)
        _test_kill("before_parquet", self._commits)
        os.replace(tmp, path)
        _test_kill("after_commit", self._commits)
        return table.num_rows

    def _write_errors(self, shard: str, errors: list[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(e) + "\n" for e in errors)
        atomic_write_bytes(self.out_dir / ERRORS_DIR / f"{shard}.jsonl", lines.encode())


FLAGGED_SCHEMA = pa.schema([SCHEMA.field(c) for c in FLAGGED_COLUMNS])


def collect(
    out_dir: Path,
    shards: Iterable[str],
    extra_errors: Iterable[dict] = (),
    max_flagged_in_memory: int = 1_000_000,
) -> dict:
    """Counts over every finished shard; writes ``flagged.csv`` and ``errors.jsonl``.

    Reads one shard at a time; flagged rows beyond ``max_flagged_in_memory`` are sorted on
    disk (``q16.inference.flagged``), so memory does not grow with the dataset.
    ``errors.jsonl`` also lists the last failure of shards not done (unreadable: retried).
    """
    scored = shards_done = 0
    per_class: dict[str, dict[str, int]] = {}
    error_lines: list[str] = [json.dumps(e) + "\n" for e in extra_errors]
    with flagged_sorter(FLAGGED_SCHEMA, out_dir, max_flagged_in_memory) as flagged:
        for shard in shards:
            path = scores_path(out_dir, shard)
            errors = out_dir / ERRORS_DIR / f"{shard}.jsonl"
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
    atomic_write_bytes(out_dir / ERRORS_FILE, "".join(error_lines).encode())
    return {
        "images_scored": scored,
        "images_flagged": flagged.rows,
        "errors": len(error_lines),
        "per_class": dict(sorted(per_class.items())),
        "shards_done": shards_done,
    }


def _count_classes(table: pa.Table, per_class: dict[str, dict[str, int]]) -> None:
    """Add one shard's scored and flagged counts per class name (none: UNKNOWN_CLASS)."""
    grouped = table.group_by("class_name").aggregate([("flagged", "count"), ("flagged", "sum")])
    for row in grouped.to_pylist():
        entry = per_class.setdefault(
            row["class_name"] or UNKNOWN_CLASS, {"scored": 0, "flagged": 0}
        )
        entry["scored"] += int(row["flagged_count"])
        entry["flagged"] += int(row["flagged_sum"] or 0)
