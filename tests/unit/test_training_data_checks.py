"""Training data a user gets wrong is one line, found before anything expensive; copies of an
image never sit on both sides of a split."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.errors import one_line
from q16.data.csv import CSVImageLabels
from q16.data.labeled import LabeledImages, mark_duplicates, threshold_labels
from q16.data.smid import SMIDDataset
from q16.data.splits import train_test_indices
from q16.errors import Q16Error


def _images(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        Image.new("RGB", (8, 8), (i * 7 % 256, i * 13 % 256, 40)).save(folder / f"{i}.png")
        names.append(f"{i}.png")
    return names


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "empty file"),
        ("path,label\n", "no rows below the header"),
        ("path,label\n0.png,yes\n1.png,1\n", "column 'label' is not a number in 1 row(s) (line 2)"),
        ("path,label\n0.png,2\n1.png,1\n", "column 'label' is not 0 or 1"),
        ("path,label\n0.png,\n1.png,1\n", "column 'label' is not a number"),
        ("path,label\n,0\n1.png,1\n", "column 'path' is empty in 1 row(s) (line 2)"),
        (
            "path,score\n0.png,1.0\n1.png,abc\n",
            "column 'score' is not a number in 1 row(s) (line 3)",
        ),
        ("path,score\n0.png,nan\n1.png,inf\n", "column 'score' is not a number in 2 row(s)"),
        (b"path,label\n\xff\xfe.png,1\n", "not a readable CSV"),
    ],
)
def test_bad_training_csv_is_one_line(tmp_path: Path, content: str | bytes, expected: str) -> None:
    _images(tmp_path, 2)
    path = tmp_path / "labels.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    score = "score" if "score" in str(content) else None
    with pytest.raises(Q16Error) as err:
        CSVImageLabels(str(path), score_column=score).load()
    assert expected in one_line(err)


def test_smid_norms_with_a_non_numeric_moral_mean(tmp_path: Path) -> None:
    _images(tmp_path / "img", 2)
    (tmp_path / "SMID_norms.csv").write_text("img_name,moral_mean\n0,1.5\n1,n/a\n")
    with pytest.raises(Q16Error) as err:
        SMIDDataset(str(tmp_path)).load()
    assert "column 'moral_mean' is not a number in 1 row(s) (line 3)" in one_line(err)


def test_image_names_are_strings_as_written(tmp_path: Path) -> None:
    folder = tmp_path / "img"
    folder.mkdir()
    for i, name in enumerate(["NA", "null", "007"]):
        Image.new("RGB", (8, 8), (80 * i, 0, 0)).save(folder / f"{name}.png")
    (tmp_path / "SMID_norms.csv").write_text("img_name,moral_mean\nNA,1.0\nnull,4.5\n007,1.2\n")
    data = SMIDDataset(str(tmp_path)).load()
    assert sorted(p.stem for p in data.paths) == ["007", "NA", "null"]


@pytest.mark.parametrize("bad", [float("nan"), "low", True])
def test_thresholds_must_be_numbers(bad: object) -> None:
    with pytest.raises(Q16Error, match="must be a finite number"):
        threshold_labels(np.array([1.0]), bad, 3.5)  # type: ignore[arg-type]


def test_duplicates_stay_on_one_side_of_every_split(tmp_path: Path, caplog) -> None:
    """A CSV with every row five times: no test image may be trained on."""
    names = _images(tmp_path, 40)
    labels = [i % 2 for i in range(40)]
    pd.DataFrame({"path": names * 5, "label": labels * 5}).to_csv(tmp_path / "x5.csv", index=False)
    shutil.copy(tmp_path / "0.png", tmp_path / "copy-of-0.png")  # same bytes, another name
    with open(tmp_path / "x5.csv", "a") as handle:
        handle.write("copy-of-0.png,0\n")
    with caplog.at_level(logging.WARNING):
        data = mark_duplicates(CSVImageLabels(str(tmp_path / "x5.csv")).load())
    assert data.n_duplicates == 40 * 4 + 1
    assert "161 of 201 images are exact duplicates" in caplog.text
    for seed in range(5):
        train, test = train_test_indices(data.labels, None, 0.25, seed, data.groups)
        assert not set(data.groups[train]) & set(data.groups[test])
        assert len(set(train) | set(test)) == len(data)
        assert len(set(data.groups[test])) == 10  # a quarter of the 40 distinct images
        assert data.labels[test].mean() == pytest.approx(0.5, abs=0.05)  # still stratified
    # the copies follow their image through subset (unreadable images dropped after caching)
    kept = data.subset(np.arange(len(data)) % 3 != 0)
    assert kept.groups is not None and len(kept.groups) == len(kept)


def test_without_duplicates_splits_are_unchanged(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(1, 5, 300)
    labels = threshold_labels(scores, 2.5, 3.5)
    keep = labels >= 0
    scores, labels = scores[keep], labels[keep]
    data = LabeledImages([tmp_path / f"{i}.png" for i in range(len(labels))], labels, scores)
    data = mark_duplicates(data)  # unreadable (absent) files: each its own group
    assert data.n_duplicates == 0
    for seed in range(3):
        plain = train_test_indices(labels, scores, 0.1, seed)
        grouped = train_test_indices(labels, scores, 0.1, seed, data.groups)
        assert all((a == b).all() for a, b in zip(plain, grouped, strict=True))
