"""The one thing every training dataset yields: image files with binary labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from q16.errors import Q16Error


@dataclass
class LabeledImages:
    """Images with label 1 = inappropriate, 0 = appropriate.

    ``scores`` keeps the continuous rating (SMID's moral mean) when there is one, so splits
    can be stratified on it as in the paper.
    """

    paths: list[Path]
    labels: np.ndarray
    scores: np.ndarray | None = None
    name: str = "images"
    dropped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.paths) != len(self.labels):
            raise ValueError("paths and labels differ in length")

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, mask: np.ndarray) -> LabeledImages:
        index = np.flatnonzero(mask)
        return LabeledImages(
            paths=[self.paths[i] for i in index],
            labels=self.labels[index],
            scores=None if self.scores is None else self.scores[index],
            name=self.name,
            dropped=dict(self.dropped),
        )


def threshold_labels(scores: np.ndarray, t_low: float, t_high: float) -> np.ndarray:
    """Label 1 below ``t_low``, 0 above ``t_high``, -1 (dropped) in between."""
    if t_low > t_high:
        raise Q16Error(f"data.t_low={t_low} must not exceed data.t_high={t_high}")
    labels = np.full(len(scores), -1, dtype=np.int64)
    labels[scores < t_low] = 1
    labels[scores > t_high] = 0
    return labels
