"""The GPU paths end to end (skipped without CUDA): ``make test-gpu`` on a GPU machine.

CPU runs of the same commands are the reference: tuning must learn as well, and bf16 scores
must stay close to fp32 ones, with the same keys scored.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from omegaconf import DictConfig

from helpers.hostile import hostile_samples, write_tar
from q16 import infer
from q16.sources.wds import synthetic_images, write_shards
from q16.train import run_split as train_run

pytestmark = pytest.mark.gpu
MakeCfg = Callable[..., DictConfig]


def test_soft_prompt_trains_on_the_gpu(make_cfg: MakeCfg, synthetic_root: Path) -> None:
    cfg = make_cfg(
        "model=tiny", "data=synthetic", "device=cuda", "trainer=gpu", "callbacks=none",
        f"data.root={synthetic_root}", "prompt=soft",
    )  # fmt: skip
    metrics = train_run(cfg).metrics()
    assert metrics["tuned"]["accuracy"] >= 0.9
    assert metrics["tuned"]["accuracy"] >= metrics["zeroshot"]["accuracy"] + 0.2


def scored(make_cfg: MakeCfg, shards: Path, out: Path, accelerator: str) -> pd.DataFrame:
    cfg = make_cfg(
        "model=tiny", f"fabric.accelerator={accelerator}", f"data.shards={shards}",
        f"infer.out_dir={out}", "infer.batch_size=8", "infer.num_workers=2",
        "infer.progress=false", "infer.threshold=0.5", config_name="infer",
    )  # fmt: skip
    summary = infer.run(cfg)
    assert summary["device"].startswith(accelerator.replace("gpu", "cuda"))
    frames = [pq.read_table(p).to_pandas() for p in sorted((out / "scores").glob("*.parquet"))]
    return pd.concat(frames).sort_values(["shard", "key"], ignore_index=True)


def test_infer_on_the_gpu_scores_like_the_cpu(make_cfg: MakeCfg, tmp_path: Path) -> None:
    """bf16 autocast on CUDA (the default there): every key scored once, scores within 0.05
    of the fp32 CPU run, and hostile members still reported, not fatal."""
    shards = tmp_path / "shards"
    write_shards(synthetic_images(48, seed=3), str(shards / "g-%03d.tar"), maxcount=16)
    write_tar(shards / "hostile.tar", hostile_samples())
    gpu = scored(make_cfg, shards, tmp_path / "gpu", "gpu")
    cpu = scored(make_cfg, shards, tmp_path / "cpu", "cpu")
    assert list(gpu["key"]) == list(cpu["key"]) and not gpu.duplicated(["shard", "key"]).any()
    diff = (gpu["p_inappropriate"] - cpu["p_inappropriate"]).abs()
    assert diff.max() <= 0.05, f"bf16 on CUDA differs from fp32 on CPU by {diff.max():.4f}"
    clear = (cpu["p_inappropriate"] - 0.5).abs() > 0.05  # not at the threshold
    assert (gpu["flagged"] == cpu["flagged"])[clear].all()
    errors = (tmp_path / "gpu" / "errors.jsonl").read_text()
    assert errors == (tmp_path / "cpu" / "errors.jsonl").read_text() and errors


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpus_split_shards_without_gaps(
    tmp_path: Path, launch_env: Callable[..., dict[str, str]]
) -> None:
    import subprocess
    import sys

    shards = tmp_path / "shards"
    write_shards(synthetic_images(64, seed=4), str(shards / "d-%03d.tar"), maxcount=8)
    out = tmp_path / "ddp"
    repo = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, str(repo / "infer.py"), "model=tiny", "fabric=ddp", "fabric.devices=2",
         "fabric.accelerator=gpu", f"data.shards={shards}", f"infer.out_dir={out}",
         "infer.progress=false", f"paths.root_dir={tmp_path}"],
        env=launch_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    keys = [
        k for p in (out / "scores").glob("*.parquet") for k in pq.read_table(p)["key"].to_pylist()
    ]
    assert sorted(keys) == sorted(s["__key__"] for s in synthetic_images(64, seed=4))
