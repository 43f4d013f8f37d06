"""What an out_dir remembers: the fingerprint (inputs included) and the ranks' reports."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from q16.errors import Q16Error
from q16.inference.resume import check_fingerprint, data_identity, fingerprint
from q16.inference.state import LoopStats, wait_for_ranks, write_rank
from q16.outdir import OUT_DIR_FORMAT
from q16.sources.base import Shard


def make_fingerprint(inputs: list[Shard], **changes: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "model": "q16-tiny",
        "weights": None,
        "precision": "fp32",
        "preprocess": "p",
        "prompt_source": "zeroshot",
        "threshold": 0.9,
        "autocast": "off",
        "max_pixels": 1000,
        "shards": inputs,
    }
    return fingerprint(**(args | changes))


def test_data_identity_tracks_paths_and_folder_chunks(tmp_path: Path) -> None:
    a = [Shard("s-0", str(tmp_path / "a" / "s-0.tar")), Shard("s-1", str(tmp_path / "a/s-1.tar"))]
    b = [Shard(s.name, s.source.replace("/a/", "/b/")) for s in a]
    assert data_identity(a) == data_identity(list(a))
    assert data_identity(a) != data_identity(b)  # same shard names, other files
    assert data_identity(a) != data_identity(a[:1])
    chunks = [Shard("f-000000", str(tmp_path), ("x/1.jpg", "x/2.jpg"))]
    resized = [Shard("f-000000", str(tmp_path), ("x/1.jpg",)), Shard("f-000001", str(tmp_path))]
    assert data_identity(chunks) != data_identity(resized)


@pytest.mark.parametrize(
    "change,named",
    [
        ({"autocast": "bf16"}, "autocast"),
        ({"max_pixels": 10}, "max_pixels"),
        ({"shards": [Shard("s-0", "/elsewhere/s-0.tar")]}, "inputs"),
    ],
)
def test_fingerprint_refuses_other_inputs_and_settings(
    tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    shards = [Shard("s-0", str(tmp_path / "s-0.tar"))]
    check_fingerprint(tmp_path, make_fingerprint(shards), write=True)
    check_fingerprint(tmp_path, make_fingerprint(shards), write=True)  # same: resumes
    with pytest.raises(Q16Error, match=named) as err:
        check_fingerprint(tmp_path, make_fingerprint(shards, **change), write=True)
    assert "\n" not in str(err.value)


def test_out_dir_of_another_q16_version_is_refused_as_such(tmp_path: Path) -> None:
    """A fingerprint without our format number (an older q16) is not blamed on settings."""
    current = make_fingerprint([Shard("s-0", str(tmp_path / "s-0.tar"))])
    older = {k: v for k, v in current.items() if k != "format"}
    (tmp_path / "fingerprint.json").write_text(json.dumps(older))
    with pytest.raises(
        Q16Error, match=rf"another q16 version .*format 0, this q16 writes {OUT_DIR_FORMAT}"
    ):
        check_fingerprint(tmp_path, current, write=True)


def test_wait_for_ranks_gives_up_after_the_timeout(tmp_path: Path) -> None:
    write_rank(tmp_path, 0, "run", LoopStats(images=3))
    write_rank(tmp_path, 2, "old-run", LoopStats())  # a previous run's file does not count
    tick = time.monotonic()
    found, missing = wait_for_ranks(tmp_path, 3, "run", timeout_s=0.3, poll_s=0.05)
    assert 0.3 <= time.monotonic() - tick < 5
    assert [r["rank"] for r in found] == [0] and missing == [1, 2]
    write_rank(tmp_path, 1, "run", LoopStats())
    write_rank(tmp_path, 2, "run", LoopStats())
    found, missing = wait_for_ranks(tmp_path, 3, "run", timeout_s=0)
    assert len(found) == 3 and not missing
    assert json.loads((tmp_path / "ranks" / "rank-0.json").read_text())["images"] == 3
