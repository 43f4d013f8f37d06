"""The one thing every training dataset yields: image files with binary labels."""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from q16.errors import Q16Error

log = logging.getLogger(__name__)


class LabelledSet(Protocol):
    """What a ``configs/labelled/data/<name>.yaml`` builds (SMID, synthetic, CSV, a review):
    the labelled images, listed and checked, none decoded yet."""

    def load(self) -> LabeledImages: ...


@dataclass
class LabeledImages:
    """Images with label 1 = inappropriate, 0 = appropriate.

    ``scores`` keeps the continuous rating (SMID's moral mean) when there is one, so splits
    can be stratified on it as in the paper. ``groups`` (from :func:`mark_duplicates`) gives
    images with the same bytes the same id, so that a split keeps each group on one side.
    """

    paths: list[Path]
    labels: np.ndarray
    scores: np.ndarray | None = None
    name: str = "images"
    dropped: dict[str, int] = field(default_factory=dict)
    groups: np.ndarray | None = None

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
            groups=None if self.groups is None else self.groups[index],
        )

    @property
    def n_duplicates(self) -> int:
        """Images that repeat an earlier one byte for byte (0 before :func:`mark_duplicates`)."""
        return 0 if self.groups is None else len(self.groups) - len(np.unique(self.groups))


def mark_duplicates(data: LabeledImages) -> LabeledImages:
    """Give exact duplicates (same file contents) one group id, and warn when there are any.

    A training CSV listing an image five times, or a folder holding copies, would otherwise
    put copies of test images into the training part: the reported accuracy would be inflated.
    An unreadable file is its own group (the feature cache reports it later).
    """
    digests: dict[Path, bytes | int] = {}
    ids: dict[bytes | int, int] = {}
    groups = np.empty(len(data), dtype=np.int64)
    for i, path in enumerate(data.paths):
        if path not in digests:
            digests[path] = _digest(path) or -i - 1  # unreadable: unique
        groups[i] = ids.setdefault(digests[path], len(ids))
    data.groups = groups
    if data.n_duplicates:
        labels = pd.Series(data.labels).groupby(groups).nunique()
        log.warning(
            "%s: %d of %d images are exact duplicates of another (same bytes; %d distinct "
            "images%s); each set of copies is kept on one side of every train/test split",
            data.name,
            data.n_duplicates,
            len(data),
            len(ids),
            f", {int((labels > 1).sum())} with conflicting labels" if (labels > 1).any() else "",
        )
    return data


def _digest(path: Path) -> bytes | None:
    digest = hashlib.blake2b(digest_size=16)
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.digest()


def threshold_labels(scores: np.ndarray, t_low: float, t_high: float) -> np.ndarray:
    """Label 1 below ``t_low``, 0 above ``t_high``, -1 (dropped) in between."""
    for name, value in (("t_low", t_low), ("t_high", t_high)):
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise Q16Error(f"data.{name}={value!r} must be a finite number")
    if t_low > t_high:
        raise Q16Error(f"data.t_low={t_low} must not exceed data.t_high={t_high}")
    labels = np.full(len(scores), -1, dtype=np.int64)
    labels[scores < t_low] = 1
    labels[scores > t_high] = 0
    return labels
