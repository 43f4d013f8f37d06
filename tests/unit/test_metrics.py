"""Metric conventions: label 1 = inappropriate, predicted when p >= threshold."""

from __future__ import annotations

import math

import torch

from q16.metrics import METRIC_NAMES, binary_metrics


def test_prediction_at_the_threshold_counts_as_inappropriate() -> None:
    # the same ">=" as flagging in infer.py and thresholds.csv (torchmetrics alone uses ">")
    metrics = binary_metrics(torch.tensor([0.5, 0.2]), torch.tensor([1, 0]), threshold=0.5)
    assert metrics["accuracy"] == 1.0
    metrics = binary_metrics(torch.tensor([1.0, 0.2]), torch.tensor([1, 0]), threshold=1.0)
    assert metrics["recall_inappropriate"] == 1.0


def test_per_class_recall_and_balanced_accuracy() -> None:
    probs = torch.tensor([0.9, 0.8, 0.1, 0.7, 0.2, 0.3])
    labels = torch.tensor([1, 1, 1, 0, 0, 0])
    metrics = binary_metrics(probs, labels)
    assert set(metrics) == set(METRIC_NAMES)
    assert math.isclose(metrics["recall_inappropriate"], 2 / 3, rel_tol=1e-6)
    assert math.isclose(metrics["recall_appropriate"], 2 / 3, rel_tol=1e-6)
    assert math.isclose(metrics["balanced_accuracy"], 2 / 3, rel_tol=1e-6)
    assert math.isclose(metrics["auroc"], 6 / 9, rel_tol=1e-6)  # 6 of 9 pairs ranked right


def test_single_class_gives_nan_rank_metrics() -> None:
    metrics = binary_metrics(torch.tensor([0.9, 0.1]), torch.tensor([1, 1]))
    assert math.isnan(metrics["auroc"]) and metrics["accuracy"] == 0.5
