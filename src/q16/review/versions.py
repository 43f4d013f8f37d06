"""Which scoring of each shard a review or an audit was made on.

A shard replaced at the same path (other images under the same keys) is scored again on
resume; decisions made on the old images must then not apply to the new ones. Each shard's
*version* is read from its ``scores/<shard>.parquet``: the input identity and size/mtime stamp
the writer records in the parquet metadata, the row count, file size and footer (column
statistics); a parquet without that metadata is hashed whole. Reading it costs one footer per
shard, however many images the run has. Review sheets carry it per row (``shard_version``),
audits in ``audit.json`` and their run identity.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import pyarrow.parquet as pq

from q16.errors import Q16Error
from q16.outdir import SHARD_INPUT_KEY, SHARD_STAMP_KEY

VERSION_COLUMN = "shard_version"
"""Review-sheet column: the version of the row's shard when the sheet was written."""


def shard_version(parquet: Path) -> str:
    """16 hex digits that change whenever the shard is scored again."""
    digest = hashlib.sha256()
    try:
        meta = pq.read_metadata(parquet)
        recorded = meta.metadata or {}
        digest.update(f"{meta.num_rows}\t{parquet.stat().st_size}\t".encode())
        with parquet.open("rb") as handle:
            if SHARD_INPUT_KEY in recorded and SHARD_STAMP_KEY in recorded:
                digest.update(recorded[SHARD_INPUT_KEY] + b"\t" + recorded[SHARD_STAMP_KEY])
                digest.update(_footer(handle))  # row groups' statistics: cheap, and they move
            else:  # not written by the inference writer: the bytes themselves
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
    except Exception as err:  # ArrowInvalid, OSError: a cut or foreign file
        raise Q16Error(f"{parquet}: not a readable scores file ({type(err).__name__})") from err
    return digest.hexdigest()[:16]


def _footer(handle: BinaryIO) -> bytes:
    """A parquet file's footer (schema, row groups, column statistics, key-value metadata)."""
    handle.seek(-8, os.SEEK_END)
    length = int.from_bytes(handle.read(4), "little")
    handle.seek(-8 - length, os.SEEK_END)
    return handle.read(length)


def shard_versions(score_files: Iterable[Path]) -> dict[str, str]:
    """Each shard (the parquet's stem) -> its version."""
    return {Path(path).stem: shard_version(Path(path)) for path in score_files}
