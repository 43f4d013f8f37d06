"""Operating points and calibration from pooled test-split scores.

The paper flags images at a fixed p(inappropriate) >= 0.9. These helpers turn held-out scores
into evidence a user can choose ``infer.threshold`` from: a precision/recall table over
thresholds, the lowest threshold that reaches a target precision, and how far the scores are
from calibrated probabilities (expected calibration error, reliability bins).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from q16.experiments.plots import plot_calibration
from q16.fileio import atomic_csv, atomic_write_text

log = logging.getLogger(__name__)

# Soft prompts use logit scale 100, so most probabilities sit within 1e-3 of 0 or 1; the grid is
# linear in the middle and finer in the tails so the table still separates those scores.
_TAILS = (1e-4, 5e-4, 1e-3, 2e-3, 5e-3)
THRESHOLD_GRID: np.ndarray = np.unique(
    np.round(np.r_[np.linspace(0.0, 1.0, 101), _TAILS, 1.0 - np.asarray(_TAILS)], 6)
)

PR_COLUMNS = (
    "threshold",
    "flagged",
    "flagged_share",
    "tp",
    "fp",
    "fn",
    "tn",
    "precision",
    "recall",
    "f1",
)


def precision_recall_table(
    probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray = THRESHOLD_GRID
) -> pd.DataFrame:
    """Confusion counts and precision/recall of ``p >= t`` for each threshold ``t``.

    Precision is NaN where nothing is flagged (undefined, not zero).
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    predicted = probs[None, :] >= np.asarray(thresholds)[:, None]
    tp = (predicted & labels).sum(axis=1)
    fp = (predicted & ~labels).sum(axis=1)
    fn = labels.sum() - tp
    tn = (~labels).sum() - fp
    flagged = tp + fp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(flagged > 0, tp / np.maximum(flagged, 1), np.nan)
        recall = tp / max(int(labels.sum()), 1)
        f1 = np.where(tp > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return pd.DataFrame(
        {
            "threshold": thresholds,
            "flagged": flagged,
            "flagged_share": flagged / max(len(probs), 1),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
            "precision": precision,
            "recall": recall,
            "f1": f1,
        },
        columns=list(PR_COLUMNS),
    )


@dataclass(frozen=True)
class OperatingPoint:
    """The lowest threshold whose precision reaches the target (highest recall at that target)."""

    target_precision: float
    threshold: float | None
    precision: float | None
    recall: float | None

    @property
    def reached(self) -> bool:
        return self.threshold is not None


def threshold_for_precision(table: pd.DataFrame, target: float) -> OperatingPoint:
    """Pick from a :func:`precision_recall_table`; ``threshold=None`` when no row reaches it."""
    ok = table[(table["flagged"] > 0) & (table["precision"] >= target)]
    if ok.empty:
        return OperatingPoint(target, None, None, None)
    row = ok.sort_values("threshold").iloc[0]
    return OperatingPoint(
        target, float(row["threshold"]), float(row["precision"]), float(row["recall"])
    )


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Equal-width bins of p(inappropriate): mean score vs observed share of inappropriate."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1], right=False), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        mask = which == b
        count = int(mask.sum())
        rows.append(
            {
                "bin_lower": edges[b],
                "bin_upper": edges[b + 1],
                "count": count,
                "mean_score": float(probs[mask].mean()) if count else np.nan,
                "share_inappropriate": float(labels[mask].mean()) if count else np.nan,
            }
        )
    return pd.DataFrame(rows)


def expected_calibration_error(bins: pd.DataFrame) -> float:
    """Count-weighted mean |observed share - mean score| over non-empty bins."""
    used = bins[bins["count"] > 0]
    total = used["count"].sum()
    if total == 0:
        return float("nan")
    gap = (used["share_inappropriate"] - used["mean_score"]).abs()
    return float((gap * used["count"]).sum() / total)


def write_thresholds(
    pooled_probs: dict[str, np.ndarray],
    pooled_labels: dict[str, np.ndarray],
    out: Path,
    target_precision: float,
    n_bins: int,
    title: str,
    note: str | None = None,
) -> dict[str, dict[str, Any]]:
    """``thresholds.csv``/``.json`` and ``calibration.csv``/``.png`` from pooled test scores.

    Returns the operating point per method (also in ``thresholds.json``).
    """
    tables, bins, ece, operating = [], {}, {}, {}
    for method, probs in pooled_probs.items():
        labels = pooled_labels[method]
        table = precision_recall_table(probs, labels)
        point = threshold_for_precision(table, target_precision)
        table.insert(0, "method", method)
        table["chosen"] = table["threshold"] == point.threshold
        tables.append(table)
        bins[method] = reliability_bins(probs, labels, n_bins)
        ece[method] = expected_calibration_error(bins[method])
        operating[method] = {
            "target_precision": target_precision,
            "threshold": point.threshold,
            "precision": point.precision,
            "recall": point.recall,
            "ece": None if np.isnan(ece[method]) else ece[method],
            "n_scores": len(probs),
        }
        if not point.reached:
            log.warning("%s: no threshold reaches precision %.2f", method, target_precision)
    atomic_csv(pd.concat(tables), out / "thresholds.csv", float_format="%.6g")
    atomic_write_text(out / "thresholds.json", json.dumps(operating, indent=2))
    calibration = pd.concat([b.assign(method=m) for m, b in bins.items()])
    atomic_csv(calibration, out / "calibration.csv", float_format="%.6g")
    plot_calibration(bins, ece, out / "calibration.png", title, note=note)
    return operating
