"""The removal search's outputs: a page where a person confirms each candidate beside the
request photo, the candidates as a CSV, and ``keys_remove.csv`` (``shard,key``, the blocklist
format of ``q16 apply``) holding every candidate until the person strikes the wrong ones."""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from q16.errors import Q16Error
from q16.fileio import atomic_path, atomic_write_text
from q16.imageload import ImageLoadError, load_rgb
from q16.privacy import COSINE_THRESHOLD, PDQ_THRESHOLD
from q16.privacy.members import scored_images
from q16.privacy.removal import SearchResult
from q16.privacy.requests import RequestItem
from q16.spreadsheet import neutralise

THUMB = 160


@dataclass(frozen=True)
class RemovalFiles:
    page: Path
    candidates: Path
    keys_remove: Path

    def describe(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in asdict(self).items())


MARKS = "removal.json"
"""Beside the files: the request's totals and the sha256 of each file as q16 wrote it."""


def check_removal_replaceable(dest: Path) -> None:
    """Refuse to replace a file in ``dest`` that is not, byte for byte, the one an earlier
    ``q16 remove`` wrote there: the curator strikes lines in ``keys_remove.csv``, and ``q16
    apply`` writes a ``keys_remove.csv`` of its own.

    Raises:
        Q16Error: naming the first such file.
    """
    marks = _marks(dest / MARKS)
    for name in ("keys_remove.csv", "candidates.csv", "removal.html"):
        path = dest / name
        if not path.exists() and not path.is_symlink():
            continue
        if path.is_symlink() or not path.is_file() or _sha256(path) != marks.get(name):
            raise Q16Error(
                f"{path} is not the file an earlier q16 remove wrote there (edited since, or "
                "another command's: q16 apply writes keys_remove.csv too), so q16 does not "
                "replace it: act on it and move it away, or pass another --dest"
            )


def _marks(path: Path) -> dict[str, str]:
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError, RecursionError):
        return {}
    files = record.get("files") if isinstance(record, dict) else None
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_removal(
    dest: Path, items: list[RequestItem], result: SearchResult, random_weights: bool
) -> RemovalFiles:
    """The files, each atomically; ``dest`` is checked (:func:`check_removal_replaceable`)
    by the caller, under its lock."""
    dest.mkdir(parents=True, exist_ok=True)
    files = RemovalFiles(dest / "removal.html", dest / "candidates.csv", dest / "keys_remove.csv")
    rows = [asdict(c) for c in result.candidates]
    with atomic_path(files.candidates) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["request", "key", "shard", "source", "method", "distance"])
        writer.writeheader()
        writer.writerows([{k: neutralise(str(v)) for k, v in row.items()} for row in rows])
    with atomic_path(files.keys_remove) as tmp, tmp.open("w", newline="") as handle:
        keys = csv.writer(handle)
        keys.writerow(["shard", "key"])
        seen = set()
        for c in result.candidates:
            if (c.shard, c.key) not in seen:
                seen.add((c.shard, c.key))
                keys.writerow([neutralise(c.shard), neutralise(c.key)])
    atomic_write_text(files.page, _page(items, result, random_weights))
    marks = {p.name: _sha256(p) for p in (files.keys_remove, files.candidates, files.page)}
    atomic_write_text(
        dest / MARKS,
        json.dumps(
            {
                "requests": [i.label for i in items],
                "candidates": len(result.candidates),
                "images_searched": result.images_searched,
                "hashed_on_demand": result.hashed_on_demand,
                "unreadable": result.unreadable,
                "methods": result.methods,
                "pdq_threshold": PDQ_THRESHOLD,
                "cosine_threshold": COSINE_THRESHOLD if "cosine" in result.methods else None,
                "files": marks,
            },
            indent=2,
        )
        + "\n",
    )
    return files


def _thumb(pixels: np.ndarray) -> str:
    image = Image.fromarray(pixels)
    image.thumbnail((THUMB, THUMB))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _candidate_thumbs(result: SearchResult) -> dict[tuple[str, str], str]:
    by_shard: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for c in result.candidates:
        by_shard[c.shard].add((c.key, c.source))
    thumbs = {}
    for shard, rows in by_shard.items():
        for key, data in scored_images(sorted(rows)):
            try:
                thumbs[(shard, key)] = _thumb(np.asarray(load_rgb(data)))
            except ImageLoadError:
                continue
    return thumbs


def _page(items: list[RequestItem], result: SearchResult, random_weights: bool) -> str:
    e = html.escape
    requests = {i.label: _thumb(i.pixels) for i in items if i.pixels is not None}
    thumbs = _candidate_thumbs(result)
    notes = [
        f"{result.images_searched} scored images searched by {', '.join(result.methods)}; "
        f"PDQ matches at distance &le; {PDQ_THRESHOLD} bits (measured: results/privacy).",
    ]
    if result.hashed_on_demand:
        notes.append(f"{result.hashed_on_demand} images were read back and hashed for this search.")
    if "cosine" in result.methods:
        notes.append(
            f"CLIP cosine &ge; {COSINE_THRESHOLD} (not measured on real weights: check it)."
        )
    elif random_weights:
        notes.append("The run used RANDOM CLIP weights: no likeness search, hashes only.")
    cells = []
    for c in result.candidates:
        left = (
            f'<img src="{requests[c.request]}" alt="request">'
            if c.request in requests
            else f"<code>{e(c.request)}</code>"
        )
        found = thumbs.get((c.shard, c.key))
        right = f'<img src="{found}" alt="candidate">' if found else "(image not readable)"
        cells.append(
            f"<tr><td>{left}</td><td>{right}</td><td>{e(c.method)}</td><td>{c.distance:g}</td>"
            f"<td><code>{e(c.shard)}</code></td><td><code>{e(c.key)}</code></td></tr>"
        )
    body = "\n".join(cells) or '<tr><td colspan="6">No candidates.</td></tr>'
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\"><title>q16 removal request</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:4px;border-bottom:1px solid #ddd;"
        "vertical-align:middle}img{max-width:160px;max-height:160px}</style></head><body>"
        "<h1>Removal request: candidate copies</h1>"
        + "".join(f"<p>{n}</p>" for n in notes)
        + "<p>Confirm each candidate against the request on its left. <code>keys_remove.csv</code> "
        "lists every candidate: delete the lines of images that are not the requester's, then "
        "remove the rest from the dataset.</p>"
        "<table><tr><th>request</th><th>candidate</th><th>method</th><th>distance</th>"
        f"<th>shard</th><th>key</th></tr>{body}</table></body></html>\n"
    )
