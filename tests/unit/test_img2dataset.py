"""img2dataset output as q16 input: the text that came with each image, no guessed classes,
and the downloader's own counts (issue 12 §1b)."""

from __future__ import annotations

import io
import json
import logging
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig

from img2dataset_layout import Url, jpeg, write_img2dataset
from q16.errors import Q16Error
from q16.report.source_stats import source_stats_lines
from q16.sources.base import ErrorLog, RawSample, checked
from q16.sources.img2dataset import MAX_STATS_BYTES, download_stats, tar_stems
from q16.sources.sample_meta import MAX_META_CHARS
from q16.sources.wds import WebDatasetShards

MakeCfg = Callable[..., DictConfig]
EXTRA = {"label": 7, "name": "a person's name", "path": "/srv/x.jpg", "filename": "x.jpg"}


def source(make_cfg: MakeCfg, data: str, root: Path, *extra: str) -> WebDatasetShards:
    cfg = make_cfg(f"data={data}", f"data.shards={root}", *extra, config_name="infer")
    made = instantiate(cfg.data)
    assert isinstance(made, WebDatasetShards)
    return made


def samples(src: WebDatasetShards) -> tuple[list[RawSample], list[dict]]:
    raws, records = [], []
    for shard in src.list_shards():
        errors = ErrorLog(shard.name)
        raws += [checked(r) for r in src.iter_samples(shard, errors)]
        records += errors.records
    return raws, records


