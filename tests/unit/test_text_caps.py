"""No field length breaks a later step: text is capped where it enters (row and block paths),
and a key no file could have is recorded, not scored."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from omegaconf import DictConfig

from conftest import infer_overrides
from q16.sources.base import (
    MAX_KEY_CHARS,
    MAX_TEXT_CHARS,
    ErrorLog,
    RawSample,
    capped,
    checked,
    text_array,
)
from q16.spreadsheet import read_text_csv


@pytest.mark.parametrize("length", [MAX_TEXT_CHARS + 1, 131_073, 2_000_000])
def test_text_fields_are_capped_on_the_row_path(length: int) -> None:
    raw = RawSample(
        key="k",
        source="s.tar",
        file_name="f" * length,
        class_name="c" * length,
        meta={"caption": "x" * length, "url": None},
    )
    raw = checked(raw)
    for value in (raw.file_name, raw.class_name, raw.meta["caption"]):
        assert value is not None and len(value) < MAX_TEXT_CHARS + 60
        assert value.endswith(f"[{length - MAX_TEXT_CHARS:,} more characters cut by q16]")
    assert raw.meta["url"] is None
    assert checked(RawSample(key="k", source="s", class_name="short")).class_name == "short"


def test_a_key_no_file_could_have_is_refused_and_its_record_capped() -> None:
    with pytest.raises(ValueError, match="more than 4,096"):
        checked(RawSample(key="k" * (MAX_KEY_CHARS + 1), source="s"))
    checked(RawSample(key="k" * MAX_KEY_CHARS, source="s"))  # at the limit: scored
    errors = ErrorLog("shard")
    errors.add("k" * 1_000_000, "why")
    assert len(errors.records[0]["key"] or "") < MAX_KEY_CHARS + 60


@pytest.mark.parametrize(
    "values",
    [
        pa.array(["short", None, "y" * 200_000]),
        pa.array(["y" * 200_000, "z"]).dictionary_encode(),
        pa.chunked_array([["a"], ["b" * (MAX_TEXT_CHARS + 1)]]),
    ],
)
def test_text_fields_are_capped_on_the_block_path(values) -> None:
    capped_values = text_array(values, MAX_TEXT_CHARS).to_pylist()
    plain = text_array(values).to_pylist()
    assert capped_values == [None if v is None else capped(v) for v in plain]
    assert max(len(v) for v in capped_values if v) < MAX_TEXT_CHARS + 60
    assert text_array(pa.array([1, 2]), 10).to_pylist() == ["1", "2"]


@pytest.mark.slow
def test_a_huge_caption_and_class_name_still_give_a_report(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    """End to end: tar samples whose .json holds a 300,000-character caption and class name;
    infer.report=true writes flagged.csv, review.csv and the page, all readable."""
    from q16 import infer
    from q16.sources.wds import synthetic_images, write_shards

    def samples():
        for i, sample in enumerate(synthetic_images(4, seed=3)):
            record = {"caption": f"{i}" + "c" * 300_000, "class_name": "n" * 300_000}
            yield {"__key__": sample["__key__"], "jpg": sample["jpg"], "json": json.dumps(record)}

    shards, out = tmp_path / "shards", tmp_path / "out"
    write_shards(samples(), str(shards / "s-%04d.tar"), maxcount=4)
    overrides = infer_overrides(
        out,
        f"data.shards={shards}",
        "data.meta_columns=[caption]",
        "infer.threshold=0.0",
        "infer.report=true",
    )
    infer.run(make_cfg(*overrides, config_name="infer"))
    flagged = read_text_csv(out / "flagged.csv")
    assert len(flagged) == 4
    assert max(flagged["meta_caption"].str.len()) < MAX_TEXT_CHARS + 60
    assert max(flagged["class_name"].str.len()) < MAX_TEXT_CHARS + 60
    assert len(read_text_csv(out / "review.csv")) == 4 and (out / "report.html").is_file()
