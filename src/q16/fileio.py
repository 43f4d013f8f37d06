"""Files written so that a crash never leaves half of one behind, and names safe on any disk.

Every q16 output a later run trusts (a shard's parquet, the feature cache, fingerprint.json)
is written to a hidden sibling and renamed into place: ``os.replace`` is atomic on POSIX, so a
reader sees the old file or the whole new one.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary sibling to write; renamed over ``path`` only when the block succeeds.

    On an exception the temporary file is removed and ``path`` is left as it was. The
    temporary name is unique (process id + random suffix): two writers of one file never
    write into each other's temporary file; the last rename wins, whole.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def safe_file_name(text: str, fallback: str) -> str:
    """``text`` reduced to ``[A-Za-z0-9._-]`` (runs of anything else become ``_``)."""
    return _UNSAFE.sub("_", text).strip("_") or fallback
