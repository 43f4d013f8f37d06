"""Which tar shards ``data.shards`` names, and the unique output name of each.

A directory or a glob selects tar files only; a file named explicitly is taken as given. Names
are data, never code: every shard found on disk (a directory's listing, a glob's or a brace
pattern's matches) is an absolute local path, so a file named ``pipe:<command>;.tar`` or
``http:...tar`` is read as a file, never run or fetched. Only a ``data.shards`` entry written
literally as a URL or ``pipe:`` command is one. Shard names become file names under
``scores/``, so they are sanitised and made unique.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from braceexpand import braceexpand

from q16.errors import Q16Error
from q16.fileio import safe_file_name
from q16.sources.base import is_remote

TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def expand_shards(spec: str | Sequence[str]) -> list[str]:
    """A directory (its ``*.tar``, sorted), a glob, a brace pattern, or a list of those.

    A directory or a glob selects tar files only (``.tar``, ``.tar.gz``, ``.tgz``): the
    sidecar files img2dataset writes beside its shards (``.parquet``, ``_stats.json``) are
    not inputs. A file named explicitly (a path, a brace pattern, a list) is taken as given.
    Local shards come back as absolute paths (:func:`local_path`); an entry is a URL or a
    ``pipe:`` command only as written in ``spec``, never as found on disk.

    Raises:
        Q16Error: nothing matches, or a listed local shard does not exist.
    """
    specs = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    urls: list[str] = []
    local: set[str] = set()
    for item in map(str, specs):
        if is_remote(item):
            urls.extend(braceexpand(item))
            continue
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(local_path(p) for p in path.iterdir() if p.name.endswith(TAR_SUFFIXES))
            if not found:
                raise Q16Error(f"data.shards={item!r}: directory holds no .tar shards")
            urls.extend(found)
            continue
        for pattern in braceexpand(str(path)):
            if glob.has_magic(pattern):
                matches = glob.glob(pattern)
                urls.extend(sorted(local_path(p) for p in matches if p.endswith(TAR_SUFFIXES)))
            else:
                urls.append(local_path(pattern))
        local.update(urls)
    urls = list(dict.fromkeys(urls))
    if not urls:
        raise Q16Error(f"data.shards={spec!r} matches no shard files")
    missing = [u for u in urls if u in local and not Path(u).is_file()]
    if missing:
        raise Q16Error(
            f"{len(missing)} of {len(urls)} shards do not exist (first: {missing[0]}); "
            "check data.shards (quote brace patterns: 'data.shards=\"/d/x-{000..009}.tar\"')"
        )
    return urls


def local_path(path: str | os.PathLike[str]) -> str:
    """An absolute path: what webdataset opens as a file whatever the name holds (a relative
    ``pipe:x;.tar`` would be a command to it, ``http:x.tar`` a URL)."""
    return os.path.abspath(os.fspath(path))


def shard_names(urls: Sequence[str]) -> list[str]:
    """File names without ``.tar``; path-qualified only where two shards share a name."""

    def strip(name: str) -> str:
        for suffix in TAR_SUFFIXES:
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return name

    names = [strip(os.path.basename(u.rstrip("/"))) for u in urls]
    if len(set(names)) < len(names):
        common = os.path.commonpath([os.path.dirname(u) for u in urls]) if urls else ""
        names = [strip(os.path.relpath(u, common) if common else u) for u in urls]
    names = [safe_file_name(n, fallback="shard") for n in names]
    # sanitising or suffix stripping can still collide (``a b.tar``/``a_b.tar``,
    # ``x.tar``/``x.tgz``; ``A.tar``/``a.tar`` on case-insensitive filesystems)
    counts = Counter(n.lower() for n in names)
    return [
        f"{n}-{hashlib.sha1(u.encode()).hexdigest()[:8]}" if counts[n.lower()] > 1 else n
        for n, u in zip(names, urls, strict=True)
    ]
