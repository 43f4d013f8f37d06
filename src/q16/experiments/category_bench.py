"""Per-category benchmarks of several heads on one labelled set, with bootstrap intervals.

Image-safety benchmarks (UnsafeBench, Qu et al., CCS 2025) report a classifier per category,
because one that works on SMID's kind of image can fail on another (political memes, spam,
generated images). For each head, each category (and ``all``) and each ``source`` value (and
``all``, e.g. real vs generated images) this writes precision, recall and F1 at the head's own
threshold and at argmax (p > 0.5, the more likely class), and AUROC, each with a 95 % interval
from the stratified bootstrap of :mod:`q16.experiments.bootstrap_metrics` (unsafe and safe
images resampled apart, seeded; every head and metric of a cell on the same resamples), and the
lowest threshold reaching a target precision per head and category
(``operating_points.json``, keyed ``head@category``, which
``scripts/set_prompt_threshold.py PROMPTS --from operating_points.json --method q16@sexual``
stores in a prompt file).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from q16.errors import Q16Error
from q16.experiments.bootstrap_metrics import BootstrapSettings, stratified_bootstrap
from q16.experiments.thresholds import precision_recall_table, threshold_for_precision
from q16.fileio import atomic_write_text
from q16.spreadsheet import write_text_csv

METRICS = (
    "precision_at_threshold",
    "recall_at_threshold",
    "f1_at_threshold",
    "precision_at_argmax",
    "recall_at_argmax",
    "f1_at_argmax",
    "auroc",
)
ALL = "all"
MIN_PER_CLASS = 2
"""A cell needs this many unsafe and safe images for AUROC and intervals."""


@dataclass(frozen=True)
class HeadScores:
    """One head's p(unsafe) for every image, and the threshold it flags at."""

    name: str
    p: np.ndarray
    threshold: float
    threshold_from: str = "given"


def _counts(p_pos: np.ndarray, p_neg: np.ndarray, flag_pos: np.ndarray, flag_neg: np.ndarray):
    tp = flag_pos.sum(-1).astype(np.float64)
    fp = flag_neg.sum(-1).astype(np.float64)
    fn = p_pos.shape[-1] - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
        f1 = np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return precision, tp / p_pos.shape[-1], f1


def metric_batch(p_pos: np.ndarray, p_neg: np.ndarray, threshold: float) -> np.ndarray:
    """:data:`METRICS` of a batch of resamples, (len(METRICS), B); precision is NaN where
    nothing is flagged (undefined, not 0), F1 is 0 there."""
    at_threshold = _counts(p_pos, p_neg, p_pos >= threshold, p_neg >= threshold)
    at_argmax = _counts(p_pos, p_neg, p_pos > 0.5, p_neg > 0.5)
    n_pos, n_neg = p_pos.shape[-1], p_neg.shape[-1]
    both = np.concatenate([p_pos, p_neg], axis=-1)
    rank_sum = stats.rankdata(both, axis=-1)[..., :n_pos].sum(-1)
    auroc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.stack([*at_threshold, *at_argmax, auroc])


def _cell(
    heads: Sequence[HeadScores], labels: np.ndarray, rows: np.ndarray, boot: BootstrapSettings
) -> list[dict[str, Any]]:
    """Every head's metrics on the images ``rows`` (indices), on shared resamples."""
    y = labels[rows]
    pos, neg = rows[y], rows[~y]
    base = {"n_images": len(rows), "n_unsafe": len(pos)}
    if len(pos) < MIN_PER_CLASS or len(neg) < MIN_PER_CLASS:
        reason = f"{len(pos)} unsafe and {len(neg)} safe images; needs {MIN_PER_CLASS} of each"
        return [{**base, "head": h.name, "threshold": h.threshold, "note": reason} for h in heads]

    def statistic(pos_idx: np.ndarray, neg_idx: np.ndarray, axis: int = -1) -> np.ndarray:
        values = [metric_batch(h.p[pos_idx], h.p[neg_idx], h.threshold) for h in heads]
        return np.stack(values).reshape(len(heads) * len(METRICS), *pos_idx.shape[:-1])

    n_images = len(rows) * len(heads)
    point, low, high = stratified_bootstrap(pos, neg, statistic, boot, n_images)
    shape = (len(heads), len(METRICS))
    point, low, high = (np.asarray(v, np.float64).reshape(shape) for v in (point, low, high))
    out = []
    for k, head in enumerate(heads):
        row: dict[str, Any] = {**base, "head": head.name, "threshold": head.threshold, "note": ""}
        for m, metric in enumerate(METRICS):
            row[metric] = point[k, m]
            row[f"{metric}_low"] = low[k, m]
            row[f"{metric}_high"] = high[k, m]
        out.append(row)
    return out


def parse_labels(values: Sequence[object], column: str = "safety_label") -> np.ndarray:
    """1/0, true/false or UnsafeBench's ``Unsafe``/``Safe`` -> bool (True = unsafe)."""
    words = {"1": True, "0": False, "true": True, "false": False, "unsafe": True, "safe": False}
    out = np.empty(len(values), dtype=bool)
    bad = []
    for i, value in enumerate(values):
        key = str(int(value)) if isinstance(value, bool | np.bool_) else str(value).strip().lower()
        key = {"1.0": "1", "0.0": "0"}.get(key, key)
        if key not in words:
            bad.append(i)
        else:
            out[i] = words[key]
    if bad:
        shown = ", ".join(repr(values[i])[:40] for i in bad[:3])
        raise Q16Error(
            f"column {column!r}: {len(bad)} value(s) are not unsafe/safe, 1/0 or true/false "
            f"(e.g. {shown}); set data.label_column to the label column"
        )
    return out


