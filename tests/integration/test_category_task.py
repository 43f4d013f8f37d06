"""The per-category benchmark end to end on a local Hugging Face dataset made here through
`datasets` (UnsafeBench's columns, synthetic images, a broken one), with the tiny random CLIP's
zero-shot head and NudeNet's real weights."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from q16.data.categorized import CategorizedSet
from q16.detectors.nudenet import NudeNetDetector
from q16.experiments.bootstrap_metrics import BootstrapSettings
from q16.experiments.category_task import (
    CategoryRun,
    NudityHeadSpec,
    PromptHeadSpec,
    benchmark_categories,
)
from q16.models.prompts import class_embedding_prompt


def _jpeg(rng: np.random.Generator, red: bool) -> bytes:
    pixels = rng.integers(0, 120, (40, 40, 3)).astype(np.uint8)
    pixels[..., 0 if red else 2] += 120
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.slow
def test_benchmark_on_a_local_hf_dataset(tmp_path: Path, tiny_backbone) -> None:
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(0)
    n = 24
    unsafe = np.arange(n) % 2 == 0
    images = [{"bytes": _jpeg(rng, bool(u)), "path": None} for u in unsafe]
    images[5] = {"bytes": b"\xff\xd8 not a jpeg", "path": None}
    rows = {
        "image": images,
        "safety_label": ["Unsafe" if u else "Safe" for u in unsafe],
        "category": (["Sexual", "Violence", "Hate"] * n)[:n],
        "source": (["Laion5B"] * 2 + ["Lexica"] * 2) * (n // 4),
    }
    features = datasets.Features(
        {
            "image": datasets.Image(),
            **{k: datasets.Value("string") for k in ("safety_label", "category", "source")},
        }
    )
    full = datasets.Dataset.from_dict(rows, features=features)
    datasets.DatasetDict(
        {"train": full.select(range(16)), "test": full.select(range(16, n))}
    ).save_to_disk(str(tmp_path / "ub"))
    data = CategorizedSet(str(tmp_path / "ub")).load()
    q16 = PromptHeadSpec(
        "q16", class_embedding_prompt(tiny_backbone), 0.9, "infer.threshold", {"source": "zeroshot"}
    )
    run = CategoryRun(
        tmp_path / "out", BootstrapSettings(n_resamples=100), target_precision=0.6, batch_size=8
    )
    metrics = benchmark_categories(
        data, tiny_backbone, [q16], NudityHeadSpec(NudeNetDetector()), run
    )
    out = tmp_path / "out"
    assert set(metrics["head"]) == {"q16", "nudity"}
    assert set(metrics["category"]) == {"all", "Sexual", "Violence", "Hate"}
    assert set(metrics["source"]) == {"all", "Laion5B", "Lexica"}
    record = json.loads((out / "benchmark.json").read_text())
    assert record["n_unreadable"] == 1 and record["data"]["splits"] == {"train": 16, "test": 8}
    assert record["heads"][1]["detector"]["model_file"] == "320n.onnx"
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == n - 1 and {"p_q16", "p_nudity"} <= set(scores.columns)
    assert (scores["p_nudity"] < 0.6).all()
    everything = metrics[
        (metrics["head"] == "q16") & (metrics["category"] == "all") & (metrics["source"] == "all")
    ]
    assert everything.iloc[0]["n_images"] == n - 1
    assert 0.0 <= everything.iloc[0]["auroc"] <= 1.0
    errors = (out / "errors.jsonl").read_text().splitlines()
    assert len(errors) == 1 and "row 5" in errors[0]
    points = json.loads((out / "operating_points.json").read_text())
    assert {"q16@all", "q16@Sexual", "nudity@Hate"} <= set(points)
    assert all(v["target_precision"] == 0.6 and v["n_scores"] > 0 for v in points.values())
