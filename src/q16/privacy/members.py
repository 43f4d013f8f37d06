"""Reading back the images a run scored, from the inputs its scores point at.

A row's ``source`` is the image file (folder inputs) or the tar it came from (shards). Tars
are read by the scorer's own reader (``q16.sources.tars.tar_members``: same samples, same
members left unread, a cut tar recorded, not raised) and the scored member is the scorer's
(``q16.imagefiles.image_member``), so the release blurs, and a removal search hashes, the
very member the run looked at.
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from q16.imagefiles import image_member
from q16.imageload import DEFAULT_MAX_BYTES, read_file
from q16.sources.base import ErrorLog
from q16.sources.tars import TarSample, tar_members

log = logging.getLogger(__name__)

Member = tuple[tarfile.TarInfo, bytes]
__all__ = ["Member", "TarSample", "scored_images", "scored_member", "tar_members"]


def scored_member(sample: TarSample) -> Member | None:
    """The image member the scorer scored (None: the sample has no image member)."""
    chosen = image_member(sample.extensions())
    return next(
        (m for m, ext in zip(sample.members, sample.extensions(), strict=True) if ext == chosen),
        None,
    )


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
            wanted, seen = {key for key, _ in rows}, set()
            errors = ErrorLog(path.name)
            for sample in tar_members(str(path), errors, max_bytes):
                member = scored_member(sample) if sample.key not in seen else None
                seen.add(sample.key)  # a key that comes back later is another, unscored sample
                if member is not None and sample.key in wanted:
                    yield sample.key, member[1]
            for record in errors.records:
                log.warning("%s: %s", path, record["reason"])
            return
    for key, source in rows:
        try:
            yield key, read_file(source, max_bytes)
        except (OSError, ValueError):
            continue
