"""Reader stage: shards -> decoded uint8 batches, in DataLoader workers.

Each worker owns whole shards (a deterministic partition over ranks x workers, no resampling,
no shuffling), decodes and resizes on the CPU (``q16.pixels``), and ships uint8 tensors:
normalisation happens on the device (4x less to copy than float32). Batches never span two
shards, and each shard ends with a ``done`` batch carrying its error records, so the writer can
commit a shard atomically and a resumed run recomputes exactly the same batches.

Whatever a source yields, one sample never stops a shard: a sample whose fields cannot be
stored, whose key was already seen in the shard, whose image cannot be decoded or whose
saved features are not finite is recorded in the shard's errors and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from q16.imageload import DEFAULT_MAX_PIXELS
from q16.inference.blocks import BlockChecks
from q16.pixels import DecodeError, ImageDecoder, UInt8Preprocess
from q16.sources.base import (
    BlockSource,
    ErrorLog,
    InferenceSource,
    RawSample,
    SampleSource,
    Shard,
    checked,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DecodeError",
    "ImageDecoder",
    "ShardStream",
    "UInt8Preprocess",
]


def partition(items: Sequence[T], index: int, count: int) -> list[T]:
    """Items ``index, index + count, ...``: disjoint, covering, same answer on every call."""
    if not 0 <= index < count:
        raise ValueError(f"index {index} outside 0..{count - 1}")
    return list(items[index::count])


@dataclass
class Batch:
    """Decoded samples of one shard (images or saved features) plus their metadata."""

    shard: str
    keys: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    file_names: list[str | None] = field(default_factory=list)
    class_ids: list[int] = field(default_factory=list)
    class_names: list[str | None] = field(default_factory=list)
    synsets: list[str | None] = field(default_factory=list)
    metas: list[dict[str, str | None] | None] = field(default_factory=list)
    images: torch.Tensor | None = None
    encoded: list[torch.Tensor] | None = None
    """``infer.decode=gpu``, instead of ``images``: per row a JPEG's checked, encoded bytes
    (1-D uint8) or an image the worker decoded (3-D); decoded with the batch on the device
    (``q16.inference.gpu_decode``)."""
    features: torch.Tensor | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    unread: bool = False
    """Set on the ``done`` batch of a shard that could not be opened: not committed, retried."""
    columns: dict[str, pa.Array] | None = None
    """A block of embeddings (the fast path): ``key`` and any of ``source``, ``file_name``,
    ``class_id``, ``class_name``, ``synset`` as arrays, instead of the lists above."""
    meta_arrays: dict[str, pa.Array] | None = None
    """With ``columns``: ``data.meta_columns`` as string arrays."""
    norms: torch.Tensor | None = None
    """With ``columns``: the features' L2 norms from the row checks (``blocks.Checked``)."""
    extracted: list[tuple[Any, ...]] | None = None
    """Per image, the pixel extractors' results (``q16.inference.pixel_heads``); None without."""

    def __len__(self) -> int:
        return len(self.columns["key"]) if self.columns is not None else len(self.keys)

    def keep_rows(self, rows: Sequence[int]) -> None:
        """Only ``rows`` (in order) of a batch of samples: those the device could decode."""
        for name in ("keys", "sources", "file_names", "class_ids", "class_names", "synsets",
                     "metas"):  # fmt: skip
            values = getattr(self, name)
            setattr(self, name, [values[i] for i in rows])
        if self.extracted is not None:
            self.extracted = [self.extracted[i] for i in rows]

    def pin_memory(self) -> Batch:
        if self.images is not None:
            self.images = self.images.pin_memory()
        if self.features is not None:
            self.features = self.features.pin_memory()
        return self


