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
    labels: np.ndarray,
    scores: np.ndarray | None,
    test_fraction: float,
    seed: int,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of one stratified train/test split; images of one group stay on one side.

    ``groups`` (exact duplicates, :func:`q16.data.labeled.mark_duplicates`): the split is drawn
    over the first image of each group, stratified on its label and rating, and every copy
    follows it. Without duplicates that is the plain stratified split, image for image.
    """
    labels = np.asarray(labels)
    index = np.arange(len(labels))
    if groups is None:
        groups = index
    _, first = np.unique(groups, return_index=True)
    first = np.sort(first)
    try:
        _, test_first = train_test_split(
            first,
            test_size=test_fraction,
            random_state=seed,
            stratify=stratify_key(labels[first], None if scores is None else scores[first]),
        )
    except ValueError as err:  # too few images of a class for a stratified split
        distinct = f" ({len(first)} distinct)" if len(first) < len(labels) else ""
        raise Q16Error(
            f"cannot split {len(labels)} images{distinct} ({int(np.sum(labels))} inappropriate) "
            f"into stratified train/test parts with test_fraction={test_fraction}: {err}"
        ) from err
    in_test = np.isin(groups, groups[test_first])
    return index[~in_test], index[in_test]


def subsample(index: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stratified share of ``index`` (at least one example per class)."""
    if fraction >= 1.0:
        return np.sort(index)
    n_classes = len(np.unique(labels[index]))
    n_keep = max(round(fraction * len(index)), n_classes)
    kept, _ = train_test_split(index, train_size=n_keep, random_state=seed, stratify=labels[index])
    return np.sort(kept)
