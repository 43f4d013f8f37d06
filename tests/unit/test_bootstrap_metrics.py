"""Metrics with bootstrap intervals (evaluate.py): the same numbers as the rest of q16, and
intervals that are reproducible and shrink with more test images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from q16.errors import Q16Error
from q16.experiments.bootstrap_metrics import (
    METRICS,
    BootstrapSettings,
    MetricSettings,
    best_f1_threshold,
    estimate,
    metric_batch,
)
from q16.experiments.thresholds import (
    expected_calibration_error,
    precision_recall_table,
    reliability_bins,
)
from q16.metrics import binary_metrics


def _scores(n: int, seed: int = 0, decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 5 < 2).astype(np.int64)  # 40 % inappropriate
    probs = np.clip(0.6 * rng.random(n) + 0.35 * labels, 0.0, 1.0)
    if decimals is not None:
        probs = np.round(probs, decimals)  # ties, as saturated soft-prompt scores have
    probs[:3] = 1.0
    return probs, labels


@pytest.mark.parametrize("decimals", [None, 1])
def test_metrics_agree_with_q16_sklearn_and_threshold_helpers(decimals) -> None:
    probs, labels = _scores(80, decimals=decimals)
    settings = MetricSettings(threshold=0.5, flag_threshold=0.9, calibration_bins=10)
    best = best_f1_threshold(probs, labels)
    y = labels.astype(bool)
    values = metric_batch(probs[y][None], probs[~y][None], best, settings)[:, 0]
    got = dict(zip(METRICS, values, strict=True))
    q16 = binary_metrics(torch.tensor(probs), torch.tensor(labels), 0.5)
    at = precision_recall_table(probs, labels, np.array([0.9, best]))
    expected = {
        "accuracy": q16["accuracy"],
        "balanced_accuracy": q16["balanced_accuracy"],
        "auroc": roc_auc_score(labels, probs),
        "average_precision": average_precision_score(labels, probs),
        "precision_at_flag": at["precision"][0],
        "recall_at_flag": at["recall"][0],
        "precision_at_best_f1": at["precision"][1],
        "recall_at_best_f1": at["recall"][1],
        "ece": expected_calibration_error(reliability_bins(probs, labels, 10)),
    }
    assert got == pytest.approx(expected, abs=1e-6)
    table = precision_recall_table(probs, labels, np.unique(probs))
    assert at["f1"][1] == pytest.approx(table["f1"].max())


def _width(n: int, seed: int = 0) -> float:
    probs, labels = _scores(n)
    est = estimate(probs[None], labels, MetricSettings(), BootstrapSettings(500, seed=seed))
    auroc = METRICS.index("auroc")
    assert est.low[0, auroc] <= est.point[0, auroc] <= est.high[0, auroc]
    return float(est.high[0, auroc] - est.low[0, auroc])


def test_interval_is_reproducible_and_narrows_with_more_images() -> None:
    assert _width(60, seed=3) == _width(60, seed=3)
    assert _width(60, seed=3) != _width(60, seed=4)
    assert _width(600) < 0.5 * _width(60)


def test_differences_are_paired_against_the_first_source() -> None:
    probs, labels = _scores(100)
    noise = np.random.default_rng(1).random(100)
    est = estimate(
        np.stack([probs, noise, probs]), labels, MetricSettings(), BootstrapSettings(300)
    )
    auroc = METRICS.index("auroc")
    assert est.delta_point[0] == pytest.approx(0.0)
    # the same scores on the same resamples: zero difference in every resample
    assert est.delta_low[2, auroc] == est.delta_high[2, auroc] == 0.0
    assert est.delta_high[1, auroc] < 0  # noise is worse than the real scores, clearly
    assert est.delta_point[1, auroc] == pytest.approx(est.point[1, auroc] - est.point[0, auroc])


def test_a_split_without_both_classes_is_a_user_error() -> None:
    with pytest.raises(Q16Error, match="at least 2 of each"):
        estimate(
            np.array([[0.9, 0.8, 0.1]]), np.array([1, 1, 1]), MetricSettings(), BootstrapSettings()
        )


def test_bootstrap_settings_are_checked() -> None:
    with pytest.raises(Q16Error, match=r"bootstrap\.method"):
        BootstrapSettings(method="jackknife")
