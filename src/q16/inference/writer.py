"""Writer stage: each shard's rows in one parquet, committed atomically.

A shard is *done* exactly when ``scores/<shard>.parquet`` exists; it is renamed into place
after its embeddings and error records, so a run killed at any moment leaves either a whole
shard or none of it, and resume never loses or duplicates an image. The run-level files
(``flagged.csv``, ``errors.jsonl``) are made from these by ``q16.inference.collect``.
"""

from __future__ import annotations

import json
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
from q16.fileio import atomic_path, atomic_write_text
from q16.inference.killpoints import AFTER_COMMIT, BEFORE_PARQUET, kill_point
from q16.inference.reader import Batch
from q16.inference.scorer import Scores
from q16.outdir import (
    EMBEDDINGS_DIR,
    ERRORS_DIR,
    SCORES_DIR,
    embeddings_path,
    scores_path,
    shard_errors_path,
)

IDENTITY_KEY = b"q16.input"
"""Parquet metadata: the shard's input identity (``state.shard_identity``), checked on resume."""

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
class _PendingShard:
    """The rows (and embeddings) of one shard in flight, until it is committed."""

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
    pending: dict[str, _PendingShard] = field(default_factory=dict)
    _pool: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    _queued: deque[Future[int]] = field(default_factory=deque, init=False, repr=False)
    _commits: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        for sub in (SCORES_DIR, ERRORS_DIR) + ((EMBEDDINGS_DIR,) if self.save_embeddings else ()):
            (self.out_dir / sub).mkdir(parents=True, exist_ok=True)
        if self.background:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="q16-writer")

    def add(self, batch: Batch, scores: Scores) -> None:
        pending = self.pending.setdefault(batch.shard, _PendingShard())
        probs = scores.p_inappropriate.float().numpy()
        cols = pending.columns
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
            pending.embeddings.append(scores.embeddings.float().numpy())

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
        rows, records = self.pending.pop(shard, _PendingShard()), list(errors)
        if not commit:
            self._write_errors(shard, records)
            return
        if self._pool is None:
            self.commit(shard, rows, records, identity)
            return
        while len(self._queued) >= self.max_queued:
            self._queued.popleft().result()
        self._queued.append(self._pool.submit(self.commit, shard, rows, records, identity))

    def close(self) -> None:
        """Wait for queued commits; a failed commit raises here."""
        while self._queued:
            self._queued.popleft().result()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def commit(
        self,
        shard: str,
        rows: _PendingShard,
        errors: list[dict[str, Any]],
        identity: str | None = None,
    ) -> int:
        """Embeddings, then errors, then the parquet whose presence marks the shard done."""
        self._commits += 1
        if self.save_embeddings:
            dim = rows.embeddings[0].shape[1] if rows.embeddings else 0
            array = np.concatenate(rows.embeddings) if rows.embeddings else np.zeros((0, dim))
            # through a handle: np.save would append ".npy" to the temporary file's name
            with atomic_path(embeddings_path(self.out_dir, shard)) as tmp, tmp.open("wb") as f:
                np.save(f, array.astype(np.float32))
        self._write_errors(shard, errors)
        table = pa.table(rows.columns, schema=SCHEMA)
        if identity is not None:
            table = table.replace_schema_metadata({IDENTITY_KEY: identity.encode()})
        with atomic_path(scores_path(self.out_dir, shard)) as tmp:
            pq.write_table(table, tmp)
            kill_point(BEFORE_PARQUET, self._commits)
        kill_point(AFTER_COMMIT, self._commits)
        return table.num_rows

    def _write_errors(self, shard: str, errors: list[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(e) + "\n" for e in errors)
        atomic_write_text(shard_errors_path(self.out_dir, shard), lines)
