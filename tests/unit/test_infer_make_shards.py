"""scripts/make_shards.py keeps class and original file name, and infer's reader reads it back."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from q16.sources.base import ErrorLog
from q16.sources.wds import WebDatasetShards, write_shards

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_shards.py"


def load_script():
    spec = importlib.util.spec_from_file_location("make_shards", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pack_folder_and_read_back(tmp_path: Path) -> None:
    src = tmp_path / "train"
    for synset in ("n01443537", "n01440764"):
        (src / synset).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (9, 9)).save(src / synset / f"{synset}_{i}.v1.JPEG")
    mapping = tmp_path / "names.json"
    mapping.write_text(json.dumps({"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"]}))
    samples = list(load_script().samples(src, str(mapping)))
    assert len({s["__key__"] for s in samples}) == 6
    assert all("." not in s["__key__"] for s in samples)
    shards = write_shards(iter(samples), str(tmp_path / "out" / "p-%03d.tar"), maxcount=4)
    assert len(shards) == 2
    source = WebDatasetShards(str(tmp_path / "out"))
    rows = [
        raw
        for shard in source.list_shards()
        for raw in source.iter_samples(shard, ErrorLog(shard.name))
    ]
    assert [(r.file_name, r.class_id, r.class_name, r.synset) for r in rows[:1]] == [
        ("n01440764_0.v1.JPEG", 0, "tench", "n01440764")
    ]
    assert rows[-1].class_name == "goldfish" and all(r.data for r in rows)


@pytest.mark.slow  # a subprocess per case
@pytest.mark.parametrize(
    "args,message",
    [
        (["--maxcount", "-3"], "--maxcount: must be an integer >= 1, not '-3'"),
        (["--maxcount", "abc"], "--maxcount: must be an integer >= 1, not 'abc'"),
        (["--synthetic", "-3"], "--synthetic: must be an integer >= 0, not '-3'"),
    ],
)
def test_bad_counts_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--synthetic", "2", str(tmp_path / "x-%06d.tar"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.splitlines() == [f"q16: error: argument {message} (see --help)"]
    assert not list(tmp_path.iterdir())


def test_fifo_and_device_links_are_skipped_not_read(tmp_path: Path) -> None:
    src = tmp_path / "train" / "n01440764"
    src.mkdir(parents=True)
    Image.new("RGB", (9, 9)).save(src / "a.JPEG")
    os.mkfifo(src / "pipe.JPEG")
    os.symlink("/dev/zero", src / "zero.JPEG")
    samples = list(load_script().samples(tmp_path / "train", None))
    assert [s["__key__"] for s in samples] == ["a"]
