"""Writer stage: each shard's rows in one parquet, committed atomically.

A shard is *done* exactly when ``scores/<shard>.parquet`` exists; it is renamed into place
after its embeddings and error records, so a run killed at any moment leaves either a whole
shard or none of it, and resume never loses or duplicates an image. The run-level files
(``flagged.csv``, ``errors.jsonl``) are made from these by ``q16.inference.collect``.
"""

from __future__ import annotations

import json
import logging
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
    SHARD_INPUT_KEY,
    SHARD_STAMP_KEY,
    embeddings_path,
    meta_column_names,
    scores_path,
    shard_errors_path,
)

log = logging.getLogger(__name__)

IDENTITY_KEY = SHARD_INPUT_KEY
"""Parquet metadata: the shard's input identity (``resume.shard_identity``), checked on resume."""
STAMP_KEY = SHARD_STAMP_KEY
"""Parquet metadata: size and mtime of the shard's files when scored (``resume.shard_stamp``)."""
SCORING_KEY = b"q16.scoring"
"""Parquet metadata: how the shard's scores were made (model, prompt and heads by content,
preprocessing: ``resume.scoring_id``), checked on resume shard by shard, so a lost
``fingerprint.json`` never lets scores of two prompts mix under one name."""

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


def head_columns(name: str) -> tuple[str, str]:
    """The score columns of a ``heads:`` entry: ``p_<name>`` (float32), ``flagged_<name>``."""
    return f"p_{name}", f"flagged_{name}"


def scores_schema(
    meta_columns: tuple[str, ...] = (),
    heads: tuple[str, ...] = (),
    pixel_fields: tuple[pa.Field, ...] = (),
) -> pa.Schema:
    """SCHEMA, then ``p_<head>``/``flagged_<head>`` per ``heads:`` entry, then one string
    column ``meta_<name>`` per ``data.meta_columns`` entry, then the pixel heads' detection
    and hash columns (``q16.inference.pixel_heads``)."""
    scores = []
    for name in heads:
        p, flagged = head_columns(name)
        scores += [pa.field(p, pa.float32()), pa.field(flagged, pa.bool_())]
    meta = [pa.field(n, pa.string()) for n in meta_column_names(meta_columns)]
    return pa.schema(list(SCHEMA) + scores + meta + list(pixel_fields))


ROW_COLUMNS = {
    "key": pa.string(),
    "source": pa.string(),
    "file_name": pa.string(),
    "class_id": pa.int64(),
    "class_name": pa.string(),
    "synset": pa.string(),
}
"""What a batch says about each image, beside its score; a missing one is null (class -1)."""


def row_columns(batch: Batch, meta_columns: tuple[str, ...]) -> dict[str, pa.Array]:
    """A batch's row columns and ``meta_<name>`` columns as arrays, from either a block
    (arrays already) or an image batch (Python lists)."""
    n = len(batch)
    if batch.columns is not None:
        given, meta = batch.columns, batch.meta_arrays or {}
    else:
        lists = (
            batch.keys, batch.sources, batch.file_names, batch.class_ids, batch.class_names,
            batch.synsets,
        )  # fmt: skip
        given = {
            name: pa.array(values, kind)
            for (name, kind), values in zip(ROW_COLUMNS.items(), lists, strict=True)
        }
        metas = batch.metas
        meta = {
            c: pa.array([(m or {}).get(c) for m in metas] if metas else [None] * n, pa.string())
            for c in meta_columns
        }
    columns = {}
    for name, kind in ROW_COLUMNS.items():
        default = pa.repeat(pa.scalar(-1, kind), n) if name == "class_id" else pa.nulls(n, kind)
        columns[name] = given.get(name, default)
    for column, name in zip(meta_columns, meta_column_names(meta_columns), strict=True):
        columns[name] = meta.get(column, pa.nulls(n, pa.string()))
    return columns


def is_done(
    out_dir: Path,
    shard: str,
    identity: str | None = None,
    stamp: str | None = None,
    scoring: str | None = None,
    *,
    fingerprinted: bool = True,
) -> bool:
    """Whether the shard's parquet exists and can be trusted as its result.

    With ``identity``: a parquet made from other input paths (or by no q16 run: no identity
    in it) is refused (Q16Error); one whose files changed since (``stamp``: size, mtime) or
    that cannot be read (cut, corrupt) is not done: it is scored again, with a warning. With
    ``scoring``: a parquet whose scores were made otherwise (another prompt, heads, model,
    threshold) is refused; one that does not say (written before q16 recorded it) is trusted
    only while the out_dir's ``fingerprint.json`` vouches for it (``fingerprinted``).
    """
    path = scores_path(out_dir, shard)
    if not path.is_file():
        return False
    if identity is None:
        return True
    try:
        metadata = pq.read_schema(path).metadata or {}
    except Exception as err:  # ArrowInvalid / OSError: a cut or corrupt file
        log.warning("%s is unreadable (%s): scoring shard %r again", path, err, shard)
        return False
    stored = metadata.get(IDENTITY_KEY)
    if stored is None or stored.decode() != identity:
        made = "by no q16 run" if stored is None else "from other input files"
        raise Q16Error(
            f"{path} was made {made} than shard {shard!r} of this run; "
            "pass a new infer.out_dir (or delete the old one)"
        )
    if stamp is not None and metadata.get(STAMP_KEY, b"").decode() != stamp:
        log.warning("shard %r changed since it was scored (size or mtime): scoring it again", shard)
        return False
    if scoring is not None:
        recorded = metadata.get(SCORING_KEY)
        if (recorded is None and not fingerprinted) or (
            recorded is not None and recorded.decode() != scoring
        ):
            why = "another prompt, heads or model" if recorded else "no recorded prompt"
            raise Q16Error(
                f"{path} holds scores made with {why} (fingerprint.json "
                f"{'agrees, the shard does not' if fingerprinted else 'is gone'}); pass a new "
                "infer.out_dir, or delete that shard's parquet to score it again"
            )
    return True


