"""Scorer and writer stages: scores match the core path; shards commit atomically."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from q16.errors import Q16Error
from q16.inference.collect import collect
from q16.inference.reader import Batch, UInt8Preprocess
from q16.inference.scorer import Scorer, Scores, resolve_autocast
from q16.inference.writer import SCHEMA, ShardWriter, is_done
from q16.models.backbone import Backbone
from q16.models.prompts import linear_probe
from q16.outdir import UNKNOWN_CLASS
from q16.training.tuner import predict_proba


def make_batch(shard: str, keys: list[str], classes: list[str | None]) -> Batch:
    n = len(keys)
    return Batch(
        shard=shard,
        keys=keys,
        sources=[f"/d/{shard}.tar"] * n,
        file_names=[f"{k}.jpg" for k in keys],
        class_ids=[0 if c else -1 for c in classes],
        class_names=classes,
        synsets=[None] * n,
    )


def test_scorer_matches_core_feature_path(tiny_backbone: Backbone) -> None:
    head = linear_probe(tiny_backbone, seed=3)
    pre = UInt8Preprocess.from_transform(tiny_backbone.preprocess)
    scorer = Scorer(tiny_backbone, head, pre.mean, pre.std)
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    scores = scorer.score_images(images, keep=True)
    reference = tiny_backbone.encode_image(scorer.normalize(images))
    torch.testing.assert_close(scores.p_inappropriate, predict_proba(head, reference))
    assert scores.label.dtype == torch.int8
    assert torch.equal(scores.label, (scores.p_inappropriate > 0.5).to(torch.int8))
    assert scores.embeddings is not None and scores.embeddings.shape == (5, 64)
    assert all(not p.requires_grad for p in head.parameters())


def test_autocast_defaults() -> None:
    assert resolve_autocast("auto", torch.device("cpu")) == "off"
    assert resolve_autocast("auto", torch.device("cuda")) == "bf16"


def test_writer_commits_shards_and_collects(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, threshold=0.9, save_embeddings=True)
    batch = make_batch("s1", ["a", "b", "c"], ["cat", "cat", None])
    probs = torch.tensor([0.95, 0.2, 0.99])
    writer.add(batch, Scores(probs, torch.tensor([1, 0, 1], dtype=torch.int8), torch.ones(3, 4)))
    assert not is_done(tmp_path, "s1")
    writer.finish("s1", [{"key": "z", "shard": "s1", "reason": "bad"}])
    writer.finish("s2", [{"key": None, "shard": "s2", "reason": "empty shard"}])
    writer.close()
    assert is_done(tmp_path, "s1") and is_done(tmp_path, "s2")
    assert not list(tmp_path.rglob(".*tmp*"))
    table = pq.read_table(tmp_path / "scores" / "s1.parquet")
    assert table.schema.equals(SCHEMA, check_metadata=False)
    assert table.column("flagged").to_pylist() == [True, False, True]
    assert table.column("p_inappropriate").type == "float"
    assert pq.read_table(tmp_path / "scores" / "s2.parquet").num_rows == 0

    counts = collect(tmp_path, ["s1", "s2", "never-run"], threshold=0.9)
    assert counts.images_scored == 3 and counts.images_flagged == 2
    assert counts.errors == 2 and counts.shards_done == 2
    assert counts.per_class == {
        "cat": {"scored": 2, "flagged": 1},
        UNKNOWN_CLASS: {"scored": 1, "flagged": 1},
    }
    flagged = (tmp_path / "flagged.csv").read_text().splitlines()
    assert flagged[0] == "key,shard,source,file_name,class_id,class_name,p_inappropriate"
    assert [line.split(",")[0] for line in flagged[1:]] == ["c", "a"]
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert [e["shard"] for e in errors] == ["s1", "s2"]
    assert tuple(errors[0]) == ("key", "shard", "reason")


def write_random_shards(out: Path, n_shards: int, per_shard: int, seed: int) -> list[str]:
    """Shards whose scores repeat across shards (ties) and are mostly above the threshold."""
    gen = torch.Generator().manual_seed(seed)
    writer = ShardWriter(out, threshold=0.5, background=False)
    names = [f"s{i:03d}" for i in range(n_shards)]
    for name in names:
        keys = [f"{name}-{j:03d}" for j in range(per_shard)]
        writer.add(make_batch(name, keys, ["cat", None] * (per_shard // 2)), Scores(
            (torch.randint(0, 8, (per_shard,), generator=gen) / 8.0 + 0.06),
            torch.ones(per_shard, dtype=torch.int8),
        ))  # fmt: skip
        writer.finish(name, [])
    return names


def test_flagged_csv_sorted_on_disk_equals_sorted_in_memory(tmp_path: Path) -> None:
    """Beyond max_flagged_in_memory rows, flagged.csv is merged from sorted runs on disk; the
    file is byte for byte the one sorted in memory, and no spill files are left behind."""
    names = write_random_shards(tmp_path, n_shards=12, per_shard=10, seed=0)
    in_memory = collect(tmp_path, names, threshold=0.5)
    expected = (tmp_path / "flagged.csv").read_bytes()
    (tmp_path / "flagged.csv").unlink()
    on_disk = collect(tmp_path, names, max_flagged_in_memory=7, threshold=0.5)
    assert on_disk == in_memory and in_memory.images_flagged > 7 * 3
    assert (tmp_path / "flagged.csv").read_bytes() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["errors", "errors.jsonl", "flagged.csv", "scores"]
    )
    rows = [line.split(",") for line in expected.decode().splitlines()[1:]]
    order = [(-float(r[-1]), r[1], r[0]) for r in rows]
    assert order == sorted(order) and len(rows) == in_memory.images_flagged


def test_flagged_sorter_spills_runs_and_merges_them(tmp_path: Path) -> None:
    from q16.inference.collect import FLAGGED_SCHEMA
    from q16.inference.flagged import flagged_sorter

    names = write_random_shards(tmp_path / "run", n_shards=5, per_shard=8, seed=1)
    tables = [pq.read_table(tmp_path / "run" / "scores" / f"{n}.parquet") for n in names]
    with flagged_sorter(FLAGGED_SCHEMA, tmp_path, max_rows=10) as sorter:
        for table in tables:
            sorter.add(table)
        sorter.write_csv(tmp_path / "flagged.csv")
        assert len(sorter.runs) == 3 and sorter.rows == 40  # spilled at 16, 32 and 40 rows
    assert not list(tmp_path.glob(".flagged-sort-*"))
    got = pd.read_csv(tmp_path / "flagged.csv")
    assert list(got["p_inappropriate"]) == sorted(got["p_inappropriate"], reverse=True)
    assert sorted(got["key"]) == sorted(k for t in tables for k in t.column("key").to_pylist())


@pytest.mark.gpu
def test_scorer_on_cuda_with_bf16_autocast(tiny_backbone: Backbone) -> None:
    gpu = dataclasses.replace(tiny_backbone, model=copy.deepcopy(tiny_backbone.model).cuda())
    head = linear_probe(tiny_backbone, seed=3)
    pre = UInt8Preprocess.from_transform(tiny_backbone.preprocess)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8).pin_memory()
    cpu_scores = Scorer(tiny_backbone, copy.deepcopy(head), pre.mean, pre.std).score_images(images)
    bf16 = Scorer(gpu, head, pre.mean, pre.std, resolve_autocast("auto", gpu.device))
    assert bf16.autocast == "bf16"
    torch.testing.assert_close(
        bf16.score_images(images).p_inappropriate, cpu_scores.p_inappropriate, atol=0.02, rtol=0
    )


def test_defaults_sized_for_the_machine() -> None:
    from q16.inference.settings import auto_batch_size, auto_workers

    assert auto_batch_size(None, torch.device("cpu")) == 32
    assert auto_batch_size(None, torch.device("cuda")) == 256
    assert auto_batch_size(7, torch.device("cpu")) == 7
    assert 1 <= auto_workers(None, 1) <= 8 and auto_workers(3, 1) == 3
    assert auto_workers(None, 10_000) == 1


def test_unread_shard_records_errors_but_is_not_done(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, threshold=0.5)
    error = {"key": None, "shard": "gone", "reason": "FileNotFoundError: gone.tar"}
    writer.finish("gone", [error], commit=False)
    writer.close()
    assert not is_done(tmp_path, "gone")
    counts = collect(tmp_path, ["gone"], threshold=0.5)
    assert counts.shards_done == 0 and counts.errors == 1
    assert json.loads((tmp_path / "errors.jsonl").read_text()) == error


def test_bad_autocast_is_a_user_error() -> None:
    with pytest.raises(Q16Error, match=r"infer\.autocast must be"):
        resolve_autocast("bf15", torch.device("cpu"))


def test_done_shard_remembers_its_input(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, threshold=0.5, background=False)
    writer.finish("s", [], identity="from-a", stamp="size-mtime-1")
    writer.finish("foreign", [])  # a parquet no q16 run made (no identity): never trusted
    assert is_done(tmp_path, "s", "from-a", "size-mtime-1") and is_done(tmp_path, "s")
    with pytest.raises(Q16Error, match="other input files"):
        is_done(tmp_path, "s", "from-b")
    with pytest.raises(Q16Error, match="made by no q16 run"):
        is_done(tmp_path, "foreign", "anything")
    assert not is_done(tmp_path, "s", "from-a", "size-mtime-2")  # the file changed: redo it
    path = tmp_path / "scores" / "s.parquet"
    path.write_bytes(path.read_bytes()[:-20])  # cut: its footer is gone
    assert not is_done(tmp_path, "s", "from-a", "size-mtime-1")


def test_flagged_sorter_same_bytes_with_null_ints_in_some_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A null class_id in one merge chunk must not turn the others' ids into floats (3.0)."""
    import pyarrow as pa

    from q16.inference import flagged as flagged_module
    from q16.inference.collect import FLAGGED_SCHEMA

    monkeypatch.setattr(flagged_module, "READ_ROWS", 4)
    table = pa.table(
        {"key": [f"k{i}" for i in range(12)], "shard": ["s"] * 12, "source": ["x"] * 12,
         "file_name": [None] * 12, "class_id": [None, *range(3, 14)],
         "class_name": ["c"] * 12, "p_inappropriate": [0.99 - i / 100 for i in range(12)]},
        schema=FLAGGED_SCHEMA,
    )  # fmt: skip
    written = []
    for max_rows in (100, 3):
        with flagged_module.flagged_sorter(FLAGGED_SCHEMA, tmp_path, max_rows) as sorter:
            for start in range(0, 12, 3):
                sorter.add(table.slice(start, 3))
            sorter.write_csv(tmp_path / f"f{max_rows}.csv")
        written.append((tmp_path / f"f{max_rows}.csv").read_text())
    assert written[0] == written[1]
    assert ",3,c," in written[0] and ".0," not in written[0]
    assert not list(tmp_path.glob(".*"))  # no spill folder, no temp file


def test_non_finite_scores_are_error_records_not_rows(tmp_path: Path) -> None:
    """A NaN score compares false with every threshold: written as a row, it would be a
    silent 'not flagged'. It is the image's error record instead."""
    batch = Batch(
        shard="s",
        keys=["a", "b", "c"],
        sources=["x"] * 3,
        file_names=[None] * 3,
        class_ids=[-1] * 3,
        class_names=[None] * 3,
        synsets=[None] * 3,
    )
    p = torch.tensor([0.95, float("nan"), float("inf")])
    writer = ShardWriter(tmp_path, threshold=0.5, background=False)
    writer.add(batch, Scores(p_inappropriate=p, label=torch.zeros(3, dtype=torch.int8)))
    writer.finish("s", [{"key": None, "shard": "s", "reason": "cut"}])
    counts = collect(tmp_path, ["s"], threshold=0.5)
    assert pq.read_table(tmp_path / "scores" / "s.parquet")["key"].to_pylist() == ["a"]
    assert counts.images_scored == counts.images_flagged == 1
    assert counts.errors == 3 and counts.images_unscored == 2
