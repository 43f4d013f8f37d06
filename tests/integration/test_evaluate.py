"""evaluate.run and the evaluate.py CLI on the tiny random-weight CLIP and synthetic SMID."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from q16 import evaluate
from q16.errors import Q16Error
from q16.experiments.bootstrap_metrics import METRICS
from q16.experiments.single_split import SplitResult
from q16.train import run_split

REPO = Path(__file__).resolve().parents[2]
FAST = ("model=tiny", "data=synthetic", "device=cpu")
OUTPUTS = (
    "table.md",
    "table.csv",
    "differences.csv",
    "scores.csv",
    "roc.png",
    "precision_recall.png",
    "config.yaml",
    "run_info.json",
)


@pytest.fixture(scope="module")
def soft_run(tmp_path_factory, synthetic_root) -> SplitResult:
    """A soft prompt trained by train.py on the default split (seed 0) of the synthetic data."""
    from conftest import compose_config

    tmp = tmp_path_factory.mktemp("soft")
    overrides = [*FAST, "trainer=cpu", "callbacks=none", "logger=none", "prompt=soft"]
    return run_split(compose_config("train", [*overrides, f"data.root={synthetic_root}"], tmp))


@pytest.fixture
def eval_cfg(make_cfg, synthetic_root, tmp_path):
    def _cfg(*overrides: str):
        return make_cfg(
            *FAST,
            f"data.root={synthetic_root}",
            f"compare.out_dir={tmp_path / 'compare'}",
            "bootstrap.n_resamples=300",
            *overrides,
            config_name="evaluate",
        )

    return _cfg


@pytest.mark.slow
def test_trained_prompt_beats_zeroshot_with_intervals(eval_cfg, soft_run, tmp_path) -> None:
    sources = f"sources=[zeroshot,zeroshot_ensemble,'tuned={soft_run.prompt_file}']"
    result = evaluate.run(eval_cfg(sources))
    out = tmp_path / "compare"
    assert result.out_dir == out
    assert all((out / name).is_file() for name in OUTPUTS)

    table = pd.read_csv(out / "table.csv")
    assert list(table["source"]) == ["zeroshot", "zeroshot_ensemble", "tuned"]
    for metric in METRICS:
        assert {metric, f"{metric}_low", f"{metric}_high"} <= set(table.columns)
        for row in table[[metric, f"{metric}_low", f"{metric}_high"]].itertuples(index=False):
            point, low, high = row
            if not any(math.isnan(v) for v in row):
                assert low - 1e-9 <= point <= high + 1e-9, (metric, row)
    assert (table["n_test"] == soft_run.n_test).all()

    # the same test images as train.py: its before/after figures come back
    by_source = table.set_index("source")
    for name, expected in (("zeroshot", soft_run.zeroshot), ("tuned", soft_run.tuned)):
        for metric in ("accuracy", "balanced_accuracy", "auroc", "average_precision"):
            assert by_source.loc[name, metric] == pytest.approx(expected[metric], abs=1e-4)

    differences = pd.read_csv(out / "differences.csv").set_index(["source", "metric"])
    gain = differences.loc[("tuned", "balanced_accuracy")]
    assert gain["reference"] == "zeroshot"
    assert gain["difference_low"] > 0 and bool(gain["excludes_zero"])

    markdown = (out / "table.md").read_text()
    assert markdown.splitlines()[2].startswith("> **NOT A PAPER RESULT.**")
    assert "RANDOM weights" in markdown and "SYNTHETIC" in markdown
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == soft_run.n_test and {"label", "zeroshot", "tuned"} <= set(scores)
    info = json.loads((out / "run_info.json").read_text())
    assert info["random_weights"] is True and info["bootstrap"]["seed"] == 0
    assert [s["label"] for s in info["sources"]] == ["zeroshot", "zeroshot_ensemble", "tuned"]
    assert info["sources"][2]["trained_on"] == "synthetic"


def test_wrong_width_file_is_refused_before_encoding(eval_cfg, tmp_path, monkeypatch) -> None:
    wide = tmp_path / "violence_detection_vit_b_32.npy"
    np.save(wide, np.ones((2, 512), dtype=np.float32))

    def must_not_encode(*args, **kwargs):
        raise AssertionError("images were encoded before the prompt files were checked")

    monkeypatch.setattr(evaluate, "encode", must_not_encode)
    with pytest.raises(Q16Error) as err:
        evaluate.run(eval_cfg(f"sources=[zeroshot,{wide}]"))
    message = str(err.value)
    assert "violence_detection_vit_b_32.npy" in message and "512" in message
    assert "\n" not in message
    with pytest.raises(Q16Error, match=r"paper released prompts for .* not q16-tiny"):
        evaluate.run(eval_cfg("sources=[paper]"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("bootstrap.confidence=1.5", r"bootstrap\.confidence=1\.5 must lie in \(0, 1\)"),
        ("split.n_splits=0", r"split\.n_splits=0 must be a whole number >= 1"),
        ("bootstrap.method=jackknife", r"bootstrap\.method='jackknife' is not one of"),
        ("sources=[]", "sources is empty"),
    ],
)
def test_bad_settings_are_one_line_errors(eval_cfg, override, message) -> None:
    with pytest.raises(Q16Error, match=message):
        evaluate.run(eval_cfg(override))


def test_trainable_prompt_config_is_refused(eval_cfg) -> None:
    with pytest.raises(Q16Error, match=r"train it with python train\.py prompt=soft"):
        evaluate.run(eval_cfg("+prompt@prompts.soft=soft", "sources=[zeroshot,soft]"))


@pytest.mark.slow
def test_cli_bad_source_exits_with_one_line(tmp_path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PROJECT_ROOT": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), *FAST, "sources=[zeroshot,no_such.npy]"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("q16: error:")]
    assert len(errors) == 1 and "'no_such.npy' is neither paper" in errors[0], result.stderr
    assert not (tmp_path / "results").exists()


def test_defaults_compare_the_papers_prompts_with_zeroshot(make_cfg, tmp_path) -> None:
    train = make_cfg()
    cfg = make_cfg("data=synthetic", config_name="evaluate")
    # train.py's test split, so prompts trained with the defaults never saw the test images
    assert (cfg.split.test_fraction, cfg.split.seed) == (
        train.split.test_fraction,
        train.split.seed,
    )
    assert list(cfg.sources) == ["paper", "zeroshot", "zeroshot_ensemble"]
    assert cfg.model.name == "ViT-L-14"
    assert cfg.compare.out_dir == str(tmp_path / "results" / "compare" / "synthetic-ViT-L-14")


def test_default_sources_skip_what_the_model_has_not(eval_cfg, tmp_path, caplog) -> None:
    """``python evaluate.py model=tiny data=synthetic``: the default sources name the paper's
    prompts, released for three models only; they are skipped with one line, not a failure."""
    import logging

    with caplog.at_level(logging.WARNING, logger="q16"):
        result = evaluate.run(eval_cfg("bootstrap.n_resamples=20"))
    assert list(result.table["source"]) == ["zeroshot", "zeroshot_ensemble"]
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == 1 and "not q16-tiny" in skipped[0] and "\n" not in skipped[0]
    # a labelled copy is skipped the same way; nothing left is one line
    with pytest.raises(Q16Error, match="not q16-tiny, and nothing else is listed"):
        evaluate.run(eval_cfg('sources=[paper,"mine=paper"]'))