@dataclass
class _PendingShard:
    """The rows (and embeddings) of one shard in flight, until it is committed."""

    tables: list[pa.Table] = field(default_factory=list)
    """The scored rows of each batch, concatenated once, at commit."""
    embeddings: list[np.ndarray] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    """Images the model gave no finite score (recorded, not written as rows)."""


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
    meta_columns: tuple[str, ...] = ()
    heads: tuple[tuple[str, float], ...] = ()
    """``heads:`` (name, threshold) in order; the first is also ``p_inappropriate``."""
    pixel_fields: tuple[pa.Field, ...] = ()
    """Columns the pixel heads add (boxes, hashes), given to ``add`` as ``pixel``."""
    scoring: str | None = None
    """``resume.scoring_id`` of this run, written into every shard's parquet."""
    pending: dict[str, _PendingShard] = field(default_factory=dict)
    _pool: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    _queued: deque[Future[int]] = field(default_factory=deque, init=False, repr=False)
    _commits: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        for sub in (SCORES_DIR, ERRORS_DIR) + ((EMBEDDINGS_DIR,) if self.save_embeddings else ()):
            (self.out_dir / sub).mkdir(parents=True, exist_ok=True)
        if self.background:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="q16-writer")

    def add(self, batch: Batch, scores: Scores, pixel: dict[str, pa.Array] | None = None) -> None:
        """One scored batch; an image whose score is NaN or infinite becomes an error record
        (a NaN row would compare false with every threshold: a silent "not flagged").
        ``pixel``: the batch's detection and hash columns (one value per image)."""
        pending = self.pending.setdefault(batch.shard, self._new_pending())
        probs = scores.p_inappropriate.float().numpy()
        heads = {name: scores.heads[name].float().numpy() for name, _ in self.heads}
        keep = np.isfinite(probs)
        for p in heads.values():
            keep &= np.isfinite(p)
        columns = row_columns(batch, self.meta_columns)
        columns.update(pixel or {})
        for i in np.flatnonzero(~keep):
            bad = [f"p_{n}={p[i]}" for n, p in heads.items() if not np.isfinite(p[i])]
            shown = ", ".join(bad) or f"p_inappropriate={probs[i]}"
            reason = f"the model gave no finite score ({shown})"
            key = columns["key"][int(i)].as_py()
            pending.errors.append({"key": key, "shard": batch.shard, "reason": reason})
        if not keep.all():
            chosen = pa.array(keep)
            columns = {name: values.filter(chosen) for name, values in columns.items()}
        n = int(keep.sum())
        columns["shard"] = pa.repeat(pa.scalar(batch.shard), n)
        columns["p_inappropriate"] = pa.array(probs[keep], pa.float32())
        columns["label"] = pa.array(scores.label.numpy()[keep], pa.int8())
        columns["flagged"] = pa.array(probs[keep] >= self.threshold, pa.bool_())
        for name, threshold in self.heads:
            p_col, flagged_col = head_columns(name)
            columns[p_col] = pa.array(heads[name][keep], pa.float32())
            columns[flagged_col] = pa.array(heads[name][keep] >= threshold, pa.bool_())
        schema = self._schema()
        pending.tables.append(pa.table(columns).select(schema.names).cast(schema))
        if self.save_embeddings and scores.embeddings is not None:
            pending.embeddings.append(scores.embeddings.float().numpy()[keep])

    def finish(
        self,
        shard: str,
        errors: Iterable[dict[str, Any]],
        commit: bool = True,
        identity: str | None = None,
        stamp: str | None = None,
    ) -> None:
        """Hand a finished shard to the commit thread (or commit it now without one).

        ``commit=False`` (a shard that could not be read at all) writes its error records
        but no parquet, so the shard is not done and the next run retries it.
        """
        rows = self.pending.pop(shard, None) or self._new_pending()
        records = rows.errors + list(errors)
        if not commit:
            self._write_errors(shard, records)
            return
        metadata = {IDENTITY_KEY: identity, STAMP_KEY: stamp, SCORING_KEY: self.scoring}
        if self._pool is None:
            self.commit(shard, rows, records, metadata)
            return
        while len(self._queued) >= self.max_queued:
            self._queued.popleft().result()
        self._queued.append(self._pool.submit(self.commit, shard, rows, records, metadata))

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
        metadata: dict[bytes, str | None] | None = None,
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
        table = pa.concat_tables(rows.tables) if rows.tables else self._schema().empty_table()
        stored = {k: v.encode() for k, v in (metadata or {}).items() if v is not None}
        if stored:
            table = table.replace_schema_metadata(stored)
        with atomic_path(scores_path(self.out_dir, shard)) as tmp:
            pq.write_table(table, tmp)
            kill_point(BEFORE_PARQUET, self._commits)
        kill_point(AFTER_COMMIT, self._commits)
        return table.num_rows

    def _new_pending(self) -> _PendingShard:
        return _PendingShard()

    def _schema(self) -> pa.Schema:
        names = tuple(name for name, _ in self.heads)
        return scores_schema(self.meta_columns, names, self.pixel_fields)

    def _write_errors(self, shard: str, errors: list[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(e) + "\n" for e in errors)
        atomic_write_text(shard_errors_path(self.out_dir, shard), lines)
