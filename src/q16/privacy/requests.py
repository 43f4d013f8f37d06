"""What a person asks to have removed, turned into things to match: their photos (sha256,
PDQ with its flips and turns, and a CLIP embedding when the run saved embeddings), sha256
values they list, or keys and URLs of the dataset."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from q16.errors import Q16Error
from q16.imagefiles import is_image_file
from q16.imagehash import PDQ_MIN_QUALITY, pdq_dihedral, sha256_hex
from q16.imageload import ImageLoadError, load_rgb, read_file

SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class RequestItem:
    """One thing to find: a photo (with its hashes), a sha256 value, or a key/URL."""

    label: str
    sha256: str | None = None
    pdq: tuple[str, ...] = ()
    """The eight dihedral PDQ hashes; empty when the photo is too flat to hash (quality)."""
    pixels: np.ndarray | None = None
    """The decoded photo (for the page and for CLIP), None for sha256 values and keys."""
    key: str | None = None


def photo_items(folder: Path) -> list[RequestItem]:
    """Every image file in ``folder`` (not recursive), decoded with q16's limits."""
    if not folder.is_dir():
        raise Q16Error(f"--photos {folder}: not a folder")
    items = []
    for path in sorted(p for p in folder.iterdir() if is_image_file(p.name)):
        try:
            data = read_file(path)
            pixels = np.asarray(load_rgb(data))
        except (ImageLoadError, OSError) as err:
            raise Q16Error(f"--photos: {path.name} cannot be read ({err})") from None
        hashes, quality = pdq_dihedral(pixels)
        kept = tuple(hashes) if quality >= PDQ_MIN_QUALITY else ()
        items.append(RequestItem(path.name, sha256_hex(data), kept, pixels))
    if not items:
        raise Q16Error(f"--photos {folder}: no image files in it")
    return items


def sha256_items(path: Path) -> list[RequestItem]:
    """One hex sha256 per line (blank lines and ``#`` comments skipped)."""
    items = []
    for number, line in enumerate(_lines(path), 1):
        value = line.lower()
        if not SHA256.fullmatch(value):
            raise Q16Error(f"{path}:{number}: {line[:80]!r} is not a sha256 (64 hex digits)")
        items.append(RequestItem(value, sha256=value))
    return items


def key_items(path: Path) -> list[RequestItem]:
    """One dataset key or image URL per line."""
    return [RequestItem(line, key=line) for line in _lines(path)]


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise Q16Error(f"{path}: cannot be read as text ({err})") from None
    lines = [line.strip() for line in text.splitlines()]
    found = [line for line in lines if line and not line.startswith("#")]
    if not found:
        raise Q16Error(f"{path}: no entries in it")
    return found
