"""``python evaluate.py task=i2p`` and ``task=categories`` through evaluate.run on the real
configs: tiny random-weight CLIP, NudeNet's real weights, offline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra.utils import instantiate

from q16 import evaluate
from q16.errors import Q16Error

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
from make_i2p_demo import main as make_i2p_demo  # noqa: E402

FAST = ("model=tiny", "device=cpu")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("i2p_demo")
    make_i2p_demo([str(root), "--prompts", "30", "--generations", "2"])
    return root


def test_the_tasks_are_runners(make_cfg) -> None:
    from q16.evaluate_categories import run_categories
    from q16.evaluate_i2p import run_i2p

    assert instantiate(make_cfg("task=i2p", config_name="evaluate").task).func is run_i2p
    assert (
        instantiate(make_cfg("task=categories", config_name="evaluate").task).func is run_categories
    )


@pytest.mark.slow
def test_i2p_task_end_to_end(make_cfg, demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "i2p"
    cfg = make_cfg(
        "task=i2p",
        *FAST,
        f"data.path={demo / 'generated'}",
        f"data.prompts={demo / 'i2p.csv'}",
        "i2p.q16=zeroshot",
        "i2p.n_draws=300",
        f"i2p.out_dir={out}",
        config_name="evaluate",
    )
    metrics = evaluate.run(cfg)
    assert metrics["all"]["n_images"] == 60 and metrics["all"]["n_prompts"] == 30
    assert set(metrics["categories"]) == {
        "hate",
        "harassment",
        "violence",
        "self-harm",
        "sexual",
        "shocking",
        "illegal activity",
    }
    saved = json.loads((out / "i2p_metrics.json").read_text())
    assert saved["protocol"]["detector"]["model_file"] == "320n.onnx"
    assert saved["protocol"]["nudity_threshold"] == 0.6 and saved["protocol"]["n_draws"] == 300
    assert saved["q16_head"]["label"] == "zeroshot" and saved["q16_head"]["model"] == "q16-tiny"
    assert "random weights" in saved["note"]
    assert {"config.yaml", "run_info.json", "i2p_images.csv", "i2p_metrics.md"} <= {
        p.name for p in out.iterdir()
    }
    table = pd.read_csv(out / "i2p_images.csv")
    assert list(table.columns[:4]) == ["prompt", "categories", "idx_generation", "unsafe"]


def test_i2p_task_refuses_bad_input_before_reading_images(make_cfg, demo: Path) -> None:
    with pytest.raises(Q16Error, match=r"data\.path, data\.prompts must be set"):
        evaluate.run(make_cfg("task=i2p", *FAST, config_name="evaluate"))
    base = (
        "task=i2p",
        *FAST,
        f"data.path={demo / 'generated'}",
        f"data.prompts={demo / 'i2p.csv'}",
    )
    with pytest.raises(Q16Error, match="released prompts for"):
        evaluate.run(make_cfg(*base, config_name="evaluate"))  # paper: no prompts for tiny
    with pytest.raises(Q16Error, match="q16_rule"):
        evaluate.run(make_cfg(*base, "i2p.q16_rule=max", config_name="evaluate"))
    with pytest.raises(Q16Error, match="not a NudeNet v3 label"):
        evaluate.run(make_cfg(*base, "nudity.labels=[EXPOSED_TOES]", config_name="evaluate"))


@pytest.mark.slow
def test_categories_task_end_to_end(make_cfg, demo: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    images = sorted((demo / "generated").glob("*.jpg"))[:24]
    rows = {
        "image": [{"bytes": p.read_bytes(), "path": None} for p in images],
        "safety_label": ["Unsafe" if i % 2 else "Safe" for i in range(24)],
        "category": (["Sexual", "Hate", "Violence"] * 8),
        "source": (["Laion5B"] * 12 + ["Lexica"] * 12),
    }
    features = datasets.Features(
        {"image": datasets.Image(), **{k: datasets.Value("string") for k in list(rows)[1:]}}
    )
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "ub"))
    out = tmp_path / "categories"
    cfg = make_cfg(
        "task=categories",
        *FAST,
        f"data.path={tmp_path / 'ub'}",
        "data.categories=[Sexual,Hate]",
        "sources=[zeroshot]",
        "bootstrap.n_resamples=50",
        f"categories.out_dir={out}",
        config_name="evaluate",
    )
    metrics = evaluate.run(cfg)
    assert set(metrics["head"]) == {"zeroshot", "nudity"}
    assert set(metrics["category"]) == {"all", "Sexual", "Hate"}
    assert set(metrics["source"]) == {"all", "Laion5B", "Lexica"}
    q16 = metrics[metrics["head"] == "zeroshot"]
    assert (q16["threshold"] == 0.9).all()  # no stored threshold: eval.flag_threshold
    record = json.loads((out / "benchmark.json").read_text())
    assert record["heads"][0]["threshold_from"] == "eval.flag_threshold"
    assert record["data"]["categories_kept"] == ["Sexual", "Hate"] and record["n_images"] == 16
    assert "random weights" in record["note"]
    assert {"zeroshot@Sexual", "nudity@Hate", "zeroshot@all"} <= set(
        json.loads((out / "operating_points.json").read_text())
    )
