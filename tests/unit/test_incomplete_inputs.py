"""Incomplete is never complete, and a sample is all its members: a tar without its
end-of-archive marker, an ``.npy`` shorter than its header and a sample with several image
members are recorded and counted (summary.json), never read as whole nor dropped silently."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from collections_layout import clip_retrieval_folder
from omegaconf import DictConfig
from PIL import Image

from conftest import infer_overrides
from q16 import infer
from q16.errors import Q16Error
from q16.sources.base import ErrorLog
from q16.sources.tars import tar_samples
from q16.sources.wds import synthetic_images, write_shards

MakeCfg = Callable[..., DictConfig]
TINY_DIM = 64  # q16-tiny's embedding width


def _run(make_cfg: MakeCfg, out: Path, *extra: str) -> dict:
    return infer.run(make_cfg(*infer_overrides(out, *extra), config_name="infer"))


def _records(out: Path) -> list[dict]:
    text = (out / "errors.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def _member_ends(path: Path) -> list[int]:
    """Byte offsets where each member's data (padded to 512) ends: the member boundaries."""
    with tarfile.open(path) as tar:
        return [m.offset_data + (m.size + 511) // 512 * 512 for m in tar.getmembers()]


@pytest.fixture
def whole_tar(tmp_path: Path) -> Path:
    return Path(write_shards(synthetic_images(4), str(tmp_path / "src" / "s-%04d.tar"), 10)[0])


@pytest.mark.parametrize(
    "cut",
    [
        "member_boundary",  # a copy that stopped between members
        "sample_boundary",  # between samples: every sample read is whole, still cut
        "one_zero_block",  # half the marker
        "inside_member",  # the old case: cut in the middle of a member's data
        "inside_header",  # cut in a header block
    ],
)
def test_a_cut_tar_is_incomplete(
    make_cfg: MakeCfg, tmp_path: Path, whole_tar: Path, cut: str
) -> None:
    data, ends = whole_tar.read_bytes(), _member_ends(whole_tar)
    at = {
        "member_boundary": ends[4],
        "sample_boundary": ends[5],
        "one_zero_block": ends[-1],
        "inside_member": ends[4] + 600,
        "inside_header": ends[5] + 100,
    }[cut]
    blob = data[:at] + (b"\0" * 512 if cut == "one_zero_block" else b"")
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "cut.tar").write_bytes(blob)
    (shards / "whole.tar").write_bytes(data)
    summary = _run(make_cfg, tmp_path / "out", f"data.shards={shards}")
    assert summary["shards_incomplete"] == ["cut"]
    assert summary["shards_done"] == 2  # read up to the cut; a resume re-reads a grown file
    assert 4 < summary["images_scored"] < 8 or cut == "one_zero_block"
    cut_records = [r for r in _records(tmp_path / "out") if r["shard"] == "cut"]
    assert cut_records and all(r["key"] is None for r in cut_records)
    assert any(r.get("incomplete") for r in cut_records)


def test_a_gzipped_tar_cut_at_a_boundary_is_incomplete(tmp_path: Path, whole_tar: Path) -> None:
    data, ends = whole_tar.read_bytes(), _member_ends(whole_tar)
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(gzip.compress(data[: ends[2]]))
    errors = ErrorLog("cut")
    assert len(list(tar_samples(str(path), errors, 10**9))) == 1
    assert [r.get("incomplete") for r in errors.records] == [True]
    whole = tmp_path / "whole.tar.gz"
    whole.write_bytes(gzip.compress(data))
    errors = ErrorLog("whole")
    assert len(list(tar_samples(str(whole), errors, 10**9))) == 4 and not errors.records


