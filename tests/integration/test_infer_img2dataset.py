"""``infer.py data=webdataset`` over img2dataset output: the caption and url of every image
reach the scores, flagged.csv, review.csv and the report (escaped), no class is made up from
extra columns, and the datasheet says what the download lost (issue 12 §1b)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from omegaconf import DictConfig

from conftest import infer_overrides
from img2dataset_layout import Url, write_img2dataset
from q16 import infer
from q16.spreadsheet import read_text_csv

MakeCfg = Callable[..., DictConfig]
HOSTILE = [
    "<script>alert(1)</script> & <img src=x onerror=alert(2)>",
    '=HYPERLINK("http://evil","click")',
    "two\nlines | with [a](http://link) and \u202egpj.exe",
]


def test_img2dataset_run_carries_url_and_caption_and_states_the_download(
    make_cfg: MakeCfg, tmp_path: Path
) -> None:
    extra = {"label": 3, "name": "someone", "path": "/x/y.jpg", "filename": "y.jpg"}
    shards = [
        [Url(HOSTILE[0], extra=extra), Url("lost", error="HTTP Error 404"), Url(HOSTILE[1])],
        [Url(HOSTILE[2]), Url("plain caption"), Url("lost too", error="HTTP Error 404")],
        [Url("small", error="image too small", status="failed_to_resize"), Url("last one")],
    ]
    written = write_img2dataset(tmp_path / "laion", shards)
    out = tmp_path / "scored"
    cfg = make_cfg(
        *infer_overrides(out, "data=webdataset", f"data.shards={tmp_path / 'laion'}"),
        "data.meta_columns=[url,caption]",
        "infer.threshold=0.0",
        "infer.report=true",
        config_name="infer",
    )
    summary = infer.run(cfg)

    assert summary["images_scored"] == len(written) == 5 and summary["errors"] == 0
    assert summary["data"] == "webdataset" and list(summary["per_class"]) == ["(unknown class)"]
    assert summary["source_stats"]["urls_listed"] == 8
    assert summary["source_stats"]["failed_to_download"] == 2
    assert summary["source_stats"]["failed_to_resize"] == 1

    scores = pd.concat(pq.read_table(p).to_pandas() for p in sorted(out.glob("scores/*.parquet")))
    expected = {k: (r["url"], r["caption"]) for k, r in written.items()}
    pairs = zip(scores["meta_url"], scores["meta_caption"], strict=True)
    got = dict(zip(scores["key"], pairs, strict=True))
    assert got == expected  # each image beside its own text: join back by url or key
    assert (scores["class_id"] == -1).all() and scores["class_name"].isna().all()

    text_cells = ["key", "shard", "meta_url", "meta_caption"]
    for name in ("flagged.csv", "review.csv"):
        table = read_text_csv(out / name, restore_cells=text_cells)
        assert dict(zip(table["key"], table["meta_caption"], strict=True)) == {
            k: c for k, (_, c) in expected.items()
        }
        raw = (out / name).read_text()
        assert "\n=HYPERLINK" not in raw and ",=HYPERLINK" not in raw  # never a live formula

    page = (out / "report.html").read_text()
    assert "<script>alert" not in page and "<img src=x" not in page  # text, never markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "[U+202E]" in page and "caption plain caption" in page
    assert all(url in page for url, _ in expected.values())

    sheet = (out / "datasheet_q16.md").read_text()
    assert "img2dataset listed 8 URLs" in sheet and "5 images were downloaded" in sheet
    assert "2 failed to download (most often: HTTP Error 404 (2)" in sheet
    assert "1 failed to resize" in sheet and "q16 screened 5 images" in sheet
    assert json.loads((out / "summary.json").read_text())["source_stats"] == summary["source_stats"]


def _inflate(stats_file: Path, successes: int) -> None:
    record = json.loads(stats_file.read_text())
    record["successes"] = successes
    record["count"] = max(record["count"], successes + record["failed_to_download"])
    stats_file.write_text(json.dumps(record))


def test_stats_claiming_more_than_the_shards_hold_are_flagged(
    make_cfg: MakeCfg, tmp_path: Path
) -> None:
    """Incomplete is never complete: 10**9 successes claimed for a tar of 2 images are kept
    as the downloader's figure, flagged in summary.json, and the datasheet says they disagree;
    stats that agree are not flagged."""
    shards = [[Url("a"), Url("b"), Url("lost", error="HTTP Error 404")], [Url("c")]]
    write_img2dataset(tmp_path / "laion", shards)
    out = tmp_path / "ok"
    overrides = infer_overrides(out, "data=webdataset", f"data.shards={tmp_path / 'laion'}")
    cfg = make_cfg(*overrides, "infer.report=true", config_name="infer")
    stats = infer.run(cfg)["source_stats"]
    assert stats["stats_agree"] is True and stats["images_in_shards"] == 3
    assert "do not match" not in (out / "datasheet_q16.md").read_text()
    for claimed in (10**9, 3):  # wildly and barely more than the 2 images the tar holds
        _inflate(tmp_path / "laion" / "00000_stats.json", claimed)
        out = tmp_path / f"inflated-{claimed}"
        overrides = infer_overrides(out, "data=webdataset", f"data.shards={tmp_path / 'laion'}")
        summary = infer.run(make_cfg(*overrides, "infer.report=true", config_name="infer"))
        stats = summary["source_stats"]
        assert stats["stats_agree"] is False and stats["images_in_shards"] == 3
        assert stats["successes"] == claimed + 1
        sheet = (out / "datasheet_q16.md").read_text()
        assert f"they claim {claimed + 1:,} images downloaded, the shards hold 3" in sheet
