"""Test-split metrics of several prompt sets with bootstrap intervals, paired across sets.

Every number, point estimate and resample alike, comes from one vectorised function
(:func:`metric_batch`), so an interval always brackets the metric it belongs to. The test split
is stratified, so the resampling is too: ``scipy.stats.bootstrap`` draws the inappropriate and
the appropriate images as two independent samples, which keeps both classes (and AUROC, AP) in
every resample. The samples are image *indices* and every prompt set is scored on the same
resampled images, so the difference of two sets has its own interval (paired bootstrap).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from q16.errors import Q16Error
from q16.experiments.thresholds import precision_recall_table

METRICS = (
    "accuracy",
    "balanced_accuracy",
    "auroc",
    "average_precision",
    "precision_at_flag",
    "recall_at_flag",
    "precision_at_best_f1",
    "recall_at_best_f1",
    "ece",
)
"""Columns of every (n_sources, n_metrics) array below, in this order."""
BOOTSTRAP_METHODS = ("percentile", "basic", "BCa")
_MAX_BATCH_CELLS = 2_000_000  # resamples x test images per vectorised call: bounds memory


@dataclass(frozen=True)
class MetricSettings:
    """Where the thresholded metrics are taken and how calibration is binned."""

    threshold: float = 0.5
    """accuracy and balanced accuracy: ``p >= threshold`` counts as inappropriate."""
    flag_threshold: float = 0.9
    """precision and recall where infer.py flags (its default ``infer.threshold``)."""
    calibration_bins: int = 10


@dataclass(frozen=True)
class BootstrapSettings:
    """``scipy.stats.bootstrap`` over the test images, seeded."""

    n_resamples: int = 1000
    confidence: float = 0.95
    method: str = "percentile"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_resamples < 2:
            raise Q16Error(f"bootstrap.n_resamples={self.n_resamples} must be at least 2")
        if not 0 < self.confidence < 1:
            raise Q16Error(f"bootstrap.confidence={self.confidence} must lie in (0, 1)")
        if self.method not in BOOTSTRAP_METHODS:
            raise Q16Error(
                f"bootstrap.method={self.method!r} is not one of {', '.join(BOOTSTRAP_METHODS)}"
            )


@dataclass
class Estimates:
    """Metrics of each source on one test split, each array (n_sources, len(METRICS)).

    ``delta_*`` is source minus the first source (row 0, the reference) on the same resamples.
    An interval is NaN where the metric is undefined in some resample (precision when nothing
    is flagged) or, for BCa, where the resamples all agree.
    """

    point: np.ndarray
    low: np.ndarray
    high: np.ndarray
    delta_point: np.ndarray
    delta_low: np.ndarray
    delta_high: np.ndarray
    best_f1_threshold: np.ndarray
    """(n_sources,): chosen on the same test scores, so the metrics there are optimistic."""


def best_f1_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The lowest score threshold ``t`` whose ``p >= t`` has the highest F1 on these scores."""
    table = precision_recall_table(probs, labels, np.unique(np.asarray(probs, dtype=np.float64)))
    return float(table["threshold"].iloc[int(np.argmax(table["f1"].to_numpy()))])


def metric_batch(
    p_pos: np.ndarray, p_neg: np.ndarray, best_f1: float, settings: MetricSettings
) -> np.ndarray:
    """:data:`METRICS` of a batch of resamples, shape (len(METRICS), B).

    Args:
        p_pos: p(inappropriate) of the inappropriate images, (B, n_pos).
        p_neg: p(inappropriate) of the appropriate images, (B, n_neg).
    """
    n_pos, n_neg = p_pos.shape[-1], p_neg.shape[-1]
    n = n_pos + n_neg

    def flagged(threshold: float) -> tuple[np.ndarray, np.ndarray]:
        return (p_pos >= threshold).sum(-1), (p_neg >= threshold).sum(-1)

    def precision_recall(threshold: float) -> tuple[np.ndarray, np.ndarray]:
        tp, fp = flagged(threshold)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
        return precision, tp / n_pos

    tp, fp = flagged(settings.threshold)
    both = np.concatenate([p_pos, p_neg], axis=-1)
    # AUROC = Mann-Whitney U / (n_pos n_neg), ties counted half (average ranks)
    rank_sum = stats.rankdata(both, axis=-1)[..., :n_pos].sum(-1)
    auroc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    # AP = mean over positives of the precision of p >= its score (ties share a threshold)
    at_least_all = n - stats.rankdata(both, method="min", axis=-1)[..., :n_pos] + 1
    at_least_pos = n_pos - stats.rankdata(p_pos, method="min", axis=-1) + 1
    average_precision = (at_least_pos / at_least_all).mean(-1)
    return np.stack(
        [
            (tp + n_neg - fp) / n,
            (tp / n_pos + (n_neg - fp) / n_neg) / 2,
            auroc,
            average_precision,
            *precision_recall(settings.flag_threshold),
            *precision_recall(best_f1),
            _ece(p_pos, p_neg, settings.calibration_bins),
        ]
    )