def test_whole_tars_of_any_writer_are_complete(tmp_path: Path) -> None:
    """tarfile's formats, padded to a record or not, and an empty archive: no record."""
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT):
        path = tmp_path / f"f{fmt}.tar"
        with tarfile.open(path, "w", format=fmt) as tar:
            for name in ("a.jpg", "a.cls", "b.png"):
                info = tarfile.TarInfo(name)
                info.size = 3
                tar.addfile(info, io.BytesIO(b"abc"))
        errors = ErrorLog(path.stem)
        assert len(list(tar_samples(str(path), errors, 10**9))) == 2 and not errors.records
    empty = tmp_path / "empty.tar"
    tarfile.open(empty, "w").close()
    errors = ErrorLog("empty")
    assert list(tar_samples(str(empty), errors, 10**9)) == [] and not errors.records


def _cut_npy(path: Path, rows_kept: float) -> int:
    """Cut ``path`` inside its data, ``rows_kept`` rows in; returns the rows its header claims."""
    array = np.load(path)
    data = path.read_bytes()
    header = len(data) - array.nbytes
    row = array.nbytes // len(array)
    path.write_bytes(data[: header + int(rows_kept * row)])
    return len(array)


@pytest.mark.parametrize("rows_kept", [0, 2, 2.5, 5.9])
def test_a_cut_npy_counts_its_lost_rows_as_not_scored(
    make_cfg: MakeCfg, tmp_path: Path, rows_kept: float
) -> None:
    root = clip_retrieval_folder(tmp_path / "cr", [6, 3], dim=TINY_DIM)
    claimed = _cut_npy(root / "img_emb" / "img_emb_0.npy", rows_kept)
    data = ["data=clip_retrieval", f"data.path={root}"]
    summary = _run(make_cfg, tmp_path / "out", *data)
    whole = int(rows_kept)
    assert summary["images_scored"] == whole + 3
    assert summary["images_unscored"] == claimed - whole  # never "0 not scored"
    assert summary["shards_incomplete"] == ["img_emb_0"]
    (record,) = [r for r in _records(tmp_path / "out") if r["shard"] == "img_emb_0"]
    assert record["images"] == claimed - whole and "is cut" in record["reason"]


def test_cut_saved_embeddings_count_their_lost_rows(make_cfg: MakeCfg, tmp_path: Path) -> None:
    images = tmp_path / "imgs" / "n00000001"
    images.mkdir(parents=True)
    for i in range(5):
        Image.new("RGB", (16, 16), (i * 40, 9, 9)).save(images / f"{i}.png")
    first = tmp_path / "first"
    folder = ["data=folder", f"data.path={images.parent}", "infer.save_embeddings=true"]
    _run(make_cfg, first, *folder)
    (npy,) = (first / "embeddings").glob("*.npy")
    claimed = _cut_npy(npy, 3)
    summary = _run(make_cfg, tmp_path / "again", "data=embeddings", f"data.path={first}")
    assert (summary["images_scored"], summary["images_unscored"]) == (3, claimed - 3)
    assert summary["shards_incomplete"] == [npy.stem]