def benchmark(
    table: pd.DataFrame, heads: Sequence[HeadScores], boot: BootstrapSettings
) -> pd.DataFrame:
    """One row per head x category x source: counts, thresholds and :data:`METRICS` with
    ``_low``/``_high`` bounds.

    Args:
        table: per image ``category``, ``label`` (bool, True = unsafe) and optionally
            ``source``; rows in the order of every head's ``p``.
    """
    if not heads:
        raise Q16Error("a benchmark needs at least one head")
    labels = np.asarray(table["label"], dtype=bool)
    for head in heads:
        if len(head.p) != len(labels):
            raise ValueError(f"head {head.name}: {len(head.p)} scores for {len(labels)} images")
    categories = table["category"].fillna("").astype(str).to_numpy()
    sources = (
        table["source"].fillna("").astype(str).to_numpy() if "source" in table.columns else None
    )
    source_names = [ALL] + (sorted(set(sources)) if sources is not None else [])
    rows = []
    for category in [ALL, *sorted(set(categories))]:
        in_category = np.ones(len(labels), bool) if category == ALL else categories == category
        for source in source_names:
            mask = in_category & (True if source == ALL else sources == source)  # type: ignore[operator]
            if not mask.any():
                continue
            for row in _cell(heads, labels, np.flatnonzero(mask), boot):
                rows.append({"category": category, "source": source, **row})
    frame = pd.DataFrame(rows)
    lead = ["head", "category", "source", "n_images", "n_unsafe", "threshold"]
    rest = [c for c in frame.columns if c not in lead and c != "note"]
    return frame[[*lead, *rest, "note"]]


def operating_points(
    table: pd.DataFrame, heads: Sequence[HeadScores], target_precision: float
) -> dict[str, dict[str, Any]]:
    """Per head and category (all sources together): the lowest threshold whose precision
    reaches ``target_precision`` on these images, in ``thresholds.json``'s form."""
    labels = np.asarray(table["label"], dtype=bool)
    categories = table["category"].fillna("").astype(str).to_numpy()
    points: dict[str, dict[str, Any]] = {}
    for head in heads:
        for category in [ALL, *sorted(set(categories))]:
            mask = np.ones(len(labels), bool) if category == ALL else categories == category
            point = threshold_for_precision(
                precision_recall_table(head.p[mask], labels[mask]), target_precision
            )
            points[f"{head.name}@{category}"] = {
                "head": head.name,
                "category": category,
                "target_precision": target_precision,
                "threshold": point.threshold,
                "precision": point.precision,
                "recall": point.recall,
                "n_scores": int(mask.sum()),
                "n_unsafe": int(labels[mask].sum()),
            }
    return points


def write_benchmark(
    out: Path, metrics: pd.DataFrame, points: dict[str, Any], record: dict[str, Any]
) -> None:
    """``category_metrics.csv``, ``category_metrics.md``, ``operating_points.json`` and the
    settings behind them in ``benchmark.json``."""
    out.mkdir(parents=True, exist_ok=True)
    write_text_csv(metrics, out / "category_metrics.csv", float_format="%.6g")
    atomic_write_text(out / "operating_points.json", json.dumps(points, indent=2))
    atomic_write_text(out / "benchmark.json", json.dumps(record, indent=2, default=str))
    atomic_write_text(out / "category_metrics.md", markdown(metrics, record))


def markdown(metrics: pd.DataFrame, record: dict[str, Any]) -> str:
    """F1 at threshold and at argmax and AUROC with intervals, per head, category, source."""

    def shown(row: pd.Series, metric: str) -> str:
        value = row.get(metric)
        if value is None or pd.isna(value):
            return "n/a"
        low, high = row.get(f"{metric}_low"), row.get(f"{metric}_high")
        if low is None or pd.isna(low) or pd.isna(high):
            return f"{value:.3f}"
        return f"{value:.3f} [{low:.3f}, {high:.3f}]"

    lines = [
        "| head | category | source | images | unsafe | threshold | F1 at threshold | "
        "F1 at argmax | precision at threshold | recall at threshold | AUROC |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | --- | --- | --- | --- |",
    ]
    for _, row in metrics.iterrows():
        cells = [_text(row["head"]), _text(row["category"]), _text(row["source"])]
        lines.append(
            f"| {' | '.join(cells)} | {row['n_images']} | {row['n_unsafe']} | "
            f"{row['threshold']:g} | {shown(row, 'f1_at_threshold')} | "
            f"{shown(row, 'f1_at_argmax')} | {shown(row, 'precision_at_threshold')} | "
            f"{shown(row, 'recall_at_threshold')} | {shown(row, 'auroc')} |"
        )
    boot = record.get("bootstrap", {})
    lines += [
        "",
        f"Intervals: {boot.get('confidence', 0.95):g} {boot.get('method', 'percentile')} "
        f"bootstrap, {boot.get('n_resamples')} resamples (unsafe and safe images resampled "
        f"apart, seed {boot.get('seed')}). Argmax: p > 0.5. n/a: a cell with fewer than "
        f"{MIN_PER_CLASS} unsafe or safe images, or precision where nothing is flagged.",
    ]
    if record.get("note"):
        lines += ["", str(record["note"])]
    return "\n".join(lines) + "\n"


def _text(value: object) -> str:
    """A user's category or source name inside a Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")
