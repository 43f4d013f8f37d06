"""Stratified splits as in the paper: test set held out, training part subsampled."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from q16.errors import Q16Error


def stratify_key(labels: np.ndarray, scores: np.ndarray | None) -> np.ndarray:
    """Label combined with the rounded rating, falling back to the label for rare strata."""
    labels = np.asarray(labels)
    if scores is None:
        return labels
    key = labels * 10 + np.rint(np.asarray(scores)).astype(np.int64)
    values, counts = np.unique(key, return_counts=True)
    rare = np.isin(key, values[counts < 2])
    key[rare] = labels[rare] * 10 - 1
    return key


def train_test_indices(
    labels: np.ndarray, scores: np.ndarray | None, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of one stratified train/test split."""
    index = np.arange(len(labels))
    try:
        train, test = train_test_split(
            index,
            test_size=test_fraction,
            random_state=seed,
            stratify=stratify_key(labels, scores),
        )
    except ValueError as err:  # too few images of a class for a stratified split
        raise Q16Error(
            f"cannot split {len(labels)} images ({int(np.sum(labels))} inappropriate) into "
            f"stratified train/test parts with test_fraction={test_fraction}: {err}"
        ) from err
    return np.sort(train), np.sort(test)


def subsample(index: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stratified share of ``index`` (at least one example per class)."""
    if fraction >= 1.0:
        return np.sort(index)
    n_classes = len(np.unique(labels[index]))
    n_keep = max(round(fraction * len(index)), n_classes)
    kept, _ = train_test_split(index, train_size=n_keep, random_state=seed, stratify=labels[index])
    return np.sort(kept)