def write_tar(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_meta_columns_come_from_json_and_txt(make_cfg: MakeCfg, tmp_path: Path) -> None:
    written = write_img2dataset(tmp_path, [[Url("a dog"), Url("gone", error="404"), Url("cat")]])
    cols = "data.meta_columns=[url,caption,txt,sha256,width,exif,not_there]"
    raws, records = samples(source(make_cfg, "webdataset", tmp_path, cols))
    assert records == [] and [r.key for r in raws] == list(written)  # failed URL: not in tar
    first = raws[0].meta
    assert first is not None and first["url"] == written[raws[0].key]["url"]
    assert first["caption"] == first["txt"] == "a dog"
    assert first["sha256"] == written[raws[0].key]["sha256"] and first["width"] == "64"
    assert json.loads(first["exif"] or "") == {"Image Make": "Canon"}  # text as img2dataset wrote
    assert first["not_there"] is None  # a column a sample lacks is null, not an error


def test_extra_json_columns_never_become_classes(make_cfg: MakeCfg, tmp_path: Path) -> None:
    """img2dataset with ``save_additional_columns=[label,name,path,filename]``: one "class" per
    image and made-up file names before; now no class, and the tar member's own name."""
    write_img2dataset(tmp_path, [[Url(f"c{i}", extra=EXTRA) for i in range(3)]])
    raws, _ = samples(source(make_cfg, "webdataset", tmp_path))
    assert {(r.class_id, r.class_name, r.synset) for r in raws} == {(-1, None, None)}
    assert [r.file_name for r in raws] == [f"{r.key}.jpg" for r in raws]
    named = source(make_cfg, "webdataset", tmp_path, "data.class_id_keys=label")
    assert {r.class_id for r in samples(named)[0]} == {7}  # an explicit setting is obeyed
    imagenet, _ = samples(source(make_cfg, "imagenet", tmp_path))  # its documented .json keys
    assert {(r.class_id, r.class_name, r.file_name) for r in imagenet} == {
        (7, "a person's name", "x.jpg")
    }


@pytest.mark.parametrize("value", [1, ["label", 3], ["label", "label"], [""]])
def test_bad_key_settings_are_one_line_errors(tmp_path: Path, value: object) -> None:
    with pytest.raises(Q16Error, match=r"data\.class_id_keys"):
        WebDatasetShards(str(tmp_path), class_id_keys=value)


def test_hostile_metadata_reaches_the_scores_as_bounded_valid_text(tmp_path: Path) -> None:
    image = jpeg(0)
    huge = "=HYPERLINK(" + "x" * (3 * MAX_META_CHARS)
    write_tar(
        tmp_path / "00000.tar",
        {
            "000000000.jpg": image,
            "000000000.txt": b"bad \xff\xfe utf8 \x00 nul \xe2\x80\xae bidi",
            "000000000.json": json.dumps({"url": huge, "caption": None, "n": "\ud800"}).encode(),
            "000000001.jpg": image,
            "000000001.json": b'{"url": "https://x", "caption": ',  # cut mid-way
            "000000002.jpg": image,
            "000000002.json": b"[1, 2]",  # valid JSON, not an object
        },
    )
    src = WebDatasetShards(str(tmp_path), meta_columns=["url", "caption", "n"])
    raws, records = samples(src)
    assert [r.key for r in raws] == ["000000000", "000000001", "000000002"]
    assert all(r.data == image and r.error is None for r in raws)  # every image still scored
    meta = raws[0].meta or {}
    assert meta["caption"] == "bad \ufffd\ufffd utf8 \x00 nul \u202e bidi"  # .txt fallback
    url = meta["url"] or ""
    assert url.startswith("=HYPERLINK(") and len(url) < MAX_META_CHARS + 100 and "cut" in url
    assert meta["n"] == "\\ud800"
    for value in meta.values():
        (value or "").encode("utf-8")  # valid UTF-8: parquet and CSV can store it
    assert raws[1].meta == {"url": None, "caption": None, "n": None}
    assert [(r["key"], "scored without its metadata" in r["reason"]) for r in records] == [
        (None, True),
        (None, True),
    ]  # recorded, but not counted as an image left unscored (key null)


def test_download_stats_sum_shards_and_name_the_failures(tmp_path: Path) -> None:
    write_img2dataset(
        tmp_path,
        [
            [Url("a"), Url("b", error="HTTP Error 404"), Url("c", error="timed out")],
            [
                Url("d", error="HTTP Error 404"),
                Url("e", error="bad image", status="failed_to_resize"),
            ],
        ],
    )
    stats = WebDatasetShards(str(tmp_path)).download_stats(
        WebDatasetShards(str(tmp_path)).list_shards()
    )
    assert stats is not None
    assert (stats["urls_listed"], stats["successes"]) == (5, 1)
    assert (stats["failed_to_download"], stats["failed_to_resize"]) == (3, 1)
    assert stats["top_failure_reasons"][0] == ["HTTP Error 404", 2]
    assert stats["shards_with_stats"] == stats["shards_total"] == 2


@pytest.mark.parametrize(
    "stats_json",
    [
        b'{"count": -5, "successes": 1, "failed_to_download": 0}',
        b'{"count": "63", "successes": 57, "failed_to_download": 6}',
        b'{"count": true, "successes": 0, "failed_to_download": 0}',
        b'{"count": 3, "successes": 57, "failed_to_download": 6}',
        b'{"count": 1e400, "successes": 1, "failed_to_download": 0}',
        b"[1, 2, 3]",
        b"\xff\xfe not json",
        b"",
    ],
)
def test_bad_stats_json_is_ignored_with_a_warning_and_the_parquet_used(
    tmp_path: Path, stats_json: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    write_img2dataset(tmp_path, [[Url("a"), Url("b", error="404")]])
    (tmp_path / "00000_stats.json").write_bytes(stats_json)
    with caplog.at_level(logging.WARNING):
        stats = download_stats([str(tmp_path / "00000")])
    assert "00000_stats.json" in caplog.text
    assert stats is not None and (stats["urls_listed"], stats["successes"]) == (2, 1)
    assert stats["top_failure_reasons"] == [["404", 1]] and stats["files_ignored"] == 1


def test_huge_stats_json_is_not_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_img2dataset(tmp_path, [[Url("a"), Url("b", error="404")]])
    with (tmp_path / "00000_stats.json").open("r+b") as file:
        file.truncate(MAX_STATS_BYTES + 1)  # sparse: nothing near this size is written
    stats = download_stats([str(tmp_path / "00000")])
    assert "larger than" in caplog.text and stats is not None and stats["urls_listed"] == 2


def test_no_usable_stats_means_no_stats(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_img2dataset(tmp_path, [[Url("a")]])
    (tmp_path / "00000_stats.json").write_bytes(b"{}")
    (tmp_path / "00000.parquet").write_bytes(b"PAR1 not really")
    assert download_stats([str(tmp_path / "00000")]) is None
    assert caplog.text.count("stats ignored") == 2
    (tmp_path / "00000_stats.json").unlink()
    (tmp_path / "00000.parquet").unlink()
    assert download_stats(tar_stems([str(tmp_path / "00000.tar"), "pipe:cat x.tar"])) is None


def test_datasheet_paragraph_states_listed_failed_screened_and_escapes() -> None:
    stats = {
        "kind": "img2dataset",
        "shards_total": 2,
        "shards_with_stats": 1,
        "urls_listed": 63,
        "successes": 57,
        "failed_to_download": 5,
        "failed_to_resize": 1,
        "top_failure_reasons": [["<b>|x|</b> [a](http://e)", 4], ["bad", "n"], "junk"],
    }
    text = "\n".join(source_stats_lines({"source_stats": stats}, 57))
    assert "listed 63 URLs" in text and "1 of 2 shards" in text
    assert "57 images were downloaded" in text
    assert "5 failed to download" in text and "1 failed to resize" in text
    assert "q16 screened 57 images" in text
    assert "\\<b\\>\\|x\\|\\</b\\> \\[a\\](http://e) (4)" in text and "bad" not in text
    for broken in ({**stats, "urls_listed": -1}, {**stats, "successes": "57"}, "x", None):
        assert source_stats_lines({"source_stats": broken}, 57) == []


def test_files_layout_carries_sidecar_text_and_counts(make_cfg: MakeCfg, tmp_path: Path) -> None:
    """img2dataset ``output_format=files`` read as ``data=folder``: the ``<stem>.json`` /
    ``.txt`` beside each image are its metadata, the folders' stats its download counts."""
    root = tmp_path / "out"
    written = write_img2dataset(
        root, [[Url("a", extra=EXTRA), Url("b", error="404")], [Url("c")]], output_format="files"
    )
    (root / "00001" / "000010000.json").write_bytes(b'{"url": ')  # cut: image still scored
    cfg = make_cfg(
        "data=folder",
        f"data.path={root}",
        "data.class_from_dirs=false",
        "data.meta_columns=[url,caption,label]",
        config_name="infer",
    )
    folder = instantiate(cfg.data)
    shards = folder.list_shards()
    raws, records = [], []
    for shard in shards:
        errors = ErrorLog(shard.name)
        raws += [checked(r) for r in folder.iter_samples(shard, errors)]
        records += errors.records
    assert sorted(r.key for r in raws) == [f"{k[:5]}/{k}.jpg" for k in sorted(written)]
    assert all(r.data and r.class_id == -1 for r in raws)
    by_key = {r.key.split("/")[1].removesuffix(".jpg"): r.meta for r in raws}
    assert by_key["000000000"] == {"url": written["000000000"]["url"], "caption": "a", "label": "7"}
    assert by_key["000010000"] == {"url": None, "caption": "c", "label": None}  # .txt remains
    assert [r["key"] for r in records] == [None] and "000010000.json" in records[0]["reason"]
    stats = folder.download_stats(shards)
    assert stats is not None and (stats["urls_listed"], stats["successes"]) == (3, 2)


def test_deeply_nested_sidecar_json_costs_only_its_metadata(
    make_cfg: MakeCfg, tmp_path: Path
) -> None:
    """A ``<stem>.json`` nested past the parser's limit: recorded for its image, which is still
    scored, and the images after it in the folder chunk are read as usual."""
    root = tmp_path / "out"
    written = write_img2dataset(root, [[Url("a"), Url("b"), Url("c")]], output_format="files")
    (root / "00000" / "000000000.json").write_text("[" * 200_000 + "]" * 200_000)
    cfg = make_cfg(
        "data=folder",
        f"data.path={root}",
        "data.class_from_dirs=false",
        "data.meta_columns=[url]",
        config_name="infer",
    )
    folder = instantiate(cfg.data)
    raws, records = [], []
    for shard in folder.list_shards():
        errors = ErrorLog(shard.name)
        raws += list(folder.iter_samples(shard, errors))
        records += errors.records
    assert len(raws) == len(written) == 3 and all(r.data and r.error is None for r in raws)
    assert [r["key"] for r in records] == [None] and "nested too deeply" in records[0]["reason"]