def test_an_npy_cut_inside_its_header_is_one_line(make_cfg: MakeCfg, tmp_path: Path) -> None:
    root = clip_retrieval_folder(tmp_path / "cr", [4], dim=TINY_DIM)
    path = root / "img_emb" / "img_emb_0.npy"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(Q16Error, match=r"not a readable \.npy") as err:
        _run(make_cfg, tmp_path / "out", "data=clip_retrieval", f"data.path={root}")
    assert "\n" not in str(err.value)


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpg(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), color).save(buffer, format="JPEG")
    return buffer.getvalue()


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def test_every_image_member_is_scored_or_recorded(make_cfg: MakeCfg, tmp_path: Path) -> None:
    """One image per key is scored, by a fixed preference (jpg before png, whatever the tar
    order); each other image member is a record naming it, counted as not scored."""
    _tar(
        tmp_path / "shards" / "s.tar",
        [
            ("k1.png", _png((250, 0, 0))),  # png first in the tar: jpg is still the one scored
            ("k1.jpg", _jpg((0, 250, 0))),
            ("k2.webp", _png((0, 0, 250))),  # bytes need not match the name to be scored
            ("k2.PNG", _png((9, 9, 9))),
            ("k3.jpg", _jpg((1, 2, 3))),
            ("k4.gif", _png((4, 4, 4))),
            ("k4.tiff", _png((5, 5, 5))),
            ("k4.bmp", _png((6, 6, 6))),
            ("k4.seg.png", _png((7, 7, 7))),  # extension "seg.png": not an image member
        ],
    )
    summary = _run(make_cfg, tmp_path / "out", f"data.shards={tmp_path / 'shards'}")
    scores = pq.read_table(tmp_path / "out" / "scores" / "s.parquet").to_pandas()
    assert sorted(scores["key"]) == ["k1", "k2", "k3", "k4"]
    names = dict(zip(scores["key"], scores["file_name"], strict=True))
    assert names == {"k1": "k1.jpg", "k2": "k2.PNG", "k3": "k3.jpg", "k4": "k4.bmp"}
    records = _records(tmp_path / "out")
    second = sorted(r["reason"].split(":")[0] for r in records)
    assert second == [
        "second image member k1.png",
        "second image member k2.webp",
        "second image member k4.gif",
        "second image member k4.tiff",
    ]
    assert {r["key"] for r in records} == {"k1", "k2", "k4"}
    assert summary["images_unscored"] == 4 and summary["images_scored"] == 4


def test_the_scored_member_is_the_same_whatever_the_order(tmp_path: Path) -> None:
    from q16.sources.wds import WebDatasetShards

    for order in (
        [("a.png", _png((1, 1, 1))), ("a.jpg", _jpg((2, 2, 2)))],
        [
            ("a.jpg", _jpg((2, 2, 2))),
            ("a.png", _png((1, 1, 1))),
        ],
    ):
        path = _tar(tmp_path / f"{order[0][0]}.tar", order)
        source = WebDatasetShards(str(path))
        (shard,) = source.list_shards()
        errors = ErrorLog(shard.name)
        (sample,) = source.iter_samples(shard, errors)
        assert sample.file_name == "a.jpg" and sample.data == _jpg((2, 2, 2))
        assert [r["key"] for r in errors.records] == ["a"]
    assert pd is not None


def test_the_datasheet_says_a_shard_was_cut(
    make_cfg: MakeCfg, tmp_path: Path, whole_tar: Path
) -> None:
    data, ends = whole_tar.read_bytes(), _member_ends(whole_tar)
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "cut.tar").write_bytes(data[: ends[5]])  # cut exactly between two samples
    _run(make_cfg, tmp_path / "out", f"data.shards={shards}", "infer.report=true")
    sheet = (tmp_path / "out" / "datasheet_q16.md").read_text()
    assert "1 problem(s) with whole shards" in sheet and "WARNING" in sheet


@pytest.mark.parametrize(
    ("names", "scored"),
    [
        (["k.jpg", "k.JPG"], "k.JPG"),
        (["k.JPG", "k.jpg"], "k.JPG"),
        (["k.jpg", "k.Jpg", "k.JPG"], "k.JPG"),
        (["k.png", "k.PNG", "k.jpeg"], "k.jpeg"),
    ],
)
def test_members_that_differ_only_in_case_are_each_recorded(
    tmp_path: Path, names: list[str], scored: str
) -> None:
    """``k.jpg`` beside ``k.JPG`` is a second image member, not merged into one."""
    from q16.sources.wds import WebDatasetShards

    images = {name: _png((i * 40, 0, 0)) for i, name in enumerate(names)}
    path = _tar(tmp_path / "s.tar", list(images.items()))
    source = WebDatasetShards(str(path))
    (shard,) = source.list_shards()
    errors = ErrorLog(shard.name)
    (sample,) = source.iter_samples(shard, errors)
    assert sample.file_name == scored and sample.data == images[scored]
    recorded = sorted(r["reason"].split(":")[0] for r in errors.records)
    assert recorded == sorted(f"second image member {n}" for n in names if n != scored)
