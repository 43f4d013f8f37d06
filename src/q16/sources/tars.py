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
* a second member with the sample's extension is not read;
* a tar that ends without its end-of-archive marker (two 512-byte zero blocks: a copy that
  stopped at a member boundary, a shard still being written), or inside a member, is
  recorded as incomplete (``summary.json``'s ``shards_incomplete``); the samples before the
  cut are kept.

Problems with a member of a sample are kept in the sample (``PROBLEMS``): the sample is
then recorded as a whole instead of scored. Members of one sample must be contiguous, as
webdataset writes them; a key that comes back later is a new sample (the reader records it
as a duplicate).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from webdataset.tariterators import url_opener

from q16.imagefiles import split_member_name as split_name
from q16.sources.base import INCOMPLETE_FIELD, ErrorLog, is_remote

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


@dataclass
class TarSample:
    """One sample as read: its members with their headers, in tar order (what a release copies),
    and why members were not read (``PROBLEMS``: the sample is then recorded, not scored)."""

    key: str
    url: str
    members: list[tuple[tarfile.TarInfo, bytes]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def extensions(self) -> list[str]:
        return [split_name(info.name)[1] for info, _ in self.members]  # type: ignore[index]

    def as_dict(self) -> dict[str, Any]:
        """webdataset's form: ``{"__key__", "__url__", ext: bytes, ..., PROBLEMS}``."""
        sample: dict[str, Any] = {KEY: self.key, URL: self.url, PROBLEMS: self.problems}
        sample.update(zip(self.extensions(), (data for _, data in self.members), strict=True))
        return sample


def tar_samples(url: str, errors: ErrorLog, max_bytes: int) -> Iterator[dict[str, Any]]:
    """Samples of one tar (``{"__key__", "__url__", ext: bytes, ...}``), in order."""
    for sample in tar_members(url, errors, max_bytes):
        yield sample.as_dict()


def tar_members(url: str, errors: ErrorLog, max_bytes: int) -> Iterator[TarSample]:
    """Samples of one tar with their members' headers, in order (the one reading of a tar, for
    scoring, the release and removal requests alike).

    Problems with the tar itself (unopenable, cut, not a tar) go to ``errors`` and end it;
    the samples read before a cut are kept. A local path is opened as a file, whatever its
    name; only a URL or ``pipe:`` command (as the user wrote it) goes through webdataset.
    """
    if not is_remote(url):
        try:
            stream = open(url, "rb")  # noqa: SIM115 (closed below, after the generator)
        except OSError as err:
            errors(err)
            return
        with stream:
            yield from _samples(stream, url, errors, max_bytes)
        return
    for opened in url_opener([{"url": url}], handler=errors):
        stream = opened["stream"]
        try:
            yield from _samples(stream, url, errors, max_bytes)
        finally:
            stream.close()


class _EndAware(tarfile.TarInfo):
    """Notes on the tar how its member list ended: ``tarfile`` ends silently on a zero block,
    on no block at all (a cut at a member boundary) and on a damaged header alike."""

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> _EndAware:
        try:
            return super().fromtarfile(tar)
        except tarfile.EOFHeaderError:  # type: ignore[attr-defined]  # the marker's first block
            tar.q16_marker = True  # type: ignore[attr-defined]
            raise


def _ended(tar: tarfile.TarFile) -> bool:
    """Whether the member list ended on the end-of-archive marker (two zero blocks)."""
    if not getattr(tar, "q16_marker", False):
        return False
    second = tar.fileobj.read(tarfile.BLOCKSIZE) if tar.fileobj is not None else b""
    return second == tarfile.NUL * tarfile.BLOCKSIZE


INCOMPLETE = (
    "tar ends without its end-of-archive marker: cut (a copy that stopped?) or still being "
    "written; the samples before the end are scored, re-run when the file is whole"
)


def _samples(stream: Any, url: str, errors: ErrorLog, max_bytes: int) -> Iterator[TarSample]:
    current: TarSample | None = None
    try:
        with tarfile.open(fileobj=stream, mode="r|*", tarinfo=_EndAware) as tar:
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
                if current is not None and current.key != key:
                    yield current
                    current = None
                if current is None:
                    current = TarSample(key, url)
                problem = _problem(info, extension, current, max_bytes)
                if problem:
                    current.problems.append(f"{info.name}: {problem}")
                    continue
                handle = tar.extractfile(info)
                current.members.append((info, handle.read() if handle is not None else b""))
            if not _ended(tar):
                errors.add(None, INCOMPLETE, incomplete=True)
    except Exception as exn:  # a cut or corrupt tar: record, keep what was read
        errors(exn)
        if not isinstance(exn, OSError):  # read, but not to its end: the file is cut
            errors.records[-1][INCOMPLETE_FIELD] = True
    if current is not None:
        yield current


def _problem(
    info: tarfile.TarInfo, extension: str, sample: TarSample, max_bytes: int
) -> str | None:
    if not info.isreg():
        return f"{member_kind(info)}, not a regular file; not read"
    if info.size > max_bytes:
        sparse = " (sparse)" if info.issparse() else ""
        return f"{info.size} bytes{sparse} exceeds data.max_bytes={max_bytes}; not read"
    if extension in sample.extensions():
        return "second member with this name; not read"
    return None
