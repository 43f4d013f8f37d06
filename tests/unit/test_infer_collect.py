"""The run-level pieces of infer.run, each alone: collect, the summary, out_dir preparation,
the kill points (test-only seam) and the typed settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from q16.errors import Q16Error
from q16.infer import build_fabric, infer_settings
from q16.inference.collect import RunCounts, collect
from q16.inference.killpoints import AFTER_COMMIT, KILL_ENV, kill_setting
from q16.inference.reader import Batch
from q16.inference.resume import fingerprint, prepare_out_dir
from q16.inference.scorer import Scores
from q16.inference.settings import InferSettings
from q16.inference.state import LoopStats
from q16.inference.summary import RunSetup, build_summary, write_summary
from q16.inference.writer import ShardWriter
from q16.models.backbone import BackboneSpec
from q16.outdir import UNKNOWN_CLASS
from q16.review.run import load_run, per_class_table
from q16.sources.base import Shard


def commit(out: Path, shard: str, probs: list[float], classes: list[str | None], **kw: Any) -> None:
    keys = [f"{shard}-{i}" for i in range(len(probs))]
    batch = Batch(
        shard=shard,
        keys=keys,
        sources=[f"/d/{shard}.tar"] * len(keys),
        file_names=[None] * len(keys),
        class_ids=[-1] * len(keys),
        class_names=classes,
        synsets=[None] * len(keys),
    )
    p = torch.tensor(probs)
    writer = ShardWriter(out, threshold=0.5, background=False, scoring=kw.get("scoring"))
    writer.add(batch, Scores(p_inappropriate=p, label=(p > 0.5).to(torch.int8)))
    writer.finish(shard, kw.get("errors", []), identity=kw.get("identity"), stamp=kw.get("stamp"))


def test_collect_nothing_done_writes_empty_run_files(tmp_path: Path) -> None:
    counts = collect(tmp_path, ["a", "b"], threshold=0.5)
    assert counts == RunCounts(0, 0, 0, {}, 0)
    assert (tmp_path / "flagged.csv").read_text().splitlines() == [
        "key,shard,source,file_name,class_id,class_name,p_inappropriate"
    ]
    assert (tmp_path / "errors.jsonl").read_text() == ""


def test_collect_counts_classes_and_keeps_errors_in_shard_order(tmp_path: Path) -> None:
    error = {"key": "x", "shard": "b", "reason": "bad jpeg"}
    commit(tmp_path, "a", [0.9, 0.1, 0.7], ["cat", None, "cat"])
    commit(tmp_path, "b", [0.2], ["dog"], errors=[error])
    counts = collect(tmp_path, ["b", "a", "not-yet"], threshold=0.5)
    assert counts.images_scored == 4 and counts.images_flagged == 2 and counts.shards_done == 2
    assert counts.per_class == {
        UNKNOWN_CLASS: {"scored": 1, "flagged": 0},
        "cat": {"scored": 2, "flagged": 2},
        "dog": {"scored": 1, "flagged": 0},
    }
    assert list(counts.per_class) == sorted(counts.per_class)
    assert counts.errors == 1
    assert json.loads((tmp_path / "errors.jsonl").read_text()) == error
    assert not list(tmp_path.glob(".*"))  # no temporary file or spill folder left


def setup(**changes: Any) -> RunSetup:
    values: dict[str, Any] = {
        "spec": BackboneSpec("q16-tiny", pretrained=None),
        "prompt_source": "zeroshot",
        "threshold": 0.9,
        "shards_total": 3,
        "inputs": ["/d"],
        "data": "imagenet",
        "batch_size": 4,
        "num_workers": 1,
        "world_size": 2,
        "device": "cpu",
        "setup_s": 1.23456,
    }
    return RunSetup(**(values | changes))


def test_summary_keys_and_rates(tmp_path: Path) -> None:
    counts = RunCounts(10, 2, 1, {"cat": {"scored": 10, "flagged": 2}}, 3)
    ranks = [
        LoopStats(images=6, data_wait_s=0.5, model_s=1.0, write_s=0.25, loop_s=3.0),
        LoopStats(images=2, data_wait_s=0.5, model_s=1.0, write_s=0.25, loop_s=4.0),
    ]
    summary = build_summary(setup(), counts, ranks, [], wall_s=8.0)
    assert list(summary)[:5] == [
        "images_scored", "images_flagged", "errors", "images_unscored", "per_class"
    ]  # fmt: skip
    assert list(summary)[-3:] == ["date", "git_commit", "machine"]
    assert summary["images_scored"] == 10 and summary["images_scored_this_run"] == 8
    assert summary["images_per_s"] == 1.0 and summary["loop_images_per_s"] == 2.0
    assert summary["loop_s"] == 4.0 and summary["model_s"] == 2.0 and summary["setup_s"] == 1.235
    assert summary["model"] == "q16-tiny" and summary["random_weights"] is True
    assert summary["weights"] == "random-init" and summary["ranks_missing"] == []
    path = write_summary(tmp_path, summary)
    assert json.loads(path.read_text())["shards_done"] == 3


def test_loop_stats_round_trip_through_a_rank_record() -> None:
    stats = LoopStats(images=3, shards=1, unread=["x"], loop_s=2.0)
    record = {"run_id": "r", "rank": 1, **stats.__dict__}
    assert LoopStats.from_record(record) == stats


def make_fingerprint(shards: list[Shard], threshold: float = 0.9) -> dict[str, Any]:
    return fingerprint(
        model="q16-tiny",
        weights=None,
        precision="fp32",
        preprocess="p",
        prompt_source="zeroshot",
        threshold=threshold,
        autocast="off",
        max_pixels=10,
        shards=shards,
    )


def test_prepare_out_dir_skips_done_shards_and_records_the_fingerprint(tmp_path: Path) -> None:
    from q16.inference.resume import scoring_id, shard_identity, shard_stamp

    out = tmp_path / "out"
    shards = [Shard("a", "/d/a.tar"), Shard("b", "/d/b.tar")]
    current = make_fingerprint(shards)
    assert prepare_out_dir(out, current, shards, record=False) == shards
    assert not (out / "fingerprint.json").exists()  # only the recording rank writes it
    a = shards[0]
    made = {"identity": shard_identity(a), "stamp": shard_stamp(a), "scoring": scoring_id(current)}
    commit(out, "a", [0.1], [None], **made)
    assert prepare_out_dir(out, current, shards, record=True) == shards[1:]
    assert json.loads((out / "fingerprint.json").read_text()) == current


def test_prepare_out_dir_refuses_before_it_records(tmp_path: Path) -> None:
    """A done shard made from other files is refused, and no fingerprint is left behind; a
    differing fingerprint is named as such before any shard is looked at."""
    out = tmp_path / "out"
    commit(out, "a", [0.1], [None], identity="made-from-other-files")
    shards = [Shard("a", "/d/a.tar")]
    with pytest.raises(Q16Error, match="other input files than shard 'a'"):
        prepare_out_dir(out, make_fingerprint(shards), shards, record=True)
    assert not (out / "fingerprint.json").exists()
    (out / "scores" / "a.parquet").unlink()
    prepare_out_dir(out, make_fingerprint(shards), shards, record=True)
    commit(out, "a", [0.1], [None], identity="made-from-other-files")
    with pytest.raises(Q16Error, match="different threshold"):
        prepare_out_dir(out, make_fingerprint(shards, threshold=0.5), shards, record=True)


@pytest.mark.parametrize(
    "setting,killed", [(None, False), ("after_commit:2", False), ("after_commit:1", True)]
)
def test_kill_point_fires_only_where_asked(setting: str | None, killed: bool) -> None:
    code = (
        "from q16.inference.killpoints import AFTER_COMMIT, BEFORE_PARQUET, kill_point\n"
        "kill_point(BEFORE_PARQUET, 1)\nkill_point(AFTER_COMMIT, 1)\nprint('alive')"
    )
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    if setting is not None:
        env[KILL_ENV] = setting
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert (run.returncode == -9) == killed, run.stderr[-1000:]
    assert ("alive" in run.stdout) != killed
    assert kill_setting(AFTER_COMMIT, 1) == "after_commit:1"


def test_settings_and_fabric_come_from_the_infer_config(make_cfg: Any, tmp_path: Path) -> None:
    cfg = make_cfg(
        "fabric=cpu", f"infer.out_dir={tmp_path}/o", "infer.batch_size=4", config_name="infer"
    )
    settings = infer_settings(cfg.infer)
    assert isinstance(settings, InferSettings)
    assert settings.out_dir == tmp_path / "o" and settings.batch_size == 4
    assert settings.num_workers is None and settings.threshold == 0.9 and not settings.report
    assert "trainer" not in cfg and set(cfg.fabric) == {
        "_target_", "accelerator", "devices", "num_nodes", "strategy"
    }  # fmt: skip
    fabric = build_fabric(cfg.fabric)
    assert isinstance(fabric, L.Fabric) and fabric.device.type == "cpu"
    ddp = make_cfg("fabric=ddp", "fabric.devices=8", config_name="infer").fabric
    assert (ddp.strategy, ddp.devices, ddp.accelerator) == ("ddp", 8, "auto")


def test_report_per_class_table_of_a_run_without_scored_images(tmp_path: Path) -> None:
    commit(tmp_path, "a", [], [])
    counts = collect(tmp_path, ["a"], threshold=0.5)
    summary = build_summary(setup(), counts, [LoopStats()], [], wall_s=1.0)
    write_summary(tmp_path, summary)
    table = per_class_table(load_run(tmp_path))
    assert table.empty and {"class_name", "scored", "flagged", "share_flagged"} <= set(table)


def test_a_shard_scored_again_loses_its_old_rows_first(tmp_path: Path) -> None:
    """Its input changed: if the new attempt then fails, no stale rows may be collected."""
    from q16.inference.resume import shard_identity

    out = tmp_path / "out"
    a = Shard("a", "/d/a.tar")
    commit(out, "a", [0.9, 0.1], [None, None], identity=shard_identity(a), stamp="old-size-mtime")
    assert prepare_out_dir(out, make_fingerprint([a]), [a], record=True) == [a]
    assert not (out / "scores" / "a.parquet").exists()
    counts = collect(out, ["a"], threshold=0.5)
    assert counts.images_scored == 0 and counts.shards_done == 0
