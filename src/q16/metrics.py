"""Binary metrics for 'inappropriate' (label 1) vs 'appropriate' (label 0)."""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    binary_average_precision,
    binary_f1_score,
    binary_recall,
    binary_specificity,
)

METRIC_NAMES = (
    "accuracy",
    "balanced_accuracy",
    "auroc",
    "average_precision",
    "f1",
    "recall_appropriate",
    "recall_inappropriate",
)


def binary_metrics(
    p_inappropriate: torch.Tensor, labels: torch.Tensor, threshold: float = 0.5
) -> dict[str, float]:
    """All metrics as fractions in [0, 1]; predictions are ``p >= threshold``.

    AUROC and AP need both classes; with one class present they are reported as NaN.
    """
    probs = p_inappropriate.detach().float().cpu()
    target = labels.detach().long().cpu()
    # torchmetrics thresholds with ">"; the rest of q16 (flagging, thresholds.csv) uses ">="
    preds = (probs >= threshold).long()
    recall_bad = binary_recall(preds, target).item()
    recall_good = binary_specificity(preds, target).item()
    both_classes = bool(target.min() != target.max())
    return {
        "accuracy": binary_accuracy(preds, target).item(),
        "balanced_accuracy": (recall_bad + recall_good) / 2,
        "auroc": binary_auroc(probs, target).item() if both_classes else float("nan"),
        "average_precision": (
            binary_average_precision(probs, target).item() if both_classes else float("nan")
        ),
        "f1": binary_f1_score(preds, target).item(),
        "recall_appropriate": recall_good,
        "recall_inappropriate": recall_bad,
    }
