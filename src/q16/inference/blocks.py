"""The reader's fast path for embedding collections: whole ``FeatureBlock``s, checked vectorised.

The one home of the row rules for embeddings (every ``BlockSource``: clip-retrieval, DataComp,
saved embeddings): at LAION scale (millions of rows per file) a Python loop per row, not
reading, would be the cost, so the rules run on arrays:

- a key that is empty is recorded (``sample without a key``); a null key is ``<shard>/<row>``;
- a row holding NaN or infinity is recorded, and for collections (``unit``) so is a zero row;
- a collection row that is not unit length is normalised (one warning per reader);
- a key seen before in the shard (among rows kept) is recorded, that copy not scored.

Features are not copied where nothing needs changing: a block's float16 rows go to the scorer
as they were read (a view of the memory map without DataLoader workers), which converts them to
float32 a cache-sized chunk at a time.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from q16.sources.base import ErrorLog, FeatureBlock
from q16.sources.collection import TOO_LARGE, UNIT_TOLERANCE

log = logging.getLogger(__name__)

EMPTY_KEY = "sample without a key"


@dataclass
class Checked:
    """The rows of a block that are scored: ``columns`` (``key`` and the saved embeddings'
    fields), ``meta`` (``data.meta_columns``) and their features, all in the same order."""

    columns: dict[str, pa.Array]
    meta: dict[str, pa.Array]
    features: torch.Tensor
    norms: torch.Tensor | None = None
    """The rows' L2 norms in float32, computed for the checks, handed to the scorer (which
    would otherwise compute them again); None where rows were normalised here."""

    def __len__(self) -> int:
        return len(self.columns["key"])


@dataclass
class BlockChecks:
    """The checks of one shard's blocks, in order (duplicate keys are per shard)."""

    shard: str
    errors: ErrorLog
    warn: list[bool] = field(default_factory=lambda: [True])
    """Shared by the shards of one reader: the not-unit-length warning is given once."""
    seen: set[str] = field(default_factory=set)
    """The keys kept so far, once a block's keys were not in increasing order (see
    ``_unique``); until then ``kept`` holds them as arrays and ``last`` the largest."""
    kept: list[pa.Array] | None = field(default_factory=list)
    last: str | None = None

    def check(self, block: FeatureBlock) -> Checked:
        """The block's kept rows; the others become error records, in row order."""
        n = len(block)
        keys = self._keys(block)
        features = _tensor(block.features)
        norms = _norms(features)
        finite = torch.isfinite(norms)
        suspect = torch.nonzero(~finite).flatten()
        if len(suspect):  # a float32 row of huge but finite values: its norm overflows
            exact = torch.isfinite(features[suspect].float()).all(dim=1)
            finite[suspect] = exact
        reasons: dict[int, str] = {}
        empty = np.asarray(pc.fill_null(pc.equal(keys, ""), False))
        for i in np.flatnonzero(empty):
            reasons[int(i)] = EMPTY_KEY
        bad = ~finite.numpy() & ~empty
        for i in np.flatnonzero(bad):
            row = block.start + int(i)
            reasons[int(i)] = (
                f"row {row}: embedding holds NaN or infinite values"
                if block.unit
                else "saved embedding holds NaN or infinite values"
            )
        zero = huge = np.zeros(n, bool)
        if block.unit:
            huge = finite.numpy() & ~torch.isfinite(norms).numpy() & ~empty
            for i in np.flatnonzero(huge):
                reasons[int(i)] = f"row {block.start + int(i)}: {TOO_LARGE}"
            zero = finite.numpy() & (norms.numpy() == 0) & ~empty
            for i in np.flatnonzero(zero):
                reasons[int(i)] = f"row {block.start + int(i)}: embedding is all zeros"
        valid = ~(empty | bad | zero | huge)
        kept = self._unique(keys, valid, reasons)
        for row in sorted(reasons):
            key = keys[row].as_py()
            self.errors.add("" if key is None else key, reasons[row])
        given = features
        if block.unit:
            features = self._normalised(features, norms, finite.numpy() & ~zero & ~huge)
        row_norms: torch.Tensor | None = norms if features is given else None
        columns = {"key": keys, "source": pa.repeat(pa.scalar(block.source), n), **block.fields}
        meta = dict(block.meta)
        if not kept.all():
            chosen = pa.array(kept)
            columns = {c: v.filter(chosen) for c, v in columns.items()}
            meta = {c: v.filter(chosen) for c, v in meta.items()}
            chosen_rows = torch.from_numpy(np.flatnonzero(kept))
            features = features[chosen_rows]
            row_norms = None if row_norms is None else row_norms[chosen_rows]
        return Checked(columns, meta, features, row_norms)

    def _keys(self, block: FeatureBlock) -> pa.Array:
        keys = block.keys
        if keys.null_count:
            rows = pa.array(np.arange(block.start, block.start + len(block))).cast(pa.string())
            names = pc.binary_join_element_wise(f"{self.shard}/", rows, "")
            keys = pc.coalesce(keys, names)
        return keys

    def _unique(self, keys: pa.Array, valid: np.ndarray, reasons: dict[int, str]) -> np.ndarray:
        """``valid`` less the rows whose key was kept before in this shard (recorded).

        Keys as clip-retrieval and img2dataset write them increase down a shard: a block whose
        kept keys increase, all after the last kept key, holds no repeat, which one vectorised
        comparison shows (8 ns a row against about 200 for a set of Python strings). The first
        block that is not in order turns the keys kept so far into a set, for the rest of the
        shard."""
        rows = np.flatnonzero(valid)
        candidates = keys if len(rows) == len(keys) else keys.take(pa.array(rows))
        if self.kept is not None:
            if _increasing_after(candidates, self.last):
                if len(candidates):
                    self.kept.append(candidates)
                    self.last = candidates[-1].as_py()
                return valid
            for array in self.kept:
                self.seen.update(array.to_pylist())
            self.kept = None
        listed = candidates.to_pylist()
        fresh = set(listed)
        if len(fresh) == len(listed) and self.seen.isdisjoint(fresh):
            self.seen |= fresh
            return valid
        kept = valid.copy()
        for i, key in zip(rows, listed, strict=True):  # rare: decide in row order
            if key in self.seen:
                kept[i] = False
                reasons[int(i)] = "key seen before in this shard; this copy not scored"
            else:
                self.seen.add(key)
        return kept

    def _normalised(
        self, features: torch.Tensor, norms: torch.Tensor, usable: np.ndarray
    ) -> torch.Tensor:
        off = torch.from_numpy(usable) & ((norms - 1.0).abs() > UNIT_TOLERANCE)
        if not off.any():
            return features
        if self.warn[0]:
            log.warning(
                "%s: %d of %d embeddings are not unit length; normalised (CLIP embeddings are "
                "compared by cosine)",
                self.shard,
                int(off.sum()),
                len(features),
            )
            self.warn[0] = False
        features = features.to(torch.float32, copy=True)  # never write to the memory map
        features[off] /= norms[off, None]
        return features


