"""Resume safety and user errors of infer.run: other inputs refused, unreadable shards retried,
a dead rank times out, user mistakes are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from omegaconf import DictConfig
from PIL import Image

from conftest import infer_overrides
from q16 import infer
from q16.errors import Q16Error
from q16.sources.base import Shard
from q16.sources.wds import WebDatasetShards, synthetic_images, write_shards

MakeCfg = Callable[..., DictConfig]
REPO = Path(__file__).resolve().parents[2]


def base(out: Path, *extra: str) -> list[str]:
    return infer_overrides(out, *extra)


def read_keys(out: Path) -> list[str]:
    frames = [pq.read_table(p).to_pandas() for p in sorted((out / "scores").glob("*.parquet"))]
    return sorted(pd.concat(frames)["key"]) if frames else []


def test_out_dir_from_another_dataset_is_refused(make_cfg: MakeCfg, tmp_path: Path) -> None:
    """Dataset A (2 shards) then B (3 shards, same names) into one out_dir: B must not be
    reported with A's rows (before: only B's third shard was scored)."""
    a, b = tmp_path / "a", tmp_path / "b"
    write_shards(synthetic_images(8, seed=1), str(a / "s-%04d.tar"), maxcount=4)
    write_shards(synthetic_images(12, seed=2), str(b / "s-%04d.tar"), maxcount=4)
    out = tmp_path / "shared"
    infer.run(make_cfg(*base(out, f"data.shards={a}"), config_name="infer"))
    with pytest.raises(Q16Error, match=r"different inputs \(data\)") as err:
        infer.run(make_cfg(*base(out, f"data.shards={b}"), config_name="infer"))
    assert "\n" not in str(err.value)
    (out / "fingerprint.json").unlink()  # lost or from an older version: each shard still knows
    with pytest.raises(Q16Error, match=r"s-0000\.parquet was made from other input files"):
        infer.run(make_cfg(*base(out, f"data.shards={b}"), config_name="infer"))
    summary = infer.run(make_cfg(*base(out, f"data.shards={a}"), config_name="infer"))
    assert summary["images_scored_this_run"] == 0 and summary["images_scored"] == 8


def test_folder_with_other_chunks_is_refused(make_cfg: MakeCfg, tmp_path: Path) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(5):
        Image.new("RGB", (9, 9), (i * 40, 0, 0)).save(images / f"{i}.png")
    out = tmp_path / "scored"
    folder = ("data=folder", f"data.path={images}")
    infer.run(make_cfg(*base(out, *folder, "data.shard_size=2"), config_name="infer"))
    with pytest.raises(Q16Error, match="inputs"):  # chunk names kept, contents shifted
        infer.run(make_cfg(*base(out, *folder, "data.shard_size=3"), config_name="infer"))
    Image.new("RGB", (9, 9)).save(images / "00-new.png")
    with pytest.raises(Q16Error, match="inputs"):
        infer.run(make_cfg(*base(out, *folder, "data.shard_size=2"), config_name="infer"))


@pytest.mark.parametrize("setting", ["infer.autocast=bf16", "infer.max_pixels=100000"])
def test_out_dir_from_other_decode_or_precision_is_refused(
    make_cfg: MakeCfg, tmp_path: Path, setting: str
) -> None:
    shards = tmp_path / "s"
    write_shards(synthetic_images(4), str(shards / "s-%04d.tar"), maxcount=4)
    out = tmp_path / "scored"
    infer.run(make_cfg(*base(out, f"data.shards={shards}"), config_name="infer"))
    with pytest.raises(Q16Error, match=setting.split("=")[0].removeprefix("infer.")):
        infer.run(make_cfg(*base(out, f"data.shards={shards}", setting), config_name="infer"))


def test_unreadable_shard_is_retried_by_the_next_run(
    make_cfg: MakeCfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard that vanished after listing (NFS, a moving copy) is recorded, not marked done."""
    shards = tmp_path / "s"
    write_shards(synthetic_images(8), str(shards / "s-%04d.tar"), maxcount=4)
    late = tmp_path / "late"
    listed = WebDatasetShards.list_shards
    monkeypatch.setattr(
        WebDatasetShards,
        "list_shards",
        lambda self: [*listed(self), Shard("z-late", str(late / "z-late-0000.tar"))],
    )
    cfg = make_cfg(*base(tmp_path / "out", f"data.shards={shards}"), config_name="infer")
    first = infer.run(cfg)
    assert first["shards_done"] == 2 and first["shards_total"] == 3
    assert first["images_scored"] == 8 and first["errors"] == 1
    (error,) = map(json.loads, (tmp_path / "out" / "errors.jsonl").read_text().splitlines())
    assert error["shard"] == "z-late" and "FileNotFoundError" in error["reason"]

    write_shards(synthetic_images(3, seed=5), str(late / "z-late-%04d.tar"), maxcount=4)
    second = infer.run(cfg)
    assert second["shards_done"] == 3 and second["images_scored_this_run"] == 3
    assert second["images_scored"] == 11 and second["errors"] == 0


