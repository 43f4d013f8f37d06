"""Types shared by the inference inputs (tar shards, image folders, saved embeddings).

A *shard* is the unit of work, partitioning and resume: one worker reads it whole, and its
scores are written in one atomic step when it is done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


@runtime_checkable
class InferenceSource(Protocol):
    """What ``infer.py`` needs from a ``data=`` config: shards and a way to read one."""

    name: str

    def list_shards(self) -> list[Shard]: ...

    def iter_samples(self, shard: Shard, errors: ErrorLog) -> Iterator[RawSample]: ...


SampleIterator = Callable[[Shard, ErrorLog], Iterator[RawSample]]
