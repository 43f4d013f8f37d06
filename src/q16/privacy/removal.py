"""Find every copy of what a person asked to have removed, in a scored run.

Exact copies by the sha256 of the bytes; re-encoded, resized and lightly edited copies by PDQ
(Hamming distance <= ``PDQ_THRESHOLD`` to any of the request photo's eight flips and turns);
crops and heavier edits by CLIP cosine where the run saved embeddings. The PDQ threshold comes
from ``results/privacy/removal-matching.json`` (scripts/measure_removal_matching.py: 0 of
144,216 unrelated pairs matched at 24 without flips, 1 with them). The cosine threshold was
not measured (no real CLIP weights on the machine that made the measurement): a setting to
check. Hashes come from the scores when the run had ``infer.hashes=true``; otherwise every
scored image is read back from the inputs and hashed here (PDQ costs about 20-40 ms each).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from q16.imagehash import PDQ_MIN_QUALITY, hamming, pdq, pdq_matrix, sha256_hex, valid_pdq
from q16.imageload import ImageLoadError, load_rgb
from q16.outdir import SCORES_DIR, embeddings_path
from q16.privacy import COSINE_THRESHOLD, PDQ_THRESHOLD
from q16.privacy.members import scored_images
from q16.privacy.requests import RequestItem

log = logging.getLogger(__name__)


METHODS = ("sha256", "key", "pdq", "cosine")
"""In the order a candidate's best match is named."""

Embed = Callable[[list[np.ndarray]], np.ndarray]
"""Request photos -> (N, D) CLIP image embeddings in the run's space."""


@dataclass(frozen=True)
class Candidate:
    request: str
    key: str
    shard: str
    source: str
    method: str
    distance: float
    """Bits for PDQ, 1 - cosine for CLIP, 0 for exact matches."""


@dataclass
class SearchResult:
    candidates: list[Candidate] = field(default_factory=list)
    images_searched: int = 0
    hashed_on_demand: int = 0
    unreadable: int = 0
    methods: list[str] = field(default_factory=list)


def find_copies(
    out_dir: Path,
    items: Sequence[RequestItem],
    *,
    pdq_threshold: int = PDQ_THRESHOLD,
    cosine_threshold: float = COSINE_THRESHOLD,
    embed: Embed | None = None,
) -> SearchResult:
    """Candidates for every request item, best match per (request, image)."""
    result = SearchResult()
    photos = [i for i in items if i.pdq]
    queries = pdq_matrix([h for i in photos for h in i.pdq]) if photos else None
    with_pixels = [i for i in items if i.pixels is not None]
    pixels = [i.pixels for i in with_pixels if i.pixels is not None]
    vectors = _unit(embed(pixels)) if embed and pixels else None
    best: dict[tuple[str, str], Candidate] = {}
    for path in sorted((out_dir / SCORES_DIR).glob("*.parquet")):
        table = pq.read_table(path)
        result.images_searched += table.num_rows
        found = _exact(table, items)
        if queries is not None or any(i.sha256 for i in items):
            sha, codes = _hashes(table, result)
            found += [
                (i.label, int(row), "sha256", 0.0)
                for i in items
                if i.sha256
                for row in np.flatnonzero(sha == i.sha256)
            ]
            if queries is not None:
                found += _near(codes, queries, photos, pdq_threshold)
        if vectors is not None and embeddings_path(out_dir, path.stem).is_file():
            rows = _unit(np.load(embeddings_path(out_dir, path.stem)))
            similar = vectors @ rows.T
            for q, r in zip(*np.nonzero(similar >= cosine_threshold), strict=True):
                found.append((with_pixels[q].label, int(r), "cosine", float(1 - similar[q, r])))
        keys, shards, sources = (table[c].to_pylist() for c in ("key", "shard", "source"))
        for label, row, method, distance in found:
            cand = Candidate(label, keys[row], shards[row], sources[row], method, distance)
            old = best.get((label, cand.key))
            if old is None or (METHODS.index(method), distance) < (
                METHODS.index(old.method),
                old.distance,
            ):
                best[(label, cand.key)] = cand
    result.candidates = sorted(
        best.values(), key=lambda c: (c.request, METHODS.index(c.method), c.distance, c.key)
    )
    used = {
        "sha256": any(i.sha256 for i in items),
        "key": any(i.key for i in items),
        "pdq": bool(photos),
        "cosine": vectors is not None,
    }
    result.methods = [m for m in METHODS if used[m]]
    return result


def _exact(table: pa.Table, items: Sequence[RequestItem]) -> list[tuple[str, int, str, float]]:
    """Keys and URLs asked for by name (key, ``meta_url``, source or file name)."""
    wanted = {i.key: i.label for i in items if i.key}
    if not wanted:
        return []
    found = []
    for column in ("key", "meta_url", "source", "file_name"):
        if column in table.column_names:
            for row, value in enumerate(table[column].to_pylist()):
                if value in wanted:
                    found.append((wanted[value], row, "key", 0.0))
    return found


def _hashes(table: pa.Table, result: SearchResult) -> tuple[np.ndarray, list[str | None]]:
    """sha256 and PDQ per row: stored by the run, or read back and computed now."""
    if "sha256" in table.column_names and "pdq" in table.column_names:
        quality = table["pdq_quality"].to_numpy(zero_copy_only=False)
        stored: list[str | None] = [
            c if q >= PDQ_MIN_QUALITY else None
            for c, q in zip(table["pdq"].to_pylist(), quality, strict=True)
        ]
        return np.asarray(table["sha256"].to_pylist(), dtype=object), stored
    keys = table["key"].to_pylist()
    index = {k: i for i, k in enumerate(keys)}
    sha: list[str | None] = [None] * len(keys)
    codes: list[str | None] = [None] * len(keys)
    for key, data in scored_images(zip(keys, table["source"].to_pylist(), strict=True)):
        row = index[key]
        sha[row] = sha256_hex(data)
        try:
            code, quality = pdq(np.asarray(load_rgb(data)))
        except ImageLoadError:
            result.unreadable += 1
            continue
        codes[row] = code if quality >= PDQ_MIN_QUALITY else None
        result.hashed_on_demand += 1
    result.unreadable += sum(s is None for s in sha)
    return np.asarray(sha, dtype=object), codes


def _near(
    codes: list[str | None], queries: np.ndarray, photos: Sequence[RequestItem], threshold: int
) -> list[tuple[str, int, str, float]]:
    rows = [i for i, c in enumerate(codes) if c is not None and valid_pdq(c)]
    if not rows:
        return []
    distance = hamming(queries, pdq_matrix([str(codes[i]) for i in rows]))
    per_photo = distance.reshape(len(photos), 8, len(rows)).min(axis=1)
    return [
        (photos[q].label, int(rows[r]), "pdq", float(per_photo[q, r]))
        for q, r in zip(*np.nonzero(per_photo <= threshold), strict=True)
    ]


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