def _increasing_after(keys: pa.Array, last: str | None) -> bool:
    """Whether ``keys`` (no nulls) strictly increase, all after ``last`` (byte order of UTF-8,
    which is Python's order of str)."""
    if len(keys) == 0:
        return True
    if last is not None and not keys[0].as_py() > last:
        return False
    return len(keys) == 1 or bool(pc.all(pc.less(keys[:-1], keys[1:])).as_py())


NORM_CHUNK = 512
"""Rows converted to float32 at a time for their norms, into one reused buffer: a fresh float32
tensor per chunk costs a page fault per 4 kB, measured 3x slower than the conversion itself."""


def _norms(features: torch.Tensor) -> torch.Tensor:
    """L2 norm of each row, in float32 (NaN or inf where a row holds them)."""
    if features.dtype == torch.float32:
        return features.norm(dim=1) if len(features) else torch.zeros(0)
    buffer = torch.empty((NORM_CHUNK, features.shape[1]))
    parts = [buffer[: len(chunk)].copy_(chunk).norm(dim=1) for chunk in features.split(NORM_CHUNK)]
    return torch.cat(parts) if parts else torch.zeros(0)


def _tensor(array: np.ndarray) -> torch.Tensor:
    """The rows as a tensor without a copy (a read-only memory map is only ever read)."""
    if array.dtype not in (np.float16, np.float32):
        array = array.astype(np.float32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(array))
