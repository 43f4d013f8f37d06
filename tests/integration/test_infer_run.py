"""infer.run end to end on the tiny model: outputs' schema, hostile data, resume, re-scoring."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hydra.errors import MissingConfigException
from omegaconf import DictConfig
from PIL import Image

from conftest import infer_overrides
from helpers.hostile import cut_tar, hostile_samples, write_tar
from q16 import infer
from q16.errors import Q16Error
from q16.models.prompt_io import PromptMetadata, save_prompt
from q16.models.prompts import linear_probe
from q16.sources.wds import synthetic_images, write_shards

SUMMARY_KEYS = {
    "images_scored", "images_flagged", "errors", "per_class", "wall_time_s", "images_per_s",
    "data_wait_s", "model_s", "model", "pretrained", "random_weights", "prompt_source",
    "threshold", "shards_total", "shards_done", "inputs", "date", "git_commit", "machine",
}  # fmt: skip
SCORE_TYPES = {
    "key": "string", "shard": "string", "source": "string", "file_name": "string",
    "class_id": "int64", "class_name": "string", "p_inappropriate": "float", "label": "int8",
    "flagged": "bool",
}  # fmt: skip
MakeCfg = Callable[..., DictConfig]


def base(tmp_path: Path, *extra: str) -> list[str]:
    return infer_overrides(tmp_path / "scored", *extra, num_workers=1)


@pytest.fixture
def shard_dir(tmp_path: Path) -> Path:
    """Three good shards, one hostile, one cut mid-way, one empty."""
    folder = tmp_path / "shards"
    write_shards(synthetic_images(30, seed=1), str(folder / "good-%03d.tar"), maxcount=10)
    write_tar(folder / "hostile.tar", hostile_samples())
    write_shards(synthetic_images(8, seed=2), str(folder / "z-cut-%03d.tar"), maxcount=100)
    write_tar(folder / "z-empty.tar", [])
    return folder


def read_scores(out: Path) -> pd.DataFrame:
    frames = [pq.read_table(p).to_pandas() for p in sorted((out / "scores").glob("*.parquet"))]
    return pd.concat(frames, ignore_index=True)


def test_run_scores_shards_and_writes_contract(
    make_cfg: MakeCfg, tmp_path: Path, shard_dir: Path
) -> None:
    _, whole = cut_tar(shard_dir / "z-cut-000.tar", 0.6)
    classes = tmp_path / "classes.txt"
    classes.write_text("".join(f"n{i:08d} class number {i}\n" for i in range(4)))
    cfg = make_cfg(
        *base(tmp_path, f"data.shards={shard_dir}", f"data.class_names={classes}"),
        "infer.threshold=0.5",
        config_name="infer",
    )
    summary = infer.run(cfg)
    out = tmp_path / "scored"
    assert set(summary) >= SUMMARY_KEYS
    assert json.loads((out / "summary.json").read_text()) == summary
    scores = read_scores(out)
    for path in (out / "scores").glob("*.parquet"):
        schema = pq.read_schema(path)
        assert {n: str(schema.field(n).type) for n in SCORE_TYPES} == SCORE_TYPES
    n_ok = sum(s.scorable for s in hostile_samples())
    assert len(scores) == summary["images_scored"] == 30 + n_ok + len(whole)
    assert scores.groupby("shard").size()["hostile"] == n_ok
    assert summary["shards_total"] == summary["shards_done"] == 6
    assert summary["random_weights"] and summary["prompt_source"] == "zeroshot"
    assert (scores["flagged"] == (scores["p_inappropriate"] >= 0.5)).all()
    good = scores[scores["shard"] == "good-000"].iloc[0]
    assert good["class_name"] == f"class number {good['class_id']}"
    assert good["file_name"].endswith(".JPEG") and good["source"].endswith("good-000.tar")

    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert summary["errors"] == len(errors)
    bad = {e["key"] for e in errors if e["shard"] == "hostile"}
    assert bad == {s.key for s in hostile_samples() if not s.scorable}
    assert {e["shard"] for e in errors} >= {"hostile", "z-cut-000", "z-empty"}

    flagged = pd.read_csv(out / "flagged.csv")
    assert list(flagged.columns) == [
        "key", "shard", "source", "file_name", "class_id", "class_name", "p_inappropriate"
    ]  # fmt: skip
    assert len(flagged) == summary["images_flagged"] == int(scores["flagged"].sum())
    assert flagged["p_inappropriate"].is_monotonic_decreasing
    assert sum(c["scored"] for c in summary["per_class"].values()) == len(scores)


def test_resume_skips_done_shards_and_matches(
    make_cfg: MakeCfg, tmp_path: Path, shard_dir: Path
) -> None:
    cfg = make_cfg(*base(tmp_path, f"data.shards={shard_dir}"), config_name="infer")
    first = infer.run(cfg)
    before = read_scores(tmp_path / "scored")
    (tmp_path / "scored" / "scores" / "good-001.parquet").unlink()
    (tmp_path / "scored" / "scores" / ".good-002.parquet.tmp").write_bytes(b"half a file")
    second = infer.run(cfg)
    assert second["images_scored_this_run"] == 10
    pd.testing.assert_frame_equal(read_scores(tmp_path / "scored"), before)
    assert second["images_scored"] == first["images_scored"]
    assert second["errors"] == first["errors"]


def test_tuned_prompt_and_embeddings_rescoring(
    make_cfg: MakeCfg, tmp_path: Path, shard_dir: Path, tiny_backbone
) -> None:
    head = linear_probe(tiny_backbone, seed=1)
    meta = PromptMetadata(kind=head.kind, embed_dim=64, model="q16-tiny", pretrained=None)
    prompt = save_prompt(tmp_path / "prompts.safetensors", head, meta)
    shards = write_shards(synthetic_images(9), str(tmp_path / "few" / "f-%03d.tar"), maxcount=5)
    cfg = make_cfg(
        *base(tmp_path, f"data.shards={shards[0]}", "infer.save_embeddings=true"),
        f"prompt.path={prompt}",
        config_name="infer",
    )
    summary = infer.run(cfg)
    assert summary["prompt_source"] == str(prompt.resolve())
    assert np.load(tmp_path / "scored" / "embeddings" / "f-000.npy").shape == (5, 64)

    rescore = make_cfg(
        "model=tiny",
        "data=embeddings",
        f"data.path={tmp_path / 'scored'}",
        f"prompt.path={prompt}",
        "infer.num_workers=0",
        "infer.progress=false",
        f"infer.out_dir={tmp_path / 'rescored'}",
        config_name="infer",
    )
    infer.run(rescore)
    a, b = read_scores(tmp_path / "scored"), read_scores(tmp_path / "rescored")
    assert list(a["key"]) == list(b["key"])
    np.testing.assert_allclose(a["p_inappropriate"], b["p_inappropriate"], atol=1e-6)


def test_folder_input(make_cfg: MakeCfg, tmp_path: Path) -> None:
    for i in range(5):
        folder = tmp_path / "imgs" / ("n00000001" if i % 2 else "n00000002")
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("L", (10 + i, 7), i * 40).save(folder / f"img{i}.png")
    (tmp_path / "imgs" / "n00000001" / "broken.jpg").write_bytes(b"not a jpeg")
    cfg = make_cfg(
        *base(tmp_path, "data=folder", f"data.path={tmp_path / 'imgs'}", "data.shard_size=4"),
        "infer.threshold=0.0",
        "infer.report=true",
        config_name="infer",
    )
    summary = infer.run(cfg)
    assert summary["images_scored"] == summary["images_flagged"] == 5 and summary["errors"] == 1
    assert (tmp_path / "scored" / "report.html").is_file()
    scores = read_scores(tmp_path / "scored")
    assert set(scores["class_name"]) == {"n00000001", "n00000002"}
    assert scores["source"].map(lambda s: Path(s).is_file()).all()


def test_wrong_kind_of_dataset_is_not_offered(make_cfg: MakeCfg, tmp_path: Path) -> None:
    """Each entry point composes its own data group: Hydra names only the options that fit."""
    with pytest.raises(MissingConfigException) as infer_err:
        make_cfg(*base(tmp_path, "data=synthetic"), config_name="infer")
    assert "folder" in infer_err.value.options and "synthetic" not in infer_err.value.options
    with pytest.raises(MissingConfigException) as train_err:
        make_cfg("model=tiny", "data=imagenet")
    assert "synthetic" in train_err.value.options and "imagenet" not in train_err.value.options


def test_out_dir_from_another_prompt_is_refused(
    make_cfg: MakeCfg, tmp_path: Path, shard_dir: Path
) -> None:
    shard = f"data.shards={shard_dir / 'good-000.tar'}"
    infer.run(make_cfg(*base(tmp_path, shard), config_name="infer"))
    with pytest.raises(Q16Error, match="threshold"):
        infer.run(make_cfg(*base(tmp_path, shard), "infer.threshold=0.3", config_name="infer"))