class OneOfTwoRanks:
    """Rank 0 of a world of 2 whose rank 1 never reports (it died)."""

    global_rank, world_size, device = 0, 2, torch.device("cpu")

    def launch(self) -> None:
        pass

    def broadcast(self, obj: object, src: int = 0) -> object:
        return obj


def test_rank_zero_stops_waiting_for_a_dead_rank(
    make_cfg: MakeCfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards = tmp_path / "s"
    write_shards(synthetic_images(16), str(shards / "s-%04d.tar"), maxcount=4)
    monkeypatch.setattr(infer, "build_fabric", lambda fabric: OneOfTwoRanks())
    out = tmp_path / "out"
    cfg = make_cfg(
        *base(out, f"data.shards={shards}", "infer.rank_wait_timeout_s=0.5"), config_name="infer"
    )
    with pytest.raises(Q16Error, match=r"rank\(s\) 1 did not report.*re-run") as err:
        infer.run(cfg)
    assert "\n" not in str(err.value)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ranks_missing"] == [1]
    assert summary["shards_done"] == 2 and summary["shards_total"] == 4
    assert summary["images_scored"] == 8


def test_bad_class_names_fail_in_the_main_process(make_cfg: MakeCfg, tmp_path: Path) -> None:
    """Before, the file was read in a DataLoader worker: the error carried its traceback."""
    shards = tmp_path / "s"
    write_shards(synthetic_images(4), str(shards / "s-%04d.tar"), maxcount=4)
    images = tmp_path / "imgs" / "n00000001"
    images.mkdir(parents=True)
    Image.new("RGB", (9, 9)).save(images / "a.png")
    bad = tmp_path / "classes.json"
    bad.write_text("42")
    for data in ([f"data.shards={shards}"], ["data=folder", f"data.path={images.parent}"]):
        cfg = make_cfg(
            *base(tmp_path / "out", *data, f"data.class_names={bad}"),
            "infer.num_workers=1",
            config_name="infer",
        )
        with pytest.raises(Q16Error, match="class list") as err:
            infer.run(cfg)
        assert "\n" not in str(err.value) and "Traceback" not in str(err.value)


def test_missing_mandatory_value_is_a_user_error(make_cfg: MakeCfg, tmp_path: Path) -> None:
    cfg = make_cfg(*base(tmp_path / "out", "data=folder"), config_name="infer")
    with pytest.raises(
        Q16Error, match=r"data\.path must be set, e\.g\. python infer\.py data=folder data\.path"
    ):
        infer.run(cfg)


@pytest.mark.slow  # two subprocesses of infer.py
@pytest.mark.parametrize(
    "args,message",
    [
        (["data=folder"], "q16: error: data.path must be set, e.g. python infer.py data=folder"),
        (["data.shards=S", "infer.autocast=bf15"], "q16: error: infer.autocast must be auto"),
    ],
)
def test_cli_user_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    shards = tmp_path / "s"
    write_shards(synthetic_images(2), str(shards / "s-%04d.tar"), maxcount=4)
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "infer.py"),
            *base(tmp_path / "out"),
            f"paths.root_dir={tmp_path}",
            *(a.replace("=S", f"={shards}") for a in args),
        ],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith("q16: error:")]
    assert len(errors) == 1 and errors[0].startswith(message), run.stderr[-2000:]
    assert "Traceback" not in run.stderr
