"""scripts/bench_embeddings.py still runs (tiny sizes): its JSON has every measure, with setup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_embeddings_writes_every_measure(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_embeddings.py"), "--rows", "2000",
         "--files", "2", "--images", "8", "--threads", "1", "--out-dir", str(tmp_path)],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads((tmp_path / "embeddings-cpu.json").read_text())
    assert result["rows"] == 2000 and result["a_raw_read_embeddings_per_s"] > 0
    for run_name in ("b_q16_one_head", "b_num_workers_1", "one_file_same_size"):
        assert result[run_name]["images_scored"] == result["rows"] // (
            2 if run_name == "one_file_same_size" else 1
        ), run_name
    assert result["b_q16_one_head"]["num_workers"] == 0  # the default for embedding sources
    # four heads: measured where heads= exists, else said so (never a made-up number)
    assert "embeddings_per_s_loop" in result["c_four_heads"] or result["c_over_b_loop"] == (
        "not measured: heads not available"
    )
    assert result["machine"] and result["git_commit"] and result["date"] and result["command"]
