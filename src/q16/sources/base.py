"""What every inference input owes ``infer.py``, and the types it hands over.

A *source* (tar shards, an image folder, saved embeddings) lists its *shards* and reads one
shard's samples. A shard is the unit of work, partitioning and resume: one worker reads it
whole, and its scores are written in one atomic step when it is done.

Adding a source is one module here and one ``configs/data/<name>.yaml`` whose ``_target_`` is
its class: ``infer.py`` checks the instance against :class:`InferenceSource` and nothing else.
A source of precomputed image embeddings (``RawSample.features`` instead of ``data``) also
implements :class:`EmbeddingSource`, so the model is checked against the embeddings' before
anything is scored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Shard:
    """One unit of work.

    Args:
        name: unique, filesystem-safe name; the output is ``scores/<name>.parquet``.
        source: the tar path, the image folder, or the embeddings file it comes from.
        files: for folder input, the image files of this shard (in order).
    """

    name: str
    source: str
    files: tuple[str, ...] = ()


@dataclass
class RawSample:
    """An undecoded input: image bytes (or saved features) plus what is known about it."""

    key: str
    source: str
    file_name: str | None = None
    data: bytes | None = None
    features: np.ndarray | None = None
    class_id: int = -1
    class_name: str | None = None
    synset: str | None = None
    error: str | None = None


@dataclass
class ErrorLog:
    """A webdataset-style handler that records and continues; it never sleeps or raises.

    ``webdataset.warn_and_continue`` sleeps 0.5 s per error, which turns a bad shard into
    minutes of idle workers. This one keeps the reason for ``errors.jsonl``.
    """

    shard: str
    records: list[dict[str, str | None]] = field(default_factory=list)
    io_errors: int = 0
    """OSErrors seen (vanished / unreadable file, NFS): may be transient, unlike a bad tar."""

    def add(self, key: str | None, reason: str) -> None:
        self.records.append({"key": key, "shard": self.shard, "reason": reason[:500]})

    def __call__(self, exn: BaseException) -> bool:
        if isinstance(exn, OSError):
            self.io_errors += 1
            reason = f"{type(exn).__name__}: {exn.strerror or exn}"
            if exn.filename:
                reason += f": {exn.filename}"
        else:
            reason = f"{type(exn).__name__}: {exn.args[0] if exn.args else exn}"
        self.add(None, reason)
        return True


@dataclass(frozen=True)
class EmbeddingSpace:
    """Which image encoder made precomputed embeddings: scoring them with another model's
    prompts gives numbers without meaning, so ``infer.py`` refuses that."""

    model: str | None
    pretrained: str | None
    weights: str | None
    """``BackboneSpec.weights_id`` of the encoder (what is compared, with ``embed_dim``)."""
    embed_dim: int | None

    def matches(self, *, weights: str | None, embed_dim: int) -> bool:
        return self.embed_dim == embed_dim and self.weights == weights


@runtime_checkable
class InferenceSource(Protocol):
    """What ``infer.py`` needs from a ``data=`` config: shards and a way to read one.

    ``list_shards`` runs once, in the main process of every rank (so a bad setting fails
    there, as one line); ``iter_samples`` runs in DataLoader workers, must not raise for a bad
    input (record it in ``errors``, or yield a ``RawSample`` with ``error`` set) and must yield
    the same samples in the same order every time (resume relies on it).
    """

    name: str
    """Label for the summary and the report (``summary.json`` ``data``)."""

    def list_shards(self) -> list[Shard]:
        """Every shard, in a fixed order (ranks take ``shards[rank::world_size]``)."""
        ...

    def iter_samples(self, shard: Shard, errors: ErrorLog) -> Iterator[RawSample]:
        """The samples of one shard: ``data`` (encoded image bytes) or ``features`` set."""
        ...


@runtime_checkable
class EmbeddingSource(InferenceSource, Protocol):
    """A source whose samples carry ``features`` (precomputed image embeddings)."""

    def embedding_space(self) -> EmbeddingSpace:
        """The encoder the embeddings come from; raises ``Q16Error`` if it cannot be told."""
        ...


def is_remote(spec: str) -> bool:
    """A URL or ``pipe:`` command (webdataset's), not a local path: never resolved or stat'ed."""
    return "://" in spec or spec.startswith("pipe:")
