"""Thresholds, calibration and the paper comparison, on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from q16.experiments import comparison
from q16.experiments.smid_cv import summarize
from q16.experiments.thresholds import (
    expected_calibration_error,
    precision_recall_table,
    reliability_bins,
    threshold_for_precision,
)
from q16.models.backbone import BackboneSpec, base_model_name


def test_precision_recall_table_counts() -> None:
    probs = np.array([0.1, 0.4, 0.6, 0.8, 0.95])
    labels = np.array([0, 0, 1, 0, 1])
    table = precision_recall_table(probs, labels, np.array([0.0, 0.5, 0.9, 0.99]))
    assert table["flagged"].tolist() == [5, 3, 1, 0]
    assert table["tp"].tolist() == [2, 2, 1, 0]
    assert table.loc[1, "precision"] == pytest.approx(2 / 3)
    assert np.isnan(table.loc[3, "precision"])  # nothing flagged: undefined, not zero
    point = threshold_for_precision(table, 0.9)
    assert point.threshold == 0.9 and point.recall == 0.5
    assert not threshold_for_precision(table.iloc[:2], 0.9).reached


def test_calibration_error() -> None:
    labels = np.array([0] * 8 + [1] * 2)
    calibrated = np.full(10, 0.2)
    assert expected_calibration_error(reliability_bins(calibrated, labels)) == pytest.approx(0)
    overconfident = np.where(labels == 1, 1.0, 0.9)
    bins = reliability_bins(overconfident, labels)
    assert bins["count"].sum() == 10
    assert expected_calibration_error(bins) == pytest.approx(0.8 * 0.9 + 0.2 * 0.0)


def test_summary_uses_paper_units() -> None:
    per_split = pd.DataFrame(
        {
            "method": ["soft"] * 2,
            "train_fraction": [1.0] * 2,
            "split": [0, 1],
            "accuracy": [0.9, 1.0],
            "balanced_accuracy": [0.8, 1.0],
            "auroc": [0.95, 1.0],
            "recall_appropriate": [0.9, 1.0],
            "recall_inappropriate": [0.7, 1.0],
        }
    )
    row = summarize(per_split).iloc[0]
    assert row["acc_mean"] == pytest.approx(95.0) and row["acc_std"] == pytest.approx(5.0)
    assert row["balanced_acc_mean"] == pytest.approx(90.0)
    assert row["recall_inappropriate_mean"] == pytest.approx(0.85)


def _summary(method: str, fraction: float, acc: float) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "method": method,
                "train_fraction": fraction,
                "acc_mean": acc,
                "acc_std": 1.0,
                "recall_inappropriate_mean": 0.9,
            }
        ]
    )


@pytest.mark.parametrize(
    ("model", "method", "paper_method", "column"),
    [
        ("ViT-B-32-quickgelu", "soft", "prompt_tuning_clip", "acc_mean"),
        ("RN50", "linear", "probe_tuning_clip", "acc_mean"),  # the paper probed RN50 only
        ("ViT-B-32", "zeroshot", "prompt_tuning_clip", "init_acc_mean"),
    ],
)
def test_comparison_reads_the_paper_table(
    reference_dir, model, method, paper_method, column
) -> None:
    reference = comparison.load_reference(reference_dir / "q16_smid_reference.csv")
    assert reference is not None
    expected = reference[
        (reference["model"] == base_model_name(model))
        & (reference["method"] == paper_method)
        & np.isclose(reference["train_fraction"], 0.1)
    ][column].item()
    table = comparison.comparison_table(
        _summary(method, 0.1, 80.0), reference, base_model_name(model)
    )
    assert table.loc[0, "paper_acc_mean"] == pytest.approx(expected)
    assert table.loc[0, "acc_diff"] == pytest.approx(80.0 - expected)


def test_markdown_claims_nothing_for_random_weights(reference_dir) -> None:
    reference = comparison.load_reference(reference_dir / "q16_smid_reference.csv")
    table = comparison.comparison_table(_summary("soft", 1.0, 90.0), reference, "ViT-L-14")
    caveats = comparison.run_caveats(BackboneSpec("ViT-L-14", pretrained=None), "smid")
    ctx = comparison.RunContext("ViT-L-14", "ViT-L-14", None, "smid", "cmd", caveats)
    text = comparison.comparison_markdown(table, ctx, reference_found=True)
    assert "NOT A REPRODUCTION" in text and "RANDOM weights" in text
    assert "Mean |Δ acc|" not in text
    real = comparison.RunContext("ViT-L-14", "ViT-L-14", "openai", "smid", "cmd", [])
    text = comparison.comparison_markdown(table, real, reference_found=True)
    assert "NOT A REPRODUCTION" not in text and "Mean |Δ acc|" in text


def test_caveats_name_what_differs_from_the_paper() -> None:
    assert comparison.run_caveats(BackboneSpec("ViT-L-14", pretrained="openai"), "smid") == []
    laion = comparison.run_caveats(BackboneSpec("ViT-L-14", pretrained="laion2b_s32b_b82k"), "smid")
    assert len(laion) == 1 and "not the OpenAI CLIP weights" in laion[0]
    synthetic = comparison.run_caveats(BackboneSpec("q16-tiny", pretrained=None), "synthetic")
    assert len(synthetic) == 2
    gelu = BackboneSpec("ViT-L-14", pretrained="openai", quick_gelu=False)
    assert len(comparison.run_caveats(gelu, "smid")) == 1
    hub = BackboneSpec("hf-hub:org/repo", pretrained="openai")
    assert len(comparison.run_caveats(hub, "smid")) == 1


def test_missing_reference_is_said_not_fatal(tmp_path) -> None:
    assert comparison.load_reference(tmp_path / "absent.csv") is None
    table = comparison.comparison_table(_summary("soft", 1.0, 90.0), None, "ViT-L-14")
    ctx = comparison.RunContext("ViT-L-14", "ViT-L-14", "openai", "smid", "cmd", [])
    assert "reference table was not found" in comparison.comparison_markdown(table, ctx, False)
