"""The CLI as users run it: SIGKILL mid-run then resume; two CPU processes (gloo)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from omegaconf import DictConfig

from q16 import infer
from q16.data.wds import synthetic_images, write_shards

REPO = Path(__file__).resolve().parents[2]
N_SHARDS, PER_SHARD = 32, 8


def cli(tmp_path: Path, out: Path, shards: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "infer.py"),
        "model=tiny",
        f"data.shards={shards}",
        f"infer.out_dir={out}",
        "infer.batch_size=4",
        "infer.num_workers=1",
        "infer.progress=false",
        "trainer.accelerator=cpu",
        f"paths.root_dir={tmp_path}",
        *extra,
    ]


def scores(out: Path) -> pd.DataFrame:
    frames = [pq.read_table(p).to_pandas() for p in sorted((out / "scores").glob("*.parquet"))]
    return pd.concat(frames, ignore_index=True).sort_values(["shard", "key"], ignore_index=True)


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    folder = tmp_path / "shards"
    write_shards(synthetic_images(N_SHARDS * PER_SHARD), str(folder / "s-%04d.tar"), PER_SHARD)
    return folder


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, shards: Path
) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        cli(tmp_path, out, shards),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the kill below reaches the DataLoader workers too
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if list((out / "scores").glob("*.parquet")):
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = len(list((out / "scores").glob("*.parquet")))
    assert 0 < done_at_kill < N_SHARDS, "the kill should land mid-run"
    assert not (out / "summary.json").exists()

    resumed = subprocess.run(cli(tmp_path, out, shards), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    reference = tmp_path / "reference"
    cfg = make_cfg(
        "model=tiny",
        f"data.shards={shards}",
        f"infer.out_dir={reference}",
        "infer.batch_size=4",
        "infer.num_workers=1",
        "infer.progress=false",
        "trainer.accelerator=cpu",
        config_name="infer",
    )
    summary = infer.run(cfg)
    got, want = scores(out), scores(reference)
    assert len(got) == summary["images_scored"] == N_SHARDS * PER_SHARD
    assert not got.duplicated(["shard", "key"]).any()
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.slow
def test_two_cpu_processes_split_shards_without_gaps(tmp_path: Path, shards: Path) -> None:
    out = tmp_path / "ddp"
    run = subprocess.run(
        cli(tmp_path, out, shards, "trainer=ddp", "trainer.devices=2"),
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    got = scores(out)
    expected = {s["__key__"] for s in synthetic_images(N_SHARDS * PER_SHARD)}
    assert len(got) == len(expected) and set(got["key"]) == expected
    ranks = [pd.read_json(p, typ="series") for p in sorted((out / "ranks").glob("*.json"))]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert [r["images"] for r in ranks] == [N_SHARDS * PER_SHARD // 2] * 2
