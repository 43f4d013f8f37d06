"""Embedding files at scale, as users launch it: two CPU processes (gloo) split the files of a
clip-retrieval folder exactly, and a run SIGKILLed after some files finishes the rest."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from q16.inference.killpoints import AFTER_COMMIT, KILL_ENV, kill_setting

REPO = Path(__file__).resolve().parents[2]
Env = Callable[..., dict[str, str]]
ROWS = [5, 3, 4, 6, 2]


def cli(tmp_path: Path, out: Path, root: Path, *extra: str) -> list[str]:
    return [
        sys.executable, str(REPO / "infer.py"), "data=clip_retrieval", f"data.path={root}",
        "data.meta_columns=[url]", "model=ViT-L-14", f"infer.out_dir={out}",
        "infer.progress=false", "fabric.accelerator=cpu", f"paths.root_dir={tmp_path}", *extra,
    ]  # fmt: skip


def scores(out: Path) -> pd.DataFrame:
    frames = [pq.read_table(p).to_pandas() for p in sorted((out / "scores").glob("*.parquet"))]
    return pd.concat(frames, ignore_index=True).sort_values(["shard", "key"], ignore_index=True)


def expected_keys() -> set[str]:
    return {f"{i:05d}{j:04d}" for i, n in enumerate(ROWS) for j in range(n)}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """clip-retrieval's layout (as tests/unit/collections_layout.py): five files of rows."""
    root = tmp_path / "laion"
    (root / "img_emb").mkdir(parents=True)
    (root / "metadata").mkdir()
    for i, n in enumerate(ROWS):
        x = np.random.default_rng(i).standard_normal((n, 768)).astype(np.float32)
        np.save(root / "img_emb" / f"img_emb_{i}.npy", (x / np.linalg.norm(x, axis=1)[:, None]))
        keys = [f"{i:05d}{j:04d}" for j in range(n)]
        urls = [f"https://example.com/{k}.jpg" for k in keys]
        pd.DataFrame({"key": keys, "url": urls}).to_parquet(
            root / "metadata" / f"metadata_{i}.parquet"
        )
    return root


@pytest.mark.slow
def test_two_processes_partition_embedding_files_exactly(
    tmp_path: Path, folder: Path, launch_env: Env
) -> None:
    out = tmp_path / "ddp"
    run = subprocess.run(
        cli(tmp_path, out, folder, "fabric=ddp", "fabric.devices=2"),
        env=launch_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    got = scores(out)
    assert set(got["key"]) == expected_keys() and not got["key"].duplicated().any()
    ranks = [pd.read_json(p, typ="series") for p in sorted((out / "ranks").glob("*.json"))]
    # files 0, 2, 4 to rank 0 and 1, 3 to rank 1: whole files, each scored by one rank
    assert [r["rank"] for r in ranks] == [0, 1]
    assert [r["images"] for r in ranks] == [5 + 4 + 2, 3 + 6]
    assert (got["meta_url"] == "https://example.com/" + got["key"] + ".jpg").all()


@pytest.mark.slow
def test_killed_run_resumes_per_file(tmp_path: Path, folder: Path, launch_env: Env) -> None:
    """SIGKILLed right after its second file is committed; the next run scores the other three
    files only, and the result equals an uninterrupted run (no row lost or doubled)."""
    out = tmp_path / "killed"
    log = tmp_path / "killed.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            cli(tmp_path, out, folder),
            env=launch_env(**{KILL_ENV: kill_setting(AFTER_COMMIT, 2)}),
            stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
        )  # fmt: skip
        returncode = proc.wait(timeout=300)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    assert returncode == -signal.SIGKILL, log.read_text()[-2000:]
    assert sorted(p.stem for p in (out / "scores").glob("*.parquet")) == ["img_emb_0", "img_emb_1"]
    done = {p.name: p.stat().st_mtime_ns for p in (out / "scores").glob("*.parquet")}

    resumed = subprocess.run(
        cli(tmp_path, out, folder), env=launch_env(), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert {n: (out / "scores" / n).stat().st_mtime_ns for n in done} == done  # not redone
    reference = tmp_path / "reference"
    whole = subprocess.run(
        cli(tmp_path, reference, folder), env=launch_env(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert whole.returncode == 0, whole.stderr[-2000:]
    got = scores(out)
    assert set(got["key"]) == expected_keys() and not got["key"].duplicated().any()
    pd.testing.assert_frame_equal(got, scores(reference))
