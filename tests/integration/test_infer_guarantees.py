"""What q16 guarantees (docs/inference.md): a hostile dataset runs to the end with every bad
input recorded; a careless command is one line before anything is written; resume trusts
only what it can verify."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from omegaconf import DictConfig

from conftest import infer_overrides
from helpers.hostile import hostile_members, hostile_samples, write_hostile_folder, write_tar
from q16 import infer
from q16.errors import Q16Error
from q16.inference.guard import out_dir_lock
from q16.sources.wds import synthetic_images, write_shards

MakeCfg = Callable[..., DictConfig]
REPO = Path(__file__).resolve().parents[2]


def base(out: Path, *extra: str) -> list[str]:
    return infer_overrides(out, *extra)


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "infer.py"), *args],
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PROJECT_ROOT": str(cwd)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def rows(out: Path) -> pd.DataFrame:
    frames = [pq.read_table(p).to_pandas() for p in sorted((out / "scores").glob("*.parquet"))]
    return pd.concat(frames, ignore_index=True)


def errors(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_hostile_tars_run_to_the_end_and_write_only_inside_out_dir(tmp_path: Path) -> None:
    shards, cwd, out = tmp_path / "shards", tmp_path / "cwd", tmp_path / "out"
    write_tar(shards / "hostile.tar", hostile_samples(), hostile_members())
    write_shards(synthetic_images(6), str(shards / "good-%03d.tar"), maxcount=6)
    for sidecar in ("good-000.parquet", "good-000_stats.json"):  # img2dataset's, not inputs
        (shards / sidecar).write_text("{}")
    cwd.mkdir()
    before = tree(shards)
    run = cli(cwd, *base(out, f"data.shards={shards}/*"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert tree(cwd) == set() and tree(shards) == before  # written only inside out_dir
    assert (out / "logs").is_dir() and list((out / "logs").glob("infer-*.log"))
    scored = rows(out)
    good = {s.key for s in hostile_samples() if s.scorable} | {
        s["__key__"] for s in synthetic_images(6)
    }
    assert sorted(scored["key"]) == sorted(good)  # each valid image exactly once
    bad = {s.key for s in hostile_samples() if not s.scorable} | {
        m.key for m in hostile_members() if m.key
    }
    recorded = [e["key"] for e in errors(out) if e["key"] is not None]
    assert sorted(recorded) == sorted(bad)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["shards_total"] == summary["shards_done"] == 2  # sidecars are no shards
    assert summary["images_unscored"] == len(bad) and summary["images_scored"] == len(good)


def test_hostile_folder_runs_to_the_end(make_cfg: MakeCfg, tmp_path: Path) -> None:
    expected = write_hostile_folder(tmp_path / "imgs")
    out = tmp_path / "out"
    cfg = make_cfg(*base(out, "data=folder", f"data.path={tmp_path / 'imgs'}"), config_name="infer")
    summary = infer.run(cfg)
    assert sorted(rows(out)["key"]) == sorted(expected.scorable)
    assert sorted(e["key"] for e in errors(out)) == sorted(expected.recorded)
    assert summary["images_unscored"] == len(expected.recorded)


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    folder = tmp_path / "shards"
    write_shards(synthetic_images(8), str(folder / "s-%03d.tar"), maxcount=4)
    return folder


@pytest.mark.parametrize(
    "setting,message",
    [
        ("infer.batch_size=0", "infer.batch_size must be an integer >= 1"),
        ("infer.batch_size=2.5", "infer.batch_size must be an integer"),
        ("infer.threshold=nan", "infer.threshold must be a number between 0 and 1"),
        ("infer.threshold=1.5", "infer.threshold must be a number between 0 and 1"),
        ("infer.threshold=-0.5", "infer.threshold must be a number between 0 and 1"),
        ("infer.threshold=abc", "infer.threshold must be a number"),
        ("infer.max_pixels=0", "infer.max_pixels must be an integer >= 1"),
        ("infer.num_workers=-1", "infer.num_workers must be an integer >= 0"),
        ("infer.progress=maybe", "infer.progress must be true or false"),
        ("data.max_bytes=-3", "data.max_bytes must be an integer >= 1"),
        ("data.exif_transpose=yes", "data.exif_transpose must be true or false"),
    ],
)
def test_bad_values_are_one_line_before_anything_is_written(
    make_cfg: MakeCfg, tmp_path: Path, shards: Path, setting: str, message: str
) -> None:
    out = tmp_path / "out"
    cfg = make_cfg(*base(out, f"data.shards={shards}", setting), config_name="infer")
    with pytest.raises(Q16Error, match=message) as err:
        infer.run(cfg)
    assert "\n" not in str(err.value) and not out.exists()


def test_folder_values_and_out_dir_layouts_are_refused(
    make_cfg: MakeCfg, tmp_path: Path, shards: Path
) -> None:
    imgs = tmp_path / "imgs"
    write_hostile_folder(imgs)
    folder = ("data=folder", f"data.path={imgs}")
    cases = {
        "data.shard_size must be an integer >= 1": base(
            tmp_path / "o", *folder, "data.shard_size=0"
        ),
        "is inside the input folder": base(imgs / "q16", *folder, "infer.report=true"),
        "is a file": base(imgs / "c1" / "a.jpg", f"data.shards={shards}"),
        "q16 did not make": base(shards, f"data.shards={tmp_path / 'other.tar'}"),
    }
    write_shards(synthetic_images(2), str(tmp_path / "other-%d.tar"), maxcount=2)
    (tmp_path / "other-0.tar").rename(tmp_path / "other.tar")
    listing = tree(imgs) | tree(shards)
    for message, overrides in cases.items():
        with pytest.raises(Q16Error, match=message) as err:
            infer.run(make_cfg(*overrides, config_name="infer"))
        assert "\n" not in str(err.value)
    assert tree(imgs) | tree(shards) == listing and not (tmp_path / "o").exists()


def test_a_second_run_on_a_locked_out_dir_is_refused(
    make_cfg: MakeCfg, tmp_path: Path, shards: Path
) -> None:
    out = tmp_path / "out"
    cfg = make_cfg(*base(out, f"data.shards={shards}"), config_name="infer")
    with out_dir_lock(out), pytest.raises(Q16Error, match="in use by another q16 run"):
        infer.run(cfg)
    assert infer.run(cfg)["images_scored"] == 8  # released: the directory is q16's now


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,message",
    [
        (["infer.threshold=abc"], "infer.threshold must be a number between 0 and 1"),
        (["infer.batch_size=0"], "infer.batch_size must be an integer >= 1"),
        (["infer.out_dir=FOREIGN"], "is a non-empty directory that q16 did not make"),
    ],
)
def test_cli_mistakes_are_one_line_and_write_nothing(
    tmp_path: Path, shards: Path, args: list[str], message: str
) -> None:
    foreign, cwd = tmp_path / "foreign", tmp_path / "cwd"
    foreign.mkdir()
    (foreign / "config.yaml").write_text("mine")
    cwd.mkdir()
    args = [a.replace("FOREIGN", str(foreign)) for a in args]
    run = cli(cwd, *base(tmp_path / "out", f"data.shards={shards}"), *args)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("q16: error:")]
    assert len(lines) == 1 and message in lines[0], run.stderr[-2000:]
    assert tree(cwd) == set() and tree(foreign) == {"config.yaml"}
    assert (foreign / "config.yaml").read_text() == "mine"
    assert not (tmp_path / "out").exists()


def test_resume_rescores_a_replaced_tar_and_a_cut_parquet(
    make_cfg: MakeCfg, tmp_path: Path, shards: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    cfg = make_cfg(*base(out, f"data.shards={shards}"), config_name="infer")
    first = infer.run(cfg)
    # img2dataset completed a shard after it was scored: same path, more images
    write_shards(synthetic_images(6, seed=5), str(tmp_path / "new-%03d.tar"), maxcount=6)
    os.replace(tmp_path / "new-000.tar", shards / "s-001.tar")
    cut = out / "scores" / "s-000.parquet"
    cut.write_bytes(cut.read_bytes()[:100])
    second = infer.run(cfg)
    assert second["images_scored_this_run"] == 4 + 6
    assert second["images_scored"] == first["images_scored"] + 2
    assert "changed since it was scored" in caplog.text and "unreadable" in caplog.text
    assert not rows(out).duplicated(["shard", "key"]).any()


def test_flags_follow_p_and_the_threshold_of_the_run(
    make_cfg: MakeCfg, tmp_path: Path, shards: Path
) -> None:
    """fingerprint.json deleted, resumed at another threshold: no stale flag survives."""
    out = tmp_path / "out"
    infer.run(
        make_cfg(*base(out, f"data.shards={shards}", "infer.threshold=0"), config_name="infer")
    )
    (out / "fingerprint.json").unlink()
    cfg = make_cfg(*base(out, f"data.shards={shards}", "infer.threshold=0.99"), config_name="infer")
    summary = infer.run(cfg)
    scored = rows(out)
    assert summary["images_flagged"] == int((scored["p_inappropriate"] >= 0.99).sum())
    assert (scored["flagged"] == (scored["p_inappropriate"] >= np.float32(0.99))).all()
    assert len(pd.read_csv(out / "flagged.csv")) == summary["images_flagged"]


def saved(make_cfg: MakeCfg, tmp_path: Path, shards: Path) -> Path:
    out = tmp_path / "saved"
    cfg = make_cfg(
        *base(out, f"data.shards={shards}", "infer.save_embeddings=true"), config_name="infer"
    )
    infer.run(cfg)
    return out


def rescore(make_cfg: MakeCfg, tmp_path: Path, source: Path, *extra: str) -> dict:
    cfg = make_cfg(
        *base(tmp_path / "rescored", "data=embeddings", f"data.path={source}", *extra),
        config_name="infer",
    )
    return infer.run(cfg)


def test_non_finite_embeddings_are_recorded_not_scored(
    make_cfg: MakeCfg, tmp_path: Path, shards: Path
) -> None:
    source = saved(make_cfg, tmp_path, shards)
    npy = source / "embeddings" / "s-000.npy"
    array = np.load(npy)
    array[1], array[3, 0] = np.nan, np.inf
    np.save(npy, array)
    summary = rescore(make_cfg, tmp_path, source, f"data.image_roots=['{shards}']")
    assert summary["images_scored"] == 6 and summary["images_unscored"] == 2
    assert np.isfinite(rows(tmp_path / "rescored")["p_inappropriate"]).all()
    assert {e["key"] for e in errors(tmp_path / "rescored")} == set(
        pq.read_table(source / "scores" / "s-000.parquet")["key"].to_pylist()[1:4:2]
    )


@pytest.mark.parametrize("damage", ["meta_json", "width", "int_dtype", "strings", "pickle"])
def test_malformed_embeddings_are_one_line_before_the_run(
    make_cfg: MakeCfg, tmp_path: Path, shards: Path, damage: str
) -> None:
    source = saved(make_cfg, tmp_path, shards)
    npy, meta = source / "embeddings" / "s-000.npy", source / "embeddings" / "meta.json"
    rows_, dim = np.load(npy).shape
    if damage == "meta_json":
        meta.write_text("{not json")
    elif damage == "width":
        np.save(npy, np.zeros((rows_, dim + 1), np.float32))
    elif damage == "int_dtype":
        np.save(npy, np.zeros((rows_, dim), np.int64))
    elif damage == "strings":
        np.save(npy, np.full((rows_, dim), "x"))
    else:
        np.save(npy, np.array([{"a": 1}] * rows_, dtype=object), allow_pickle=True)
    with pytest.raises(Q16Error) as err:
        rescore(make_cfg, tmp_path, source)
    assert "\n" not in str(err.value) and not (tmp_path / "rescored").exists()


def test_embeddings_cannot_be_rescored_into_their_own_out_dir(
    make_cfg: MakeCfg, tmp_path: Path, shards: Path
) -> None:
    source = saved(make_cfg, tmp_path, shards)
    cfg = make_cfg(*base(source, "data=embeddings", f"data.path={source}"), config_name="infer")
    with pytest.raises(Q16Error, match="keeps outputs and inputs apart"):
        infer.run(cfg)
