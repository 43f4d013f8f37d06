"""Files written so that a crash never leaves half of one behind, and names safe on any disk.

Every file q16 writes is written to a hidden sibling and renamed into place: ``os.replace``
is atomic on POSIX, so a reader sees the old file or the whole new one.

Every input file q16 reads whole is read by :func:`read_regular`: a regular file within a
byte bound, judged on the open descriptor, never more than the bound read.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def atomic_csv(frame: Any, path: Path, float_format: str | None = None) -> None:
    """A pandas frame as CSV (no index), atomically (tables of numbers; sheets whose text a
    spreadsheet opens go through ``q16.spreadsheet.write_text_csv``)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format=float_format)


class NotRegularFile(ValueError):
    """``read_regular``: a FIFO, a device, a directory...; the message names which."""


class FileTooLarge(ValueError):
    """``read_regular``: more bytes than the bound; ``size`` is ``fstat``'s (None: it grew)."""

    def __init__(self, size: int | None, max_bytes: int) -> None:
        super().__init__(f"{size if size is not None else 'more than'} bytes, over {max_bytes}")
        self.size = size
        self.max_bytes = max_bytes


def read_regular(path: str | Path, max_bytes: int) -> bytes:
    """A regular file's bytes, at most ``max_bytes`` of them.

    Opened non-blocking (a FIFO must not hang the reader), checked with ``fstat`` on the open
    descriptor (a file swapped after a check is checked too; a ``/dev/zero`` link or a
    ``/proc`` file that says size 0 is not regular), then at most ``max_bytes + 1`` bytes are
    read, so a file that grows while it is read is refused, not read forever.

    Raises:
        NotRegularFile, FileTooLarge: refused before (or instead of) reading it all.
        OSError: cannot be opened or read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(f"not a regular file ({file_kind(info.st_mode)})")
        if info.st_size > max_bytes:
            raise FileTooLarge(info.st_size, max_bytes)
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while we read it
        raise FileTooLarge(None, max_bytes)
    return data


def file_kind(mode: int) -> str:
    """``FIFO``, ``character device``... for a stat mode, as users know them."""
    kinds = [
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "symbolic link"),
    ]
    return next((name for test, name in kinds if test(mode)), "special file")


def safe_file_name(text: str, fallback: str) -> str:
    """``text`` reduced to ``[A-Za-z0-9._-]`` (runs of anything else become ``_``)."""
    return _UNSAFE.sub("_", text).strip("_") or fallback
