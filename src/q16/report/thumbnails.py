"""Small JPEG thumbnails of flagged images, embedded as data URIs so the page needs no server.

Images come back from where inference read them: a member of a webdataset tar shard (found by
its sample key with the reader's rules, ``q16.imagefiles``: the member shown is the member
scored) or an image file (folder input). What inference would not read is not read here either:
links, devices and FIFOs, and anything over the run's ``data.max_bytes``. A missing or
unreadable image gives ``None`` and the page shows a placeholder; the report never fails on one
bad image.

Reports get shared: a thumbnail of an image a nudity head flagged is blurred *in its pixels*
(pixelated to a 12-cell grid, then Gaussian-blurred), so the page never holds the original,
unless the curator asks to see them (``q16 report OUT --show-nudity``).
"""

from __future__ import annotations

import base64
import io
import logging
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageFilter, ImageOps

from q16.detectors.nudenet import NAME as NUDENET
from q16.imagefiles import image_member, split_member_name
from q16.imageload import DEFAULT_MAX_BYTES, ImageLoadError
from q16.imageload import read_file as read_capped

log = logging.getLogger(__name__)


def thumbnail_uri(data: bytes, size: int = 192, blur: bool = False) -> str | None:
    """A ``data:image/jpeg;base64,...`` URI of the image shrunk to fit ``size`` pixels
    (:func:`blurred` when ``blur``)."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.draft("RGB", (size, size))  # JPEG: decode at reduced scale, much faster
            # as a viewer shows it: a phone photo stored sideways is turned upright
            image = ImageOps.exif_transpose(opened).convert("RGB")
        image.thumbnail((size, size))
        if blur:
            image = blurred(image)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
    except Exception as err:  # hostile files make PIL raise anything, not only OSError
        log.warning("thumbnail: cannot decode image: %s", err)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def blurred(image: Image.Image, cells: int = 12) -> Image.Image:
    """``image`` pixelated to about ``cells`` cells on its longest side, then blurred: shapes
    and colours stay, body parts and faces do not."""
    width, height = image.size
    step = max(1, max(width, height) // cells)
    small = image.resize((max(1, width // step), max(1, height // step)), Image.Resampling.BOX)
    smooth = small.resize((width, height), Image.Resampling.BILINEAR)
    return smooth.filter(ImageFilter.GaussianBlur(radius=max(1.0, step / 2)))


def nudity_heads(summary: Mapping[str, Any]) -> tuple[str, ...]:
    """The run's heads whose detector is NudeNet (their ``flagged_<name>`` blur thumbnails)."""
    heads = summary.get("heads") or []
    return tuple(
        str(h["name"])
        for h in heads
        if isinstance(h, Mapping) and h.get("detector") == NUDENET and h.get("name")
    )


def blur_mask(rows: Sequence[Mapping[str, Any]], heads: Sequence[str]) -> list[bool]:
    """Per row: flagged by one of ``heads`` (a flag as stored, or as text in flagged.csv)."""

    def true(value: object) -> bool:
        return value is True or str(value).strip().lower() in ("true", "1")

    return [any(true(row.get(f"flagged_{h}")) for h in heads) for row in rows]


def resolve_source(source: str, out_dir: Path) -> Path:
    """Sources are written as given to infer.py; relative ones may be relative to the out_dir."""
    path = Path(source).expanduser()
    if path.exists() or path.is_absolute():
        return path
    return out_dir / path


def read_from_tar(
    tar_path: Path, keys: Iterable[str], max_bytes: int = DEFAULT_MAX_BYTES
) -> dict[str, bytes]:
    """Image bytes for each wanted key, in one sequential pass over the shard: the member the
    reader scored (``image_member`` of the key's first group of members, as webdataset groups
    them), only if it is a regular file within ``max_bytes``."""
    wanted = set(keys)
    members: dict[str, dict[str, tarfile.TarInfo]] = {}
    closed: set[str] = set()  # a key that comes back later is another (unscored) sample
    found: dict[str, bytes] = {}
    current = None
    try:
        with tarfile.open(tar_path, mode="r:*") as tar:
            for member in tar:
                parts = split_member_name(member.name) if not member.isdir() else None
                if parts is None:
                    continue
                key, extension = parts
                if key != current and current is not None:
                    closed.add(current)
                current = key
                if key in wanted and key not in closed:
                    members.setdefault(key, {}).setdefault(extension, member)
            for key, by_extension in members.items():
                chosen = image_member(by_extension)
                info = by_extension.get(chosen) if chosen else None
                if info is None or not info.isreg() or info.size > max_bytes:
                    continue
                handle = tar.extractfile(info)
                if handle is not None:
                    found[key] = handle.read(max_bytes + 1)[: max_bytes + 1]
    except (OSError, tarfile.TarError) as err:
        log.warning("thumbnails: cannot read shard %s: %s", tar_path, err)
    return {key: data for key, data in found.items() if len(data) <= max_bytes}


def read_file(
    path: Path, file_name: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> bytes | None:
    """Bytes of an image file (folder input); ``source`` may be the folder plus ``file_name``.
    Read as inference reads it (``q16.imageload.read_file``): regular files within the cap."""
    candidates = [path]
    if isinstance(file_name, str) and _inside(path / file_name, path):
        candidates.append(path / file_name)
    for candidate in candidates:
        if candidate.is_file():
            try:
                return read_capped(candidate, max_bytes)
            except (OSError, ImageLoadError) as err:
                log.warning("thumbnails: cannot read %s: %s", candidate, err)
    return None


def _inside(candidate: Path, folder: Path) -> bool:
    """A file name from the data may not climb out of its folder (``../../secret.jpg``)."""
    try:
        return candidate.resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError):
        return False


def collect_thumbnails(
    rows: list[dict[str, str | None]],
    out_dir: Path,
    size: int = 192,
    max_bytes: int = DEFAULT_MAX_BYTES,
    blur: Sequence[bool] | None = None,
) -> list[str | None]:
    """One data URI (or None) per row of ``{"key", "source", "file_name"}``, in row order;
    ``blur[i]``: row i's thumbnail is :func:`blurred`.

    Rows are grouped by source so each tar shard is opened once; ``max_bytes`` is the run's
    ``data.max_bytes`` (no image inference refused as too large is read for the page).
    """
    hide = list(blur) if blur is not None else [False] * len(rows)
    by_source: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_source.setdefault(str(row["source"]), []).append(i)
    uris: list[str | None] = [None] * len(rows)
    for source, indices in by_source.items():
        path = resolve_source(source, out_dir)
        if path.is_file() and tarfile.is_tarfile(path):
            data = read_from_tar(path, (str(rows[i]["key"]) for i in indices), max_bytes)
            for i in indices:
                blob = data.get(str(rows[i]["key"]))
                uris[i] = thumbnail_uri(blob, size, hide[i]) if blob else None
        else:
            for i in indices:
                blob = read_file(path, rows[i].get("file_name"), max_bytes)
                uris[i] = thumbnail_uri(blob, size, hide[i]) if blob else None
    missing = sum(uri is None for uri in uris)
    if missing:
        log.warning("%d of %d flagged images could not be shown", missing, len(rows))
    return uris
