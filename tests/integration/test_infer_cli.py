"""The CLI as users run it: SIGKILL at chosen points then resume; two CPU processes (gloo)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from omegaconf import DictConfig

from q16 import infer
from q16.inference.killpoints import AFTER_COMMIT, BEFORE_PARQUET, KILL_ENV, kill_setting
from q16.sources.wds import synthetic_images, write_shards

REPO = Path(__file__).resolve().parents[2]
Env = Callable[..., dict[str, str]]
N_SHARDS, PER_SHARD = 8, 8


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
        "fabric.accelerator=cpu",
        f"paths.root_dir={tmp_path}",
        *extra,
    ]


def scores(out: Path) -> pd.DataFrame:
    frames = [pq.read_table(p).to_pandas() for p in sorted((out / "scores").glob("*.parquet"))]
    return pd.concat(frames, ignore_index=True).sort_values(["shard", "key"], ignore_index=True)


def assert_split_between_two_ranks(out: Path) -> None:
    """Every input key scored exactly once, half of the images by each of ranks 0 and 1."""
    got = scores(out)
    expected = {s["__key__"] for s in synthetic_images(N_SHARDS * PER_SHARD)}
    assert len(got) == len(expected) and set(got["key"]) == expected
    ranks = [pd.read_json(p, typ="series") for p in sorted((out / "ranks").glob("*.json"))]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert [r["images"] for r in ranks] == [N_SHARDS * PER_SHARD // 2] * 2


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    folder = tmp_path / "shards"
    write_shards(synthetic_images(N_SHARDS * PER_SHARD), str(folder / "s-%04d.tar"), PER_SHARD)
    return folder


def killed_run(tmp_path: Path, out: Path, shards: Path, point: str, env: Env) -> None:
    """A CLI run that SIGKILLs itself at a chosen commit point (``q16.inference.killpoints``)."""
    log = tmp_path / f"{point.replace(':', '-')}.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            cli(tmp_path, out, shards, "infer.save_embeddings=true"),
            env=env(**{KILL_ENV: point}),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # so that the DataLoader worker left behind is killed too
        )
        returncode = proc.wait(timeout=300)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    assert returncode == -signal.SIGKILL, log.read_text()[-2000:]
    assert not (out / "summary.json").exists()


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, shards: Path, launch_env: Env
) -> None:
    """Killed after a commit, then between the embeddings and the parquet rename, then resumed:
    the result equals an uninterrupted run exactly (same keys and scores, none twice)."""
    out = tmp_path / "killed"
    killed_run(tmp_path, out, shards, kill_setting(AFTER_COMMIT, 2), launch_env)
    assert len(list((out / "scores").glob("*.parquet"))) == 2
    # resumes, commits one, dies in the next
    killed_run(tmp_path, out, shards, kill_setting(BEFORE_PARQUET, 2), launch_env)
    parquets = {p.stem for p in (out / "scores").glob("*.parquet")}
    npys = {p.stem for p in (out / "embeddings").glob("*.npy")}
    assert len(parquets) == 3 and len(npys - parquets) == 1  # embeddings written, shard not done

    resumed = subprocess.run(
        cli(tmp_path, out, shards, "infer.save_embeddings=true"),
        env=launch_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    reference = tmp_path / "reference"
    cfg = make_cfg(
        "model=tiny",
        f"data.shards={shards}",
        f"infer.out_dir={reference}",
        "infer.batch_size=4",
        "infer.num_workers=1",
        "infer.progress=false",
        "infer.save_embeddings=true",
        "fabric.accelerator=cpu",
        config_name="infer",
    )
    summary = infer.run(cfg)
    got, want = scores(out), scores(reference)
    assert len(got) == summary["images_scored"] == N_SHARDS * PER_SHARD
    assert not got.duplicated(["shard", "key"]).any()
    pd.testing.assert_frame_equal(got, want)
    for npy in sorted((reference / "embeddings").glob("*.npy")):
        np.testing.assert_array_equal(np.load(out / "embeddings" / npy.name), np.load(npy))


@pytest.mark.slow
def test_two_cpu_processes_split_shards_without_gaps(
    tmp_path: Path, shards: Path, launch_env: Env
) -> None:
    out = tmp_path / "ddp"
    run = subprocess.run(
        cli(tmp_path, out, shards, "fabric=ddp", "fabric.devices=2"),
        env=launch_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert_split_between_two_ranks(out)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_two_nodes_share_one_out_dir_without_gaps(
    tmp_path: Path, shards: Path, launch_env: Env
) -> None:
    """Multi-node as users launch it: the same command on each node, NODE_RANK set, one shared
    out_dir. Two 'nodes' of one CPU process each on this machine stand in for two machines."""
    out = tmp_path / "nodes"
    env = launch_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    command = cli(tmp_path, out, shards, "fabric=ddp", "fabric.devices=1", "fabric.num_nodes=2")
    nodes = [
        subprocess.Popen(
            command,
            env={**env, "NODE_RANK": str(node)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for node in (0, 1)
    ]
    logs = [node.communicate(timeout=300)[1] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(log[-1500:] for log in logs)
    assert_split_between_two_ranks(out)
    summary = pd.read_json(out / "summary.json", typ="series")
    assert summary["world_size"] == 2 and summary["images_scored"] == N_SHARDS * PER_SHARD
