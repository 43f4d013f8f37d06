"""Embedding collections are read in blocks, checked vectorised (q16.inference.blocks, the one
home of the row rules): hostile files give the rows, keys, metadata, scores and error records
each rule promises, whatever block size cuts them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from collections_layout import clip_retrieval_folder, datacomp_folder
from omegaconf import DictConfig

from q16 import infer
from q16.sources import collection, embeddings
from q16.sources.base import capped, text_array

HOSTILE = [
    '=HYPERLINK("http://evil")',
    "line\nbreak\r\n<script>alert(1)</script>",
    "\u202eevil\u202c bidi",
    "nul\x00byte",
    "x" * 5000,
    None,
    "",
    "+cmd|' /C calc'!A0",
]


def hostile_folder(root: Path) -> Path:
    """Two files, 3 blocks each at BLOCK_ROWS=4: NaN, inf, zero and long rows, duplicate keys
    (in a block, across blocks, after a NaN copy), empty and null keys, hostile text."""
    clip_retrieval_folder(root, [11, 9], dim=768)
    array = np.load(root / "img_emb" / "img_emb_0.npy").astype(np.float32)
    array[1] = np.nan
    array[2, 5] = np.inf
    array[3] = 0.0
    array[4] *= 3.0
    array[9] *= 0.5
    np.save(root / "img_emb" / "img_emb_0.npy", array)
    meta = pd.read_parquet(root / "metadata" / "metadata_0.parquet")
    keys = meta["key"].tolist()
    keys[5] = keys[6]  # duplicate within a block: the second copy (row 6) is recorded
    keys[10] = keys[0]  # duplicate across blocks
    keys[7] = keys[1]  # row 1 is NaN: row 7 is the first scored copy, not a duplicate
    keys[8] = ""  # empty: recorded
    keys[2] = None  # null key of a NaN row, named <shard>/<row>
    keys[9] = None  # null key: named <shard>/<row>
    meta["key"] = keys
    meta["caption"] = [HOSTILE[i % len(HOSTILE)] for i in range(len(meta))]
    meta["width"] = pd.array([640, None] * 5 + [1], dtype="Int64")
    meta["raw"] = [b"\xff\xfe not utf-8", b"ok"] * 5 + [None]  # bytes: str(value), as rows do
    meta.to_parquet(root / "metadata" / "metadata_0.parquet")
    other = pd.read_parquet(root / "metadata" / "metadata_1.parquet")
    other["width"], other["raw"] = 320, "plain"
    other.to_parquet(root / "metadata" / "metadata_1.parquet")
    second = np.load(root / "img_emb" / "img_emb_1.npy").astype(np.float32)
    second[2] *= 1e25  # finite, but its length overflows float32: recorded, never scored as 0.5
    np.save(root / "img_emb" / "img_emb_1.npy", second)
    return root


def _run(make_cfg: Callable[..., DictConfig], out: Path, *overrides: str) -> dict:
    cfg = make_cfg(
        "model=ViT-L-14",
        f"infer.out_dir={out}",
        "infer.num_workers=0",
        "infer.progress=false",
        "infer.threshold=0.5",
        "fabric.accelerator=cpu",
        *overrides,
        config_name="infer",
    )
    return infer.run(cfg)


def _outputs(out: Path) -> tuple[pd.DataFrame, list[dict]]:
    scores = [pq.read_table(p).to_pandas() for p in sorted((out / "scores").glob("*.parquet"))]
    records = [
        json.loads(line)
        for p in sorted((out / "errors").glob("*.jsonl"))
        for line in p.read_text(encoding="utf-8").splitlines()
    ]
    return pd.concat(scores, ignore_index=True), records


@pytest.mark.parametrize("heads", [False, True])
def test_hostile_clip_retrieval_files(
    make_cfg: Callable[..., DictConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    heads: bool,
) -> None:
    monkeypatch.setattr(collection, "BLOCK_ROWS", 4)
    root = hostile_folder(tmp_path / "laion")
    data = ["data=clip_retrieval", f"data.path={root}", "data.meta_columns=[caption,width,raw,url]"]
    if heads:  # a second head scores the same cached chunks: p_<name> columns equal too
        prompt = tmp_path / "other.npy"
        np.save(prompt, np.random.default_rng(3).standard_normal((2, 768)).astype(np.float32))
        data.append(f"heads=[{{name:q16,prompt:paper}},{{name:other,prompt:{prompt}}}]")
    blocks = _run(make_cfg, tmp_path / "blocks", *data)
    got, records = _outputs(tmp_path / "blocks")
    assert ("p_other" in got.columns) is heads
    assert blocks["images_scored"] == len(got) == 20 - 7
    # the same files cut into other blocks give the same rows and records
    monkeypatch.setattr(collection, "BLOCK_ROWS", 3)
    _run(make_cfg, tmp_path / "blocks3", *data)
    other, other_records = _outputs(tmp_path / "blocks3")
    assert other_records == records
    pd.testing.assert_frame_equal(other, got)
    assert "img_emb_0/9" in set(got["key"]) and got["key"].is_unique
    first = got[got["shard"] == "img_emb_0"]
    captions = {c if isinstance(c, str) else None for c in first["meta_caption"]}  # NaN: null
    # stored as they were, a value longer than MAX_TEXT_CHARS cut with a marker
    expected = {None if h is None else capped(h) for h in HOSTILE}
    assert captions <= expected and len(captions) >= 5
    assert "b'\\xff\\xfe not utf-8'" in set(got["meta_raw"])
    reasons = {r["key"]: r["reason"] for r in records}
    assert reasons["000000000"].startswith("key seen before")
    assert reasons[""] == "sample without a key"
    assert "NaN" in reasons["img_emb_0/2"] and "all zeros" in reasons["000000003"]
    assert "too large to normalise" in reasons["000010002"]
    assert "NaN" in reasons["000000001"] and len(records) == 7
    scaled = got.set_index("key").loc[["000000004", "img_emb_0/9"], "p_inappropriate"]
    assert scaled.between(0, 1).all()  # not-unit rows are normalised, then scored


def test_datacomp_and_saved_embeddings_in_blocks(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collection, "BLOCK_ROWS", 3)
    monkeypatch.setattr(embeddings, "BLOCK_ROWS", 3)
    root = datacomp_folder(tmp_path / "dc", [7, 5])
    data = ["data=datacomp", f"data.path={root}", "data.meta_columns=[uid,text]"]
    summary = _run(make_cfg, tmp_path / "blocks", *data, "infer.save_embeddings=true")
    assert summary["images_scored"] == 12
    saved = np.load(tmp_path / "blocks" / "embeddings" / "00000000.npy")
    with np.load(root / "00000000.npz") as arrays:
        np.testing.assert_allclose(saved, arrays["l14_img"].astype(np.float32), atol=1e-3)
    # re-scored from the saved embeddings, carrying the earlier run's meta_text and a column
    again = [
        "data=embeddings",
        f"data.path={tmp_path / 'blocks'}",
        "data.meta_columns=[text,shard]",
    ]
    _run(make_cfg, tmp_path / "again-blocks", *again)
    got, _ = _outputs(tmp_path / "again-blocks")
    first, _ = _outputs(tmp_path / "blocks")
    assert got["meta_text"].tolist() == first["meta_text"].tolist()
    assert got["meta_shard"].tolist() == first["shard"].tolist()
    np.testing.assert_allclose(got["p_inappropriate"], first["p_inappropriate"], atol=1e-6)


def test_text_array_follows_the_row_rules() -> None:
    """Strings stay, integers are cast, other types are str(value), nulls stay null; bytes
    that are not UTF-8 in a string column become \\xNN (as utf8_text does for file names)."""
    assert text_array(pa.array(["a", None, "=b"])).to_pylist() == ["a", None, "=b"]
    assert text_array(pa.array([1, None, -3])).to_pylist() == ["1", None, "-3"]
    assert text_array(pa.array([1.5, 2.0])).to_pylist() == ["1.5", "2.0"]
    assert text_array(pa.array([b"\xff", None])).to_pylist() == ["b'\\xff'", None]
    assert text_array(pa.array(["u", "v", "u"]).dictionary_encode()).to_pylist() == ["u", "v", "u"]
    broken = pa.Array.from_buffers(
        pa.string(), 1, [None, pa.py_buffer(np.array([0, 2], np.int32)), pa.py_buffer(b"a\xff")]
    )
    assert text_array(broken).to_pylist() == ["a\\xff"]


@pytest.mark.parametrize(
    "blocks",
    [
        [["a", "b"], ["c", "d"]],  # in order: no set is built
        [["a", "b"], ["b", "c"]],  # a repeat where order stops
        [["a", "c"], ["b", "c", "d"], ["a", "e"]],  # out of order, then repeats
        [["b", "a", "a"], ["c"]],  # a repeat inside a block
        [["x"], [], ["x", "y"]],  # an empty block between
    ],
)
def test_repeated_keys_found_in_and_out_of_order(blocks: list[list[str]]) -> None:
    """The shortcut for increasing keys finds the repeats a set of every key finds."""
    from q16.inference.blocks import BlockChecks
    from q16.sources.base import ErrorLog, FeatureBlock

    errors = ErrorLog("s")
    checks, seen, start = BlockChecks("s", errors), set(), 0
    kept, expected = [], []
    for keys in blocks:
        features = np.eye(len(keys), 4, dtype=np.float32)
        block = FeatureBlock(start, pa.array(keys, pa.string()), features, "f")
        kept += checks.check(block).columns["key"].to_pylist()
        for key in keys:
            if key not in seen:
                seen.add(key)
                expected.append(key)
        start += len(keys)
    assert kept == expected
    assert len(errors.records) == sum(map(len, blocks)) - len(expected)
    assert all(r["reason"].startswith("key seen before") for r in errors.records)
