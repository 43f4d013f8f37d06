"""The command line as a user meets it: subprocess runs of train.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.errors import one_line

REPO = Path(__file__).resolve().parents[2]


def _train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PROJECT_ROOT": str(tmp_path)}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), f"paths.cache_dir={tmp_path}/cache", *overrides],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_train_cli_soft_prompt_on_synthetic(tmp_path) -> None:
    result = _train(tmp_path, "prompt=soft", "data=synthetic", "model=tiny", "callbacks=none")
    assert result.returncode == 0, result.stderr[-2000:]
    (metrics_file,) = tmp_path.glob("outputs/train/*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    assert metrics["tuned"]["accuracy"] >= 0.9
    assert metrics["tuned"]["accuracy"] >= metrics["zeroshot"]["accuracy"] + 0.2
    assert "RANDOM weights" in result.stdout + result.stderr


@pytest.mark.slow
def test_missing_smid_exits_with_one_line(tmp_path) -> None:
    result = _train(tmp_path, "model=tiny", f"data.root={tmp_path}/no_smid")
    one_line(result, "SMID not found")
    assert "data=synthetic" in result.stderr


@pytest.mark.slow
def test_offline_weights_exit_with_one_line(tmp_path) -> None:
    result = _train(tmp_path, "model=ViT-B-32", "data=synthetic", f"model.cache_dir={tmp_path}/hf")
    one_line(result, "could not load weights ViT-B-32-quickgelu")


@pytest.mark.slow
def test_missing_mandatory_value_exits_with_one_line(tmp_path) -> None:
    result = _train(tmp_path, "model=tiny", "data=csv")
    one_line(result, "data.path must be set")


def test_prompt_dim_mismatch_exits_with_one_line(tmp_path) -> None:
    ref = REPO.parent / "shared" / "reference" / "q16_prompts" / "ViT-L-14.p"
    if not ref.is_file():
        pytest.skip(f"paper reference prompts not found at {ref}")
    code = (
        "from q16.errors import exit_on_user_error\n"
        "from q16.models.prompt_io import load_prompt\n"
        f"with exit_on_user_error():\n    load_prompt({str(ref)!r}, embed_dim=64)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    one_line(result, "prompt embedding dim 768 does not match the model's 64")
