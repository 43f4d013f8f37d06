"""Reading back the images a run scored, from the inputs its scores point at.

A row's ``source`` is the image file (folder inputs) or the tar it came from (shards); in a
tar, a sample is the consecutive members sharing a key (webdataset's rule) and the scored
member is the first of ``IMAGE_EXTENSIONS`` it has (the readers' rule).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from q16.imagefiles import IMAGE_EXTENSIONS
from q16.imageload import DEFAULT_MAX_BYTES, read_file
from q16.sources.tars import split_name

Member = tuple[tarfile.TarInfo, bytes]


def tar_samples(
    path: Path, max_bytes: int = DEFAULT_MAX_BYTES
) -> Iterator[tuple[str, list[Member]]]:
    """(key, members) of each sample of a tar, in order; links, devices and members larger
    than ``max_bytes`` are left out (the readers never scored them either)."""
    key: str | None = None
    members: list[Member] = []
    with tarfile.open(path, "r|*") as tar:
        for info in tar:
            parts = split_name(info.name) if info.isreg() else None
            if parts is None or info.size > max_bytes:
                continue
            if parts[0] != key and members:
                yield str(key), members
                members = []
            key = parts[0]
            handle = tar.extractfile(info)
            members.append((info, handle.read() if handle is not None else b""))
    if members:
        yield str(key), members


def scored_member(members: list[Member]) -> Member | None:
    """The image member the readers score (the first image extension in their order)."""
    by_extension: dict[str, Member] = {}
    for member in members:
        parts = split_name(member[0].name)
        if parts is not None:
            by_extension.setdefault(parts[1].lower(), member)
    return next((by_extension[e] for e in IMAGE_EXTENSIONS if e in by_extension), None)


def scored_images(
    rows: Iterable[tuple[str, str]], max_bytes: int = DEFAULT_MAX_BYTES
) -> Iterator[tuple[str, bytes]]:
    """(key, image bytes) for ``(key, source)`` rows of one shard; keys whose image is gone
    are skipped (the caller counts them)."""
    rows = list(rows)
    sources = {source for _, source in rows}
    if len(sources) == 1 and Path(next(iter(sources))).is_file():
        path = Path(next(iter(sources)))
        if tarfile.is_tarfile(path):
            wanted = {key for key, _ in rows}
            for key, members in tar_samples(path, max_bytes):
                member = scored_member(members) if key in wanted else None
                if member is not None:
                    yield key, member[1]
            return
    for key, source in rows:
        try:
            yield key, read_file(source, max_bytes)
        except (OSError, ValueError):
            continue
