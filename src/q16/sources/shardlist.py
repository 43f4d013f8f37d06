"""Which tar shards ``data.shards`` names, and the unique output name of each.

A directory or a glob selects tar files only; a file named explicitly is taken as given. Shard
names become file names under ``scores/``, so they are sanitised and made unique.
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

    Raises:
        Q16Error: nothing matches, or a listed local shard does not exist.
    """
    specs = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    urls: list[str] = []
    for item in map(str, specs):
        if is_remote(item):
            urls.extend(braceexpand(item))
            continue
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(str(p) for p in path.iterdir() if p.name.endswith(TAR_SUFFIXES))
            if not found:
                raise Q16Error(f"data.shards={item!r}: directory holds no .tar shards")
            urls.extend(found)
            continue
        for pattern in braceexpand(str(path)):
            if glob.has_magic(pattern):
                urls.extend(sorted(p for p in glob.glob(pattern) if p.endswith(TAR_SUFFIXES)))
            else:
                urls.append(pattern)
    urls = list(dict.fromkeys(urls))
    if not urls:
        raise Q16Error(f"data.shards={spec!r} matches no shard files")
    missing = [u for u in urls if not is_remote(u) and not Path(u).is_file()]
    if missing:
        raise Q16Error(
            f"{len(missing)} of {len(urls)} shards do not exist (first: {missing[0]}); "
            "check data.shards (quote brace patterns: 'data.shards=\"/d/x-{000..009}.tar\"')"
        )
    return urls


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
