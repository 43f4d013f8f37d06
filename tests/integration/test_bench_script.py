"""scripts/bench_infer.py (on the tiny model) and bench_decode.py still run: their JSON has
every measure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_infer_writes_every_measure(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_infer.py"), "--model", "q16-tiny",
         "--images", "16", "--naive-images", "4", "--repeats", "1", "--rss-shards", "1",
         "--shard-size", "4", "--out-dir", str(tmp_path)],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""},  # the CPU setup
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads((tmp_path / "infer-q16-tiny-cpu.json").read_text())
    assert result["random_weights"] is True and result["autocast"] == "off"
    for measure in ("a_model_only_images_per_s", "b_end_to_end_images_per_s",
                    "c_naive_images_per_s", "a_model_only_batch1_images_per_s"):  # fmt: skip
        assert result[measure] > 0, measure
    assert result["peak_rss"]["1x"]["images"] == 4 and result["peak_rss"]["10x"]["images"] == 40
    assert set(result["targets_met"]) == {"b_ge_0.9a", "b_ge_2c", "rss_10x_le_1.1x"}
    assert result["machine"] and result["git_commit"] and result["date"]


@pytest.mark.slow
def test_bench_decode_writes_both_decoders_and_the_workers_needed(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_decode.py"), "--images", "4",
         "--repeats", "1", "--gpu-images", "4", "--batch-device", "cpu", "--out-dir",
         str(tmp_path)],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads((tmp_path / "decode-cpu.json").read_text())
    for kind in ("imagenet_like", "img2dataset_like"):
        figures = result[kind]
        assert figures["pil_images_per_s"] > 0 and figures["fast_images_per_s"] > 0
        assert figures["pixels_fast_vs_pil"]["max_levels"] <= 2
        assert set(figures["workers_needed"]) == {"ViT-L-14 at 3000/s", "ViT-B-16 at 12000/s"}
        assert figures["gpu"]["device"] == "cpu" and figures["gpu"]["fallbacks"] == 0
    assert result["setup"]["torch_threads"] == 1 and result["git_commit"]


@pytest.mark.slow
def test_bench_active_review_records_goal_and_setup(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_active_review.py"), "--rounds", "2",
         "--seeds", "1", "--pool", "300", "--test", "200", "--epochs", "3",
         "--out", str(tmp_path)],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads((tmp_path / "active_review.json").read_text())
    assert set(result["runs"]) == {"random", "active"}
    assert [p["reviews"] for p in result["runs"]["active"][0]] == [0, 50, 100]
    assert isinstance(result["summary"]["goal_met"], bool)
    assert result["git_commit"] and result["date"] and "synthetic" in result["setup"]["model"]
    assert (tmp_path / "active_review.png").stat().st_size > 0
