"""scripts/make_shards.py keeps class and original file name, and infer's reader reads it back."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

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
