"""Per-category benchmarks: the metrics on constructed scores with known answers, intervals
that bracket them, the split by source, operating points that set_prompt_threshold.py reads,
and labelled sets read through `datasets` (a local save_to_disk folder and parquet)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from q16.data.categorized import CategorizedSet
from q16.errors import Q16Error
from q16.experiments.bootstrap_metrics import BootstrapSettings
from q16.experiments.category_bench import (
    METRICS,
    HeadScores,
    benchmark,
    operating_points,
    parse_labels,
    write_benchmark,
)
from q16.models.prompt_threshold import threshold_from_json

BOOT = BootstrapSettings(n_resamples=200, seed=0)


def _table() -> tuple[pd.DataFrame, list[HeadScores]]:
    """ "sexual": 20 images, perfectly separated by head a; "violence": 20 images, head a
    flags 5 of its 10 unsafe and 5 of its 10 safe images (precision 0.5, recall 0.5)."""
    cats = ["sexual"] * 20 + ["violence"] * 20
    labels = np.array([True] * 10 + [False] * 10 + [True] * 10 + [False] * 10)
    sources = (["real", "generated"] * 20)[:40]
    a = np.r_[
        np.full(10, 0.95), np.full(10, 0.05), [0.95] * 5 + [0.05] * 5, [0.95] * 5 + [0.05] * 5
    ]
    b = np.where(labels, 0.7, 0.3)  # right at argmax, never at its threshold 0.9
    table = pd.DataFrame({"category": cats, "label": labels, "source": sources})
    return table, [HeadScores("a", a, 0.9), HeadScores("b", b, 0.9)]


def _row(frame: pd.DataFrame, head: str, category: str, source: str = "all") -> pd.Series:
    hit = frame[
        (frame["head"] == head) & (frame["category"] == category) & (frame["source"] == source)
    ]
    assert len(hit) == 1
    return hit.iloc[0]


def test_known_answers_and_intervals_bracket_them() -> None:
    table, heads = _table()
    frame = benchmark(table, heads, BOOT)
    sexual = _row(frame, "a", "sexual")
    assert sexual["f1_at_threshold"] == 1.0 and sexual["auroc"] == 1.0
    assert sexual["f1_at_threshold_low"] == 1.0  # every resample is perfect too
    violence = _row(frame, "a", "violence")
    assert violence["precision_at_threshold"] == pytest.approx(0.5)
    assert violence["recall_at_threshold"] == pytest.approx(0.5)
    assert violence["f1_at_threshold"] == pytest.approx(0.5)
    assert violence["auroc"] == pytest.approx(0.5)
    assert violence["f1_at_threshold_low"] < 0.5 < violence["f1_at_threshold_high"]
    b = _row(frame, "b", "all")
    assert b["f1_at_argmax"] == 1.0 and b["recall_at_threshold"] == 0.0
    assert np.isnan(b["precision_at_threshold"])  # nothing flagged: undefined, not 0
    for metric in METRICS:
        ok = frame[metric].notna() & frame[f"{metric}_low"].notna()
        assert (frame.loc[ok, f"{metric}_low"] <= frame.loc[ok, metric] + 1e-12).all()
        assert (frame.loc[ok, metric] <= frame.loc[ok, f"{metric}_high"] + 1e-12).all()


def test_split_by_source_and_cells_too_small() -> None:
    table, heads = _table()
    frame = benchmark(table, heads, BOOT)
    assert set(frame["source"]) == {"all", "real", "generated"}
    real = _row(frame, "a", "sexual", "real")
    assert real["n_images"] == 10 and real["n_unsafe"] == 5
    tiny = benchmark(
        table.iloc[[0, 10, 11, 12, 20]],
        [HeadScores("a", heads[0].p[[0, 10, 11, 12, 20]], 0.9)],
        BOOT,
    )
    cell = _row(tiny, "a", "sexual")
    assert "needs 2 of each" in cell["note"] and pd.isna(cell.get("auroc"))
    no_source = benchmark(table.drop(columns="source"), heads, BOOT)
    assert set(no_source["source"]) == {"all"}
    again = benchmark(table, heads, BOOT)
    pd.testing.assert_frame_equal(frame, again)  # seeded
    other = benchmark(table, heads, BootstrapSettings(n_resamples=200, seed=1))
    assert not np.allclose(
        other["f1_at_threshold_low"].fillna(0), frame["f1_at_threshold_low"].fillna(0)
    )


def test_operating_points_are_what_set_prompt_threshold_reads(tmp_path: Path) -> None:
    table, heads = _table()
    points = operating_points(table, heads, target_precision=0.9)
    assert points["a@sexual"]["threshold"] is not None and points["a@sexual"]["precision"] >= 0.9
    assert points["a@violence"]["threshold"] is None  # 0.5 precision at best: not reached
    write_benchmark(
        tmp_path,
        benchmark(table, heads, BOOT),
        points,
        {"bootstrap": {"n_resamples": 200, "seed": 0}},
    )
    threshold, note = threshold_from_json(tmp_path / "operating_points.json", "a@sexual")
    assert threshold == points["a@sexual"]["threshold"] and "a@sexual" in note
    with pytest.raises(Q16Error, match="reached no threshold"):
        threshold_from_json(tmp_path / "operating_points.json", "a@violence")
    text = (tmp_path / "category_metrics.md").read_text()
    assert "| a | sexual | all | 20 | 10 | 0.9 | 1.000 [1.000, 1.000]" in text
    assert json.loads((tmp_path / "benchmark.json").read_text())["bootstrap"]["seed"] == 0


def test_labels_in_the_forms_datasets_use() -> None:
    assert parse_labels(["Unsafe", "safe", "1", 0, True, "0.0"]).tolist() == [
        True,
        False,
        True,
        False,
        True,
        False,
    ]
    with pytest.raises(Q16Error, match="not unsafe/safe"):
        parse_labels(["Unsafe", "maybe"])


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (value, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def _unsafebench_like(tmp_path: Path):
    datasets = pytest.importorskip("datasets")
    rows = {
        "image": [{"bytes": _png(i), "path": None} for i in range(6)],
        "safety_label": ["Unsafe", "Safe", "Unsafe", "Safe", "Safe", "Unsafe"],
        "category": ["Sexual", "Sexual", "Violence", "Violence", "Hate", "Hate"],
        "source": ["Laion5B", "Lexica", "Laion5B", "Lexica", "Laion5B", "Lexica"],
    }
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "safety_label": datasets.Value("string"),
            "category": datasets.Value("string"),
            "source": datasets.Value("string"),
        }
    )
    full = datasets.Dataset.from_dict(rows, features=features)
    return datasets.DatasetDict(
        {
            "train": full.select(range(4)),
            "test": full.select(range(4, 6)),
        }
    ), rows


def test_a_local_hugging_face_dataset_is_read_lazily_with_splits_merged(tmp_path: Path) -> None:
    data, rows = _unsafebench_like(tmp_path)
    data.save_to_disk(str(tmp_path / "ub"))
    loaded = CategorizedSet(str(tmp_path / "ub")).load()
    assert loaded.record["splits"] == {"train": 4, "test": 2}
    assert loaded.table["category"].tolist() == rows["category"]
    assert loaded.table["source"].tolist() == rows["source"]
    assert parse_labels(loaded.table["label"].tolist()).tolist() == [
        True,
        False,
        True,
        False,
        False,
        True,
    ]
    _, read = loaded.items[4]
    assert read() == rows["image"][4]["bytes"]  # the bytes as stored, decoded later by q16
    kept = CategorizedSet(str(tmp_path / "ub"), categories=("Hate", "Sexual")).load()
    assert kept.table["category"].tolist() == ["Sexual", "Sexual", "Hate", "Hate"]
    assert kept.items[2][1]() == rows["image"][4]["bytes"]  # rows and images stay paired
    with pytest.raises(Q16Error, match="'Spam' is not a category"):
        CategorizedSet(str(tmp_path / "ub"), categories=("Spam",)).load()
    only_test = CategorizedSet(str(tmp_path / "ub"), split="test").load()
    assert len(only_test.items) == 2
    with pytest.raises(Q16Error, match="no split 'validation'"):
        CategorizedSet(str(tmp_path / "ub"), split="validation").load()
    with pytest.raises(Q16Error, match="no column 'label'"):
        CategorizedSet(str(tmp_path / "ub"), label_column="label").load()


def test_parquet_and_csv_inputs(tmp_path: Path) -> None:
    data, rows = _unsafebench_like(tmp_path)
    data["train"].to_parquet(str(tmp_path / "train.parquet"))
    loaded = CategorizedSet(str(tmp_path / "train.parquet"), cache_dir=str(tmp_path / "hf")).load()
    assert len(loaded.items) == 4 and loaded.items[1][1]() == rows["image"][1]["bytes"]
    (tmp_path / "img").mkdir()
    for i in range(3):
        (tmp_path / "img" / f"{i}.png").write_bytes(_png(i))
    pd.DataFrame(
        {
            "image": ["img/0.png", "img/1.png", "img/missing.png"],
            "safety_label": [1, 0, 1],
            "category": ["x", "x", "y"],
        }
    ).to_csv(tmp_path / "labels.csv", index=False)
    csv = CategorizedSet(str(tmp_path / "labels.csv")).load()
    assert "source" not in csv.table.columns  # no such column: no split by source
    assert csv.items[0][1]() == _png(0)
    with pytest.raises(OSError):
        csv.items[2][1]()  # a record when the run reads it, not an error at load
    with pytest.raises(Q16Error, match="save_to_disk"):
        CategorizedSet(str(tmp_path / "img")).load()
