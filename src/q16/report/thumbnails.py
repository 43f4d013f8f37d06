"""Small JPEG thumbnails of flagged images, embedded as data URIs so the page needs no server.

Images come back from where inference read them: a member of a webdataset tar shard (found by
its sample key) or an image file (folder input). A missing or unreadable image gives ``None``
and the page shows a placeholder; the report never fails on one bad image.
"""

from __future__ import annotations

import base64
import io
import logging
import re
import tarfile
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageOps

from q16.imagefiles import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

# webdataset's convention: the key is the member path up to the first dot of its base name
_KEY_RE = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")


def split_member_name(name: str) -> tuple[str, str] | None:
    """``"dir/0001.jpg"`` -> ``("dir/0001", "jpg")``, as webdataset groups tar members."""
    match = _KEY_RE.match(name)
    return (match.group(1), match.group(2)) if match else None


def thumbnail_uri(data: bytes, size: int = 192) -> str | None:
    """A ``data:image/jpeg;base64,...`` URI of the image shrunk to fit ``size`` pixels."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.draft("RGB", (size, size))  # JPEG: decode at reduced scale, much faster
            # as a viewer shows it: a phone photo stored sideways is turned upright
            image = ImageOps.exif_transpose(opened).convert("RGB")
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
    except Exception as err:  # hostile files make PIL raise anything, not only OSError
        log.warning("thumbnail: cannot decode image: %s", err)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def resolve_source(source: str, out_dir: Path) -> Path:
    """Sources are written as given to infer.py; relative ones may be relative to the out_dir."""
    path = Path(source).expanduser()
    if path.exists() or path.is_absolute():
        return path
    return out_dir / path


def read_from_tar(tar_path: Path, keys: Iterable[str]) -> dict[str, bytes]:
    """Image bytes for each wanted key, in one sequential pass over the shard."""
    wanted = set(keys)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(tar_path, mode="r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = split_member_name(member.name)
                if parts is None or parts[0] not in wanted or parts[0] in found:
                    continue
                if parts[1].rsplit(".", 1)[-1].lower() not in IMAGE_EXTENSIONS:
                    continue
                handle = tar.extractfile(member)
                if handle is not None:
                    found[parts[0]] = handle.read()
                if len(found) == len(wanted):
                    break
    except (OSError, tarfile.TarError) as err:
        log.warning("thumbnails: cannot read shard %s: %s", tar_path, err)
    return found


def read_file(path: Path, file_name: str | None = None) -> bytes | None:
    """Bytes of an image file (folder input); ``source`` may be the folder plus ``file_name``."""
    candidates = [path]
    if isinstance(file_name, str) and _inside(path / file_name, path):
        candidates.append(path / file_name)
    for candidate in candidates:
        if candidate.is_file():
            try:
                return candidate.read_bytes()
            except OSError as err:
                log.warning("thumbnails: cannot read %s: %s", candidate, err)
    return None


def _inside(candidate: Path, folder: Path) -> bool:
    """A file name from the data may not climb out of its folder (``../../secret.jpg``)."""
    try:
        return candidate.resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError):
        return False


def collect_thumbnails(
    rows: list[dict[str, str | None]], out_dir: Path, size: int = 192
) -> list[str | None]:
    """One data URI (or None) per row of ``{"key", "source", "file_name"}``, in row order.

    Rows are grouped by source so each tar shard is opened once.
    """
    by_source: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_source.setdefault(str(row["source"]), []).append(i)
    uris: list[str | None] = [None] * len(rows)
    for source, indices in by_source.items():
        path = resolve_source(source, out_dir)
        if path.is_file() and tarfile.is_tarfile(path):
            data = read_from_tar(path, (str(rows[i]["key"]) for i in indices))
            for i in indices:
                blob = data.get(str(rows[i]["key"]))
                uris[i] = thumbnail_uri(blob, size) if blob else None
        else:
            for i in indices:
                blob = read_file(path, rows[i].get("file_name"))
                uris[i] = thumbnail_uri(blob, size) if blob else None
    missing = sum(uri is None for uri in uris)
    if missing:
        log.warning("%d of %d flagged images could not be shown", missing, len(rows))
    return uris
