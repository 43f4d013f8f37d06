"""SMID layout, thresholds, CSV input, synthetic data and stratified splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from q16.data.csv import CSVImageLabels
from q16.data.labeled import threshold_labels
from q16.data.smid import SMIDDataset
from q16.data.splits import subsample, train_test_indices
from q16.data.synthetic import SyntheticSMID
from q16.errors import Q16Error


def test_thresholds_follow_the_paper() -> None:
    labels = threshold_labels(np.array([1.0, 2.49, 2.5, 3.0, 3.5, 3.51, 5.0]), 2.5, 3.5)
    assert labels.tolist() == [1, 1, -1, -1, -1, 0, 0]
    with pytest.raises(Q16Error, match=r"data\.t_low=4\.0 must not exceed data\.t_high=3\.0"):
        threshold_labels(np.array([1.0]), 4.0, 3.0)


def test_too_few_images_for_a_stratified_split_is_a_user_error() -> None:
    with pytest.raises(Q16Error, match="cannot split 3 images"):
        train_test_indices(np.array([0, 1, 1]), None, 0.1, seed=0)


def _write_smid(root, names_scores, ext=".jpg"):
    (root / "img").mkdir(parents=True)
    for name, _ in names_scores:
        Image.new("RGB", (8, 8)).save(root / "img" / f"{name}{ext}")
    pd.DataFrame(
        {"img_name": [n for n, _ in names_scores], "moral_mean": [s for _, s in names_scores]}
    ).to_csv(root / "SMID_norms.csv", index=False)


def test_smid_reader_thresholds_and_drops(tmp_path) -> None:
    _write_smid(tmp_path, [("a", 1.2), ("b", 3.0), ("c", 4.6), ("d", 2.0)], ext=".png")
    data = SMIDDataset(str(tmp_path)).load()
    assert [p.stem for p in data.paths] == ["a", "c", "d"]
    assert data.labels.tolist() == [1, 0, 1]
    assert data.dropped == {"missing_image": 0, "between_thresholds": 1}


def test_smid_thresholds_are_configurable(tmp_path) -> None:
    _write_smid(tmp_path, [("a", 1.2), ("b", 3.0), ("c", 4.6)])
    assert len(SMIDDataset(str(tmp_path), t_low=3.2, t_high=3.2).load()) == 3


def test_missing_smid_says_where_to_get_it(tmp_path) -> None:
    with pytest.raises(
        Q16Error, match=r"SMID not found: expected .*SMID_norms.csv.*data=synthetic"
    ):
        SMIDDataset(str(tmp_path / "nowhere")).load()


def test_synthetic_data_has_both_classes_and_is_cached(tmp_path) -> None:
    source = SyntheticSMID(str(tmp_path / "syn"), n_images=60)
    first = source.load()
    mtime = (tmp_path / "syn" / "SMID_norms.csv").stat().st_mtime_ns
    second = source.load()
    assert set(first.labels.tolist()) == {0, 1}
    assert [p.name for p in first.paths] == [p.name for p in second.paths]
    assert (tmp_path / "syn" / "SMID_norms.csv").stat().st_mtime_ns == mtime


def test_csv_with_labels_and_with_scores(tmp_path) -> None:
    for name in ["x", "y", "z"]:
        Image.new("RGB", (8, 8)).save(tmp_path / f"{name}.png")
    pd.DataFrame({"path": ["x.png", "y.png", "z.png"], "label": [0, 1, 1]}).to_csv(
        tmp_path / "labels.csv", index=False
    )
    assert CSVImageLabels(str(tmp_path / "labels.csv")).load().labels.tolist() == [0, 1, 1]
    pd.DataFrame({"path": ["x.png", "y.png", "z.png"], "rating": [1.0, 3.0, 4.5]}).to_csv(
        tmp_path / "scores.csv", index=False
    )
    data = CSVImageLabels(str(tmp_path / "scores.csv"), score_column="rating").load()
    assert data.labels.tolist() == [1, 0]


def test_csv_errors(tmp_path) -> None:
    with pytest.raises(Q16Error, match="CSV file not found"):
        CSVImageLabels(str(tmp_path / "none.csv")).load()
    pd.DataFrame({"path": ["gone.png"], "label": [1]}).to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(Q16Error, match="do not exist"):
        CSVImageLabels(str(tmp_path / "l.csv")).load()


def test_splits_are_stratified_disjoint_and_seeded() -> None:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(1, 2.4, 300), rng.uniform(3.6, 5, 700)])
    labels = threshold_labels(scores, 2.5, 3.5)
    train, test = train_test_indices(labels, scores, 0.1, seed=1)
    assert len(test) == 100 and not set(train) & set(test)
    assert labels[test].mean() == pytest.approx(0.3, abs=0.02)
    again, _ = train_test_indices(labels, scores, 0.1, seed=1)
    other, _ = train_test_indices(labels, scores, 0.1, seed=2)
    assert (again == train).all() and not (other == train).all()
    small = subsample(train, labels, 0.01, seed=0)
    assert set(small) <= set(train) and set(labels[small]) == {0, 1}
