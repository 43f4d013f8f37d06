"""``q16 next OUT -n N``: which images a curator should review next.

Active learning for the review loop: an image helps the next prompt most when the current one
is unsure about it (its score near the threshold) and when it is unlike the others picked (a
batch of near-copies teaches one thing). But the current prompt's uncertainty is only as good
as the prompt: when the curator's standard differs from the one it was trained on, the images
near its threshold sit on the wrong boundary. So a share of each batch explores: ``m = n * n
/ (n + reviewed)`` images (all of the first batch, half once ``n`` are decided, a third after
``2n``, ...) are drawn by k-means++ seeding (cosine distance on the saved embeddings) among
``POOL_FACTOR * m`` random candidates, which follows the data but skips near-copies. The rest
exploit: the ``POOL_FACTOR * (n - m)`` most uncertain (distance of the logit from the
threshold's) thinned by greedy k-center selection, far from the explored and from each other.
Candidates are the scored images without a decision in any ``review*.csv`` of the run. A run
without saved embeddings draws its explorers uniformly and picks the rest by uncertainty alone,
and says so. Draws and ties are seeded.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from q16.errors import Q16Error
from q16.outdir import FLAGGED_COLUMNS, embeddings_path
from q16.review.match import match_images
from q16.review.run import InferenceRun, meta_columns
from q16.review.sheet import check_replaceable, read_review, with_versions, write_sheet
from q16.review.versions import shard_versions

log = logging.getLogger(__name__)

NEXT_FILE = "review_next.csv"
POOL_FACTOR = 10
"""Each part of a batch is chosen among ``POOL_FACTOR`` times as many candidates."""
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
    versions = shard_versions(run.score_files)
    for path in sorted(run.out_dir.glob("review*.csv")):
        review = read_review(path)
        decided = review[review["decision"] != ""].reset_index(drop=True)
        done.update(match_images(decided, known, str(path), run.out_dir, versions=versions))
    return done


def next_free_sheet(out_dir: Path) -> Path:
    """``review_next.csv``, or once that one holds decisions (the last round's, still to be
    read by ``review*.csv``), ``review_next-2.csv``, ``-3`` ...: rounds of the loop never stall
    on, nor overwrite, a filled-in sheet."""
    for round_ in itertools.count(1):
        path = out_dir / (NEXT_FILE if round_ == 1 else f"review_next-{round_}.csv")
        try:
            check_replaceable(path)
        except Q16Error:
            continue
        return path
    raise AssertionError("unreachable")


def write_next_batch(
    run: InferenceRun,
    n: int,
    seed: int = 0,
    out: Path | None = None,
    pool_factor: int = POOL_FACTOR,
) -> NextBatch:
    """Pick ``n`` images to review next and write them as ``review_next.csv``."""
    if n < 1:
        raise Q16Error(f"q16 next -n {n}: must be at least 1")
    path = out or next_free_sheet(run.out_dir)
    check_replaceable(path)
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
        reviewed=len(done),
    )
    batch = table.iloc[open_rows[order.rows]]
    review = batch.reindex(columns=[*FLAGGED_COLUMNS, *meta_columns(batch)]).copy()
    review.insert(0, "decision", "")
    review["note"] = ""
    review = with_versions(review, shard_versions(run.score_files))
    write_sheet(review, path, meta_columns(review), "%.6f")
    if not order.diverse:
        log.warning("the run saved no embeddings: next batch by uncertainty and random draws only")
    return NextBatch(path, len(order.rows), len(open_rows), len(done), order.diverse)


@dataclass(frozen=True)
class Picked:
    """The chosen candidates and whether embeddings shaped the choice."""

    rows: np.ndarray
    """Indices into the candidates, in pick order."""
    diverse: bool


def explore_count(n: int, reviewed: int) -> int:
    """How many of a batch of ``n`` explore: ``n * n / (n + reviewed)``, so the share is one
    over (1 + batches' worth already decided): trust in the current scores grows as evidence
    accumulates, without a knob."""
    if n < 1:
        return 0
    return round(n * n / (n + max(reviewed, 0)))


def pick(
    probs: np.ndarray,
    threshold: float,
    n: int,
    rng: np.random.Generator,
    embeddings: Callable[[np.ndarray], np.ndarray | None] | None = None,
    pool_factor: int = POOL_FACTOR,
    reviewed: int | None = None,
) -> Picked:
    """``n`` candidates: ``m = explore_count(n, reviewed)`` explore (k-means++ draws among
    ``pool_factor * m`` random candidates), the other ``k`` exploit (the ``pool_factor * k`` most
    uncertain thinned by k-center, away from the explored). Embeddings come from
    ``embeddings(rows) -> (len(rows), D)`` or ``None`` (random draws and uncertainty alone).
    ``reviewed=None``: no exploration."""
    n = min(n, len(probs))
    m = explore_count(n, reviewed) if reviewed is not None else 0
    k = n - m
    shuffled = rng.permutation(len(probs))
    margin = np.abs(_logit(probs[shuffled]) - _logit(np.asarray(threshold)))
    margin = np.where(np.isfinite(margin), margin, np.inf)  # NaN scores go last
    by_uncertainty = shuffled[np.argsort(margin, kind="stable")]
    wide = shuffled[: max(m, pool_factor * m)]
    narrow = by_uncertainty[: max(k, pool_factor * k) + m]
    rows = np.unique(np.concatenate([wide, narrow]))
    vectors = embeddings(rows) if embeddings is not None and n else None
    if vectors is None:
        explore = wide[:m]
        rest = by_uncertainty[~np.isin(by_uncertainty, explore)]
        return Picked(np.concatenate([explore, rest[:k]]), diverse=False)
    explore = wide[k_means_pp(vectors[np.searchsorted(rows, wide)], m, rng)]
    pool = narrow[~np.isin(narrow, explore)][: max(k, pool_factor * k)]
    if len(pool) <= k:
        return Picked(np.concatenate([explore, pool]), diverse=True)
    both = vectors[np.searchsorted(rows, np.concatenate([explore, pool]))]
    exploit = pool[k_center(both, k, fixed=m) - m]
    return Picked(np.concatenate([explore, exploit]), diverse=True)


def k_means_pp(vectors: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on cosine distance: ``n`` rows drawn at random, each with probability
    proportional to its squared distance from the nearest row drawn before (the first
    uniformly), so the draws follow the data but copies are never drawn twice while distinct
    rows remain."""
    unit = _unit(vectors)
    if n < 1 or not len(unit):
        return np.zeros(0, dtype=np.int64)
    chosen = [int(rng.integers(len(unit)))]
    nearest = np.maximum(1.0 - unit @ unit[chosen[0]], 0.0)
    for _ in range(1, min(n, len(unit))):
        weight = nearest**2
        weight[chosen] = 0.0
        if weight.sum() > 0:
            nxt = int(rng.choice(len(unit), p=weight / weight.sum()))
        else:  # only copies of the drawn rows are left
            nxt = int(rng.choice(np.setdiff1d(np.arange(len(unit)), chosen)))
        chosen.append(nxt)
        nearest = np.minimum(nearest, np.maximum(1.0 - unit @ unit[nxt], 0.0))
    return np.asarray(chosen, dtype=np.int64)


def k_center(vectors: np.ndarray, n: int, fixed: int = 0) -> np.ndarray:
    """Greedy k-center (farthest-first) on cosine distance: ``n`` new rows, each the one
    farthest from everything picked so far, starting from the first ``fixed`` rows (picked
    already, not returned) or, without them, from row ``0`` (the most uncertain). Copies are
    never picked twice while distinct rows remain."""
    unit = _unit(vectors)
    if n < 1 or fixed >= len(unit):
        return np.zeros(0, dtype=np.int64)
    start = list(range(fixed)) if fixed else [0]
    nearest = (1.0 - unit @ unit[start].T).min(axis=1)
    chosen = [] if fixed else [0]
    for _ in range(len(chosen), min(n, len(unit) - fixed)):
        nearest[start + chosen] = -np.inf
        nxt = int(np.argmax(nearest))
        chosen.append(nxt)
        nearest = np.minimum(nearest, 1.0 - unit @ unit[nxt])
    return np.asarray(chosen, dtype=np.int64)


def _unit(vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), EPS)
    return np.nan_to_num(unit.astype(float))


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
