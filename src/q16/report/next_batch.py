"""``scripts/report.py OUT --next-batch N``: which images a curator should review next.

Active learning for the review loop: an image helps the next prompt most when the current one
is unsure about it (its score near the threshold) and when it is unlike the others picked (a
batch of near-copies teaches one thing). Candidates are the scored images without a decision
in any ``review*.csv`` of the run; the ``pool`` most uncertain (by distance of the logit from
the threshold's) are thinned to ``n`` by greedy k-center selection on the saved embeddings
(cosine distance), starting from the most uncertain. A run without saved embeddings is picked
by uncertainty alone, and says so. Ties are broken by a seeded shuffle.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from q16.errors import Q16Error
from q16.fileio import atomic_path
from q16.outdir import FLAGGED_COLUMNS, embeddings_path
from q16.report.inputs import TEXT_COLUMNS, InferenceRun, meta_columns
from q16.report.review import check_not_filled_in, read_review
from q16.report.review_keys import match_images
from q16.spreadsheet import write_text_csv

log = logging.getLogger(__name__)

NEXT_FILE = "review_next.csv"
POOL_FACTOR = 10
"""Diversity is sought among the ``POOL_FACTOR * n`` most uncertain candidates."""
EPS = 1e-6


@dataclass(frozen=True)
class NextBatch:
    """Where the batch went and how it was chosen (counts are images)."""

    path: Path
    picked: int
    candidates: int
    reviewed: int
    diverse: bool

    def describe(self) -> str:
        how = "uncertainty + embedding diversity" if self.diverse else "uncertainty only"
        return (
            f"next batch: {self.picked} of {self.candidates} unreviewed images ({how}; "
            f"{self.reviewed} already decided) -> {self.path}"
        )


def reviewed_images(run: InferenceRun, known: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """(shard, key) of every image with a decision in any ``review*.csv`` of the run."""
    done: set[tuple[str, str]] = set()
    for path in sorted(run.out_dir.glob("review*.csv")):
        review = read_review(path)
        decided = review[review["decision"] != ""].reset_index(drop=True)
        done.update(match_images(decided, known, str(path), run.out_dir))
    return done


def write_next_batch(
    run: InferenceRun,
    n: int,
    seed: int = 0,
    out: Path | None = None,
    pool_factor: int = POOL_FACTOR,
) -> NextBatch:
    """Pick ``n`` images to review next and write them as ``review_next.csv``."""
    if n < 1:
        raise Q16Error(f"--next-batch {n}: must be at least 1")
    path = out or run.out_dir / NEXT_FILE
    check_not_filled_in(path)
    frames = [_scores(file) for file in run.score_files]
    table = pd.concat(frames, ignore_index=True)
    known = set(zip(table["shard"], table["key"], strict=True))
    done = reviewed_images(run, known)
    open_rows = np.flatnonzero(
        [(s, k) not in done for s, k in zip(table["shard"], table["key"], strict=True)]
    )
    rng = np.random.default_rng(seed)
    threshold = run.threshold if math.isfinite(run.threshold) else 0.5
    order = pick(
        table["p_inappropriate"].to_numpy(float)[open_rows],
        threshold,
        n,
        rng,
        embeddings=lambda rows: _embeddings(run, table, open_rows[rows]),
        pool_factor=pool_factor,
    )
    batch = table.iloc[open_rows[order.rows]]
    review = batch.reindex(columns=[*FLAGGED_COLUMNS, *meta_columns(batch)]).copy()
    review.insert(0, "decision", "")
    review["note"] = ""
    with atomic_path(path) as tmp:
        write_text_csv(review, tmp, [*TEXT_COLUMNS, *meta_columns(review)], float_format="%.6f")
    if not order.diverse:
        log.warning("the run saved no embeddings: next batch picked by uncertainty only")
    return NextBatch(path, len(order.rows), len(open_rows), len(done), order.diverse)


@dataclass(frozen=True)
class Picked:
    """The chosen candidates and whether embeddings shaped the choice."""

    rows: np.ndarray
    """Indices into the candidates, in pick order."""
    diverse: bool


def pick(
    probs: np.ndarray,
    threshold: float,
    n: int,
    rng: np.random.Generator,
    embeddings: Callable[[np.ndarray], np.ndarray | None] | None = None,
    pool_factor: int = POOL_FACTOR,
) -> Picked:
    """``n`` candidates: the most uncertain ``pool_factor * n``, thinned by k-center on their
    embeddings (``embeddings(rows) -> (len(rows), D)`` or ``None``)."""
    shuffled = rng.permutation(len(probs))
    margin = np.abs(_logit(probs[shuffled]) - _logit(np.asarray(threshold)))
    margin = np.where(np.isfinite(margin), margin, np.inf)  # NaN scores go last
    by_uncertainty = shuffled[np.argsort(margin, kind="stable")]
    pool = by_uncertainty[: max(n, pool_factor * n)]
    vectors = embeddings(pool) if embeddings is not None else None
    if vectors is None or len(pool) <= n:
        return Picked(pool[:n], diverse=vectors is not None)
    return Picked(pool[k_center(vectors, n)], diverse=True)


def k_center(vectors: np.ndarray, n: int) -> np.ndarray:
    """Greedy k-center (farthest-first) on cosine distance, from row 0 (the most uncertain):
    each pick is the row farthest from everything picked, so copies are never picked twice
    while distinct rows remain."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), EPS)
    unit = np.nan_to_num(unit)
    chosen = [0]
    nearest = 1.0 - unit @ unit[0]
    for _ in range(1, min(n, len(unit))):
        nearest[chosen] = -np.inf
        nxt = int(np.argmax(nearest))
        chosen.append(nxt)
        nearest = np.minimum(nearest, 1.0 - unit @ unit[nxt])
    return np.asarray(chosen)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(float), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def _scores(path: Path) -> pd.DataFrame:
    names = pq.read_schema(path).names
    columns = [c for c in (*FLAGGED_COLUMNS, *names) if c in names]
    frame = pq.read_table(path, columns=list(dict.fromkeys(columns))).to_pandas()
    frame["_file"], frame["_row"] = path.stem, np.arange(len(frame))
    frame["shard"] = frame["shard"].fillna("").astype(str) if "shard" in frame else path.stem
    frame["key"] = frame["key"].fillna("").astype(str)
    return frame


def _embeddings(run: InferenceRun, table: pd.DataFrame, rows: np.ndarray) -> np.ndarray | None:
    """Saved embeddings of ``rows`` of ``table`` (memory-mapped); ``None`` when any is missing."""
    files, within = table["_file"].to_numpy()[rows], table["_row"].to_numpy()[rows]
    out: np.ndarray | None = None
    for file in np.unique(files):
        npy = embeddings_path(run.out_dir, str(file))
        try:
            array = np.load(npy, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError):  # missing, pickled or cut: no diversity
            return None
        here = np.flatnonzero(files == file)
        if array.ndim != 2 or array.dtype.kind != "f" or within[here].max() >= len(array):
            return None
        if out is None:
            out = np.zeros((len(rows), array.shape[1]), dtype=np.float32)
        if array.shape[1] != out.shape[1]:
            return None
        out[here] = np.asarray(array[within[here]], np.float32)
    return out
