"""clip-retrieval folders and DataComp shards as inference inputs, in their published layouts:
checked as one line, bad rows recorded, scored without an image tower or weights."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from collections_layout import clip_retrieval_folder, datacomp_folder, unit_rows
from omegaconf import DictConfig

from q16 import infer
from q16.errors import Q16Error
from q16.inference.blocks import BlockChecks
from q16.sources.base import BlockSource, EmbeddingSource, ErrorLog, Shard
from q16.sources.clip_retrieval import ClipRetrievalEmbeddings
from q16.sources.datacomp import DataCompShards
from q16.spreadsheet import read_text_csv


def checked_rows(source: BlockSource, shard: Shard) -> tuple[list[dict], ErrorLog]:
    """The shard's rows as the reader keeps them (the product's checks), one dict each."""
    errors = ErrorLog(shard.name)
    checks = BlockChecks(shard.name, errors)
    rows = []
    for block in source.iter_blocks(shard, errors):
        kept = checks.check(block)
        columns = {c: v.to_pylist() for c, v in (kept.columns | kept.meta).items()}
        for i, features in enumerate(kept.features.float().numpy()):
            rows.append({c: v[i] for c, v in columns.items()} | {"features": features})
    return rows, errors


def test_clip_retrieval_rows_keys_and_metadata(tmp_path: Path) -> None:
    source = ClipRetrievalEmbeddings(
        str(clip_retrieval_folder(tmp_path, [3, 2])), meta_columns=["url", "caption"]
    )
    assert isinstance(source, EmbeddingSource)
    assert source.embedding_space().embed_dim == 32
    shards = source.list_shards()
    assert [s.name for s in shards] == ["img_emb_0", "img_emb_1"]
    rows, errors = checked_rows(source, shards[1])
    assert [r["key"] for r in rows] == ["000010000", "000010001"]
    assert (rows[0]["url"], rows[0]["caption"]) == (
        "https://example.com/000010000.jpg",
        "=caption 000010000",
    )
    assert rows[0]["features"].shape == (32,)
    assert not errors.records


def test_datacomp_model_picks_the_array(tmp_path: Path) -> None:
    root = datacomp_folder(tmp_path / "dc", [4])
    l14 = DataCompShards(str(root), model="ViT-L-14", meta_columns=["uid", "text"])
    assert l14.embedding_space().embed_dim == 768
    assert l14.embedding_space().weights == "openai"
    assert DataCompShards(str(root), model="ViT-B-32-quickgelu").embedding_space().embed_dim == 512
    shard = l14.list_shards()[0]
    rows, _ = checked_rows(l14, shard)
    assert len(rows) == 4 and rows[0]["key"] == rows[0]["uid"]
    with pytest.raises(Q16Error, match="DataComp ships embeddings of"):
        DataCompShards(str(root), model="RN50").list_shards()
    with pytest.raises(Q16Error, match="no array 'h14_img'"):
        DataCompShards(str(root), array="h14_img").list_shards()


def test_bad_collections_are_one_line(tmp_path: Path) -> None:
    root = clip_retrieval_folder(tmp_path / "a", [3, 3])
    np.save(root / "img_emb" / "img_emb_1.npy", unit_rows(4, 32))
    with pytest.raises(Q16Error, match="4 embeddings but 3 metadata rows"):
        ClipRetrievalEmbeddings(str(root)).list_shards()
    np.save(root / "img_emb" / "img_emb_1.npy", np.zeros((3, 32), np.int8))
    with pytest.raises(Q16Error, match="float16 or float32, not int8"):
        ClipRetrievalEmbeddings(str(root)).list_shards()
    np.save(root / "img_emb" / "img_emb_1.npy", unit_rows(3, 16))
    with pytest.raises(Q16Error, match="different widths"):
        ClipRetrievalEmbeddings(str(root)).list_shards()
    (root / "metadata" / "metadata_1.parquet").unlink()
    with pytest.raises(Q16Error, match="metadata file missing"):
        ClipRetrievalEmbeddings(str(root)).list_shards()
    with pytest.raises(Q16Error, match="no column 'nope'"):
        ClipRetrievalEmbeddings(str(root), meta_columns=["nope"]).embedding_space()
    with pytest.raises(Q16Error, match="no img_emb/"):
        ClipRetrievalEmbeddings(str(tmp_path)).list_shards()


def test_nan_rows_are_records_and_long_rows_are_normalised(tmp_path: Path, caplog) -> None:
    root = clip_retrieval_folder(tmp_path, [5])
    array = np.load(root / "img_emb" / "img_emb_0.npy").astype(np.float32)
    array[1] = np.nan
    array[2] *= 3.0
    array[3] *= 5.0
    array[4] = 0.0
    np.save(root / "img_emb" / "img_emb_0.npy", array)
    source = ClipRetrievalEmbeddings(str(root))
    shard = source.list_shards()[0]
    with caplog.at_level(logging.WARNING):
        rows, errors = checked_rows(source, shard)
    bad = {r["key"]: r["reason"] for r in errors.records}
    assert set(bad) == {"000000001", "000000004"} and "NaN" in bad["000000001"]
    assert len(rows) == 3
    for row in rows:
        assert abs(np.linalg.norm(row["features"]) - 1) < 1e-3
    assert sum("not unit length" in r.message for r in caplog.records) == 1


def _run(make_cfg: Callable[..., DictConfig], tmp_path: Path, *overrides: str) -> dict:
    cfg = make_cfg(
        "model=ViT-L-14",
        f"infer.out_dir={tmp_path / 'out'}",
        "infer.num_workers=0",
        "infer.progress=false",
        "infer.threshold=0.0",
        "fabric.accelerator=cpu",
        *overrides,
        config_name="infer",
    )
    return infer.run(cfg)


def test_clip_retrieval_run_joins_metadata_without_weights(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    root = clip_retrieval_folder(tmp_path / "laion", [4, 3], dim=768)
    array = np.load(root / "img_emb" / "img_emb_1.npy")
    array[0] = np.nan
    np.save(root / "img_emb" / "img_emb_1.npy", array)
    summary = _run(
        make_cfg, tmp_path, "data=clip_retrieval", f"data.path={root}",
        "data.meta_columns=[url,caption]",
    )  # fmt: skip
    assert summary["images_scored"] == 6 and summary["images_unscored"] == 1
    scores = pd.read_parquet(tmp_path / "out" / "scores" / "img_emb_0.parquet")
    assert scores["meta_url"].tolist()[0] == "https://example.com/000000000.jpg"
    flagged = read_text_csv(tmp_path / "out" / "flagged.csv", restore_cells=["meta_caption", "key"])
    assert len(flagged) == 6 and {"meta_url", "meta_caption"} <= set(flagged.columns)
    assert set(flagged["meta_caption"]) == {f"=caption {k}" for k in flagged["key"]}
    raw = (tmp_path / "out" / "flagged.csv").read_text()
    assert ",=caption" not in raw  # spreadsheet-safe cells
    # the text that came with each image reaches the reviewer: review.csv and the page
    from q16.report import write_report

    files = write_report(tmp_path / "out")
    review = read_text_csv(files.review, restore_cells=["key", "meta_caption", "meta_url"])
    assert list(review.columns[-4:]) == ["meta_url", "meta_caption", "note", "shard_version"]
    assert set(review["meta_caption"]) == {f"=caption {k}" for k in review["key"]}
    assert ",=caption" not in files.review.read_text()
    page = files.html.read_text()
    assert "caption =caption 000000000" in page and "https://example.com/000000000.jpg" in page


def test_datacomp_run_and_model_mismatch(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    root = datacomp_folder(tmp_path / "dc", [5])
    summary = _run(
        make_cfg, tmp_path, "data=datacomp", f"data.path={root}", "data.meta_columns=[uid,url]"
    )
    assert summary["images_scored"] == 5
    scores = pd.read_parquet(tmp_path / "out" / "scores" / "00000000.parquet")
    assert (scores["key"] == scores["meta_uid"]).all()
    with pytest.raises(Q16Error, match="pass the same model"):
        _run(
            make_cfg, tmp_path / "b", "data=datacomp", f"data.path={root}",
            "data.array=l14_img", "model.name=ViT-B-32",
        )  # fmt: skip


def test_rows_too_large_to_normalise_are_records_in_datacomp_too(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    """The overflow rule holds for every layout and size, not one example: float32 rows whose
    length overflows (a unit row times 1e20, 1e25, every value 3e38) are recorded, never scored
    as a zero vector, while a long row that still fits is normalised and scored as before."""
    root = datacomp_folder(tmp_path / "dc", [6])
    with np.load(root / "00000000.npz") as arrays:
        kept = {name: arrays[name] for name in arrays.files}
    unit = kept["l14_img"].astype(np.float32)
    big = unit.copy()
    big[1] *= 1e20
    big[2] *= 1e25
    big[3] = np.float32(3e38)
    big[4] *= 1e3  # long, but its length fits in float32
    np.savez(root / "00000000.npz", **{**kept, "l14_img": big})
    summary = _run(make_cfg, tmp_path, "data=datacomp", f"data.path={root}")
    assert summary["images_scored"] == 3
    lines = (tmp_path / "out" / "errors.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    assert sum("too large to normalise" in r["reason"] for r in records) == 3
    scores = pd.read_parquet(next((tmp_path / "out" / "scores").glob("*.parquet")))
    assert scores["p_inappropriate"].between(0, 1).all() and len(scores) == 3
    np.savez(root / "00000000.npz", **{**kept, "l14_img": unit})
    again = _run(make_cfg, tmp_path / "unit", "data=datacomp", f"data.path={root}")
    assert again["images_scored"] == 6
    plain = pd.read_parquet(next((tmp_path / "unit" / "out" / "scores").glob("*.parquet")))
    long_row = scores.set_index("key").loc[plain["key"][4], "p_inappropriate"]
    assert abs(long_row - plain["p_inappropriate"][4]) < 1e-4