class ShardStream(IterableDataset):
    """Batches from the shards owned by this DataLoader worker (all of them with no workers).

    A source of images (``SampleSource``) is read a sample at a time, a source of embeddings
    (``BlockSource``) a block at a time.
    """

    def __init__(
        self,
        source: InferenceSource,
        shards: Sequence[Shard],
        decoder: ImageDecoder,
        batch_size: int,
        extractors: Sequence[Callable[[bytes, np.ndarray], Any]] = (),
    ) -> None:
        super().__init__()
        self.source = source
        self.shards = list(shards)
        self.decoder = decoder
        self.batch_size = batch_size
        self.extractors = tuple(extractors)
        self._warn = [True]

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        mine = partition(self.shards, info.id, info.num_workers) if info else self.shards
        for shard in mine:
            yield from self.read_shard(shard)

    def read_shard(self, shard: Shard) -> Iterator[Batch]:
        if isinstance(self.source, BlockSource):
            yield from self._read_blocks(shard)
            return
        assert isinstance(self.source, SampleSource)
        errors = ErrorLog(shard.name)
        pending: list[tuple[RawSample, tuple[torch.Tensor, tuple[Any, ...]]]] = []
        n_samples = 0
        seen: set[str] = set()
        samples = self.source.iter_samples(shard, errors)
        while True:
            try:
                raw = next(samples, None)
            except OSError as err:  # vanished file, NFS hiccup: may be transient, retried
                errors(err)
                break
            except Exception as err:  # a source that broke mid-shard: keep what was read
                errors.add(None, f"reading stopped: {type(err).__name__}: {err}")
                break
            if raw is None:
                break
            n_samples += 1
            item = self._decode(raw, errors, seen)
            if item is None:
                continue
            pending.append((raw, item))
            if len(pending) == self.batch_size:
                yield self._collate(shard.name, pending)
                pending = []
        if n_samples == 0 and not errors.records:
            errors.add(None, "empty shard: no samples")
        final = self._collate(shard.name, pending)
        final.errors, final.done = errors.records, True
        # an I/O error (vanished file, NFS hiccup) may be transient, before the first sample or
        # after some: leave the shard undone, so that the next run reads it whole again
        final.unread = errors.io_errors > 0
        yield final

    def _read_blocks(self, shard: Shard) -> Iterator[Batch]:
        """One batch per block of the shard, then its ``done`` batch (as ``read_shard``)."""
        assert isinstance(self.source, BlockSource)
        errors = ErrorLog(shard.name)
        checks = BlockChecks(shard.name, errors, self._warn)
        blocks = self.source.iter_blocks(shard, errors)
        n_rows = 0
        while True:
            try:
                block = next(blocks, None)
                if block is None:
                    break
                n_rows += len(block)
                rows = checks.check(block)
            except OSError as err:  # vanished file, NFS hiccup: may be transient, retried
                errors(err)
                break
            except Exception as err:  # a source that broke mid-shard: keep what was read
                errors.add(None, f"reading stopped: {type(err).__name__}: {err}")
                break
            if len(rows):
                yield Batch(
                    shard=shard.name,
                    columns=rows.columns,
                    meta_arrays=rows.meta,
                    features=rows.features,
                    norms=rows.norms,
                )
        if n_rows == 0 and not errors.records:
            errors.add(None, "empty shard: no samples")
        yield Batch(shard=shard.name, errors=errors.records, done=True, unread=errors.io_errors > 0)

    def _decode(
        self, raw: RawSample, errors: ErrorLog, seen: set[str]
    ) -> tuple[torch.Tensor, tuple[Any, ...]] | None:
        try:
            raw = checked(raw)
        except ValueError as err:
            errors.add(str(raw.key), str(err))
            return None
        if raw.error is not None:
            errors.add(raw.key, raw.error)
            return None
        if raw.key in seen:
            errors.add(raw.key, "key seen before in this shard; this copy not scored")
            return None
        seen.add(raw.key)
        if raw.data is None:
            errors.add(raw.key, "no image data")
            return None
        try:
            return self.decoder.decode(raw.data, self.extractors)
        except DecodeError as err:
            errors.add(raw.key, str(err))
            return None

    def _collate(
        self, name: str, items: list[tuple[RawSample, tuple[torch.Tensor, tuple[Any, ...]]]]
    ) -> Batch:
        batch = Batch(shard=name)
        if self.extractors:
            batch.extracted = [extras for _, (_, extras) in items]
        for raw, _ in items:
            batch.keys.append(raw.key)
            batch.sources.append(raw.source)
            batch.file_names.append(raw.file_name)
            batch.class_ids.append(raw.class_id)
            batch.class_names.append(raw.class_name)
            batch.synsets.append(raw.synset)
            batch.metas.append(raw.meta)
        tensors = [t for _, (t, _) in items]
        if any(t.dim() == 1 for t in tensors):  # infer.decode=gpu: decoded with the batch
            batch.encoded = tensors
        elif tensors:
            batch.images = torch.stack(tensors)
        return batch


def reads_blocks(source: InferenceSource) -> bool:
    """Whether the source is read a block at a time (then without DataLoader workers)."""
    return isinstance(source, BlockSource)


def make_loader(
    stream: ShardStream, num_workers: int, pin_memory: bool = False, prefetch_factor: int = 2
) -> DataLoader:
    """One DataLoader over the stream; batches are already formed by the workers."""
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        persistent_workers=False,
    )
