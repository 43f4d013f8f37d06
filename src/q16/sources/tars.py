"""One tar shard as samples, every member accounted for.

webdataset's ``tar_file_expander`` + ``group_by_keys`` drop some members silently (links,
names it cannot split into ``<key>.<extension>``) and read every member whole, whatever its
header says it holds (a 12 kB tar can declare a 2 GiB sparse member). This reader decides
from each member's header before reading it, and records what it does not read:

* directories are skipped; any other member that is not a regular file (hard or symbolic
  link, device, FIFO) is recorded and not read;
* a name that is not ``<key>.<extension>`` (a base name starting with ``.``, no extension)
  is recorded, as a problem of no sample (``key`` null);
* a member larger than ``max_bytes`` (its declared size, sparse members included) is not read;
* a second member with the sample's extension is not read.

Problems with a member of a sample are kept in the sample (``PROBLEMS``): the sample is
then recorded as a whole instead of scored. Members of one sample must be contiguous, as
webdataset writes them; a key that comes back later is a new sample (the reader records it
as a duplicate).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import Any

from webdataset.tariterators import url_opener

from q16.imagefiles import split_member_name as split_name
from q16.sources.base import ErrorLog

PROBLEMS = "__problems__"
"""Sample entry: why members of the sample were not read (the sample is then not scored)."""
KEY, URL = "__key__", "__url__"


def member_kind(info: tarfile.TarInfo) -> str:
    kinds = {
        tarfile.LNKTYPE: "hard link",
        tarfile.SYMTYPE: "symbolic link",
        tarfile.CHRTYPE: "character device",
        tarfile.BLKTYPE: "block device",
        tarfile.FIFOTYPE: "FIFO",
    }
    return kinds.get(info.type, f"tar type {info.type!r}")


def tar_samples(url: str, errors: ErrorLog, max_bytes: int) -> Iterator[dict[str, Any]]:
    """Samples of one tar (``{"__key__", "__url__", ext: bytes, ...}``), in order.

    Problems with the tar itself (unopenable, cut, not a tar) go to ``errors`` and end it;
    the samples read before a cut are kept.
    """
    for opened in url_opener([{"url": url}], handler=errors):
        stream = opened["stream"]
        try:
            yield from _samples(stream, url, errors, max_bytes)
        finally:
            stream.close()


def _samples(stream: Any, url: str, errors: ErrorLog, max_bytes: int) -> Iterator[dict[str, Any]]:
    current: dict[str, Any] | None = None
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for info in tar:
                if info.isdir():
                    continue
                parts = split_name(info.name)
                if parts is None:
                    errors.add(
                        None, f"member {info.name!r}: name is not <key>.<extension>; not read"
                    )
                    continue
                key, extension = parts
                if current is not None and current[KEY] != key:
                    yield current
                    current = None
                if current is None:
                    current = {KEY: key, URL: url, PROBLEMS: []}
                problem = _problem(info, extension, current, max_bytes)
                if problem:
                    current[PROBLEMS].append(f"{info.name}: {problem}")
                    continue
                handle = tar.extractfile(info)
                current[extension] = handle.read() if handle is not None else b""
    except Exception as exn:  # a cut or corrupt tar: record, keep what was read
        errors(exn)
    if current is not None:
        yield current


def _problem(
    info: tarfile.TarInfo, extension: str, sample: dict[str, Any], max_bytes: int
) -> str | None:
    if not info.isreg():
        return f"{member_kind(info)}, not a regular file; not read"
    if info.size > max_bytes:
        sparse = " (sparse)" if info.issparse() else ""
        return f"{info.size} bytes{sparse} exceeds data.max_bytes={max_bytes}; not read"
    if extension in sample:
        return "second member with this name; not read"
    return None