def _ece(p_pos: np.ndarray, p_neg: np.ndarray, n_bins: int) -> np.ndarray:
    """Count-weighted |observed share - mean score| over equal-width bins, as
    :func:`~q16.experiments.thresholds.expected_calibration_error`: sum_b |sum (y - p)| / n."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    bin_pos = np.clip(np.digitize(p_pos, edges), 0, n_bins - 1)
    bin_neg = np.clip(np.digitize(p_neg, edges), 0, n_bins - 1)
    gaps = [
        np.where(bin_pos == b, 1.0 - p_pos, 0.0).sum(-1)
        - np.where(bin_neg == b, p_neg, 0.0).sum(-1)
        for b in range(n_bins)
    ]
    return np.abs(np.stack(gaps)).sum(0) / (p_pos.shape[-1] + p_neg.shape[-1])


def estimate(
    probs: np.ndarray, labels: np.ndarray, metrics: MetricSettings, bootstrap: BootstrapSettings
) -> Estimates:
    """Point estimates and intervals of every source on one test split.

    Args:
        probs: p(inappropriate), (n_sources, n_images); row 0 is the reference.
        labels: (n_images,), 1 = inappropriate.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    if len(pos) < 2 or len(neg) < 2:
        raise Q16Error(
            f"the test split has {len(pos)} inappropriate and {len(neg)} appropriate images; "
            "a comparison needs at least 2 of each (raise split.test_fraction or use more data)"
        )
    best = np.array([best_f1_threshold(p, labels) for p in probs])
    n_sources, n_metrics = len(probs), len(METRICS)

    def statistic(pos_idx: np.ndarray, neg_idx: np.ndarray, axis: int = -1) -> np.ndarray:
        values = np.stack(
            [
                metric_batch(p[pos_idx], p[neg_idx], t, metrics)
                for p, t in zip(probs, best, strict=True)
            ]
        )
        # (2, n_sources, n_metrics, *batch) -> flat rows, the resamples last, as scipy wants
        both = np.stack([values, values - values[:1]])
        return both.reshape(2 * n_sources * n_metrics, *pos_idx.shape[:-1])

    point, low, high = (
        values.reshape(2, n_sources, n_metrics)
        for values in stratified_bootstrap(pos, neg, statistic, bootstrap, len(labels))
    )
    return Estimates(
        point=point[0],
        low=low[0],
        high=high[0],
        delta_point=point[1],
        delta_low=low[1],
        delta_high=high[1],
        best_f1_threshold=best,
    )


def stratified_bootstrap(
    pos: np.ndarray,
    neg: np.ndarray,
    statistic: Callable[..., np.ndarray],
    bootstrap: BootstrapSettings,
    n_images: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point values and intervals of a vectorised ``statistic(pos_idx, neg_idx, axis=-1)``
    (flat rows, resamples last) with the two classes resampled independently, seeded.

    An interval is NaN where the statistic is undefined in some resample or, for BCa, where
    every resample agrees.
    """
    point = statistic(pos, neg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        result = stats.bootstrap(
            (pos, neg),
            statistic,
            n_resamples=bootstrap.n_resamples,
            batch=max(1, min(bootstrap.n_resamples, _MAX_BATCH_CELLS // max(n_images, 1))),
            vectorized=True,
            confidence_level=bootstrap.confidence,
            method=bootstrap.method,
            rng=np.random.default_rng(bootstrap.seed),
        )
    low = np.asarray(result.confidence_interval.low)
    high = np.asarray(result.confidence_interval.high)
    return point, low, high


@dataclass
class SplitComparison:
    """Every source's test scores on one split, and their metrics."""

    seed: int
    test_idx: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    """(n_sources, n_test) p(inappropriate), sources in table order."""
    estimates: Estimates
