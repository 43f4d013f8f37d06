"""Names are data, never code: a shard found on disk (a folder's listing, a glob's or a brace
pattern's matches) is a local file whatever its name says; only what ``data.shards`` spells
out literally is a URL or a ``pipe:`` command."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from q16.sources.base import ErrorLog, is_remote
from q16.sources.shardlist import expand_shards
from q16.sources.wds import WebDatasetShards, synthetic_images, write_shards

# names that webdataset would take for a command or a URL if it saw them bare
HOSTILE_NAMES = [
    "pipe:touch RAN;.tar",
    "pipe:touch RAN_TOO #.tar",
    "http:evil.tar",
    "https:evil.tar",
    "s3:bucket.tar",
    "gs:bucket.tar",
    "file:x.tar",
    "-rf.tar",
]


@pytest.fixture
def hostile_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "shards"
    folder.mkdir()
    for i, name in enumerate(HOSTILE_NAMES):
        made = write_shards(synthetic_images(2, seed=i), str(tmp_path / f"m{i}-%04d.tar"), 4)
        shutil.move(made[0], folder / name)
    return folder


@pytest.mark.parametrize(
    "spec", [".", "./", "*.tar", "./*.tar", "*", "{pipe:touch RAN;,http:evil}.tar", "p*.tar"]
)
def test_listed_names_are_local_files_and_nothing_runs(
    hostile_folder: Path, monkeypatch: pytest.MonkeyPatch, spec: str
) -> None:
    monkeypatch.chdir(hostile_folder)
    urls = expand_shards(spec)
    assert urls and all(Path(u).is_absolute() and not is_remote(u) for u in urls)
    assert {Path(u).name for u in urls} <= set(HOSTILE_NAMES)
    source = WebDatasetShards(spec)
    for shard in source.list_shards():
        errors = ErrorLog(shard.name)
        samples = list(source.iter_samples(shard, errors))
        assert len(samples) == 2 and not errors.records, errors.records
        assert Path(shard.source).parent == hostile_folder
    assert not list(hostile_folder.glob("RAN*")) and not list(Path.cwd().glob("RAN*"))


def test_a_folder_given_by_its_path_lists_absolute_names(hostile_folder: Path) -> None:
    urls = expand_shards(str(hostile_folder))
    assert sorted(Path(u).name for u in urls) == sorted(HOSTILE_NAMES)
    assert all(u.startswith(str(hostile_folder) + "/") for u in urls)


def test_a_literal_pipe_is_a_command_as_documented(tmp_path: Path) -> None:
    """Written literally in data.shards, ``pipe:`` is a command (docs/inference.md)."""
    tar = write_shards(synthetic_images(2), str(tmp_path / "s-%04d.tar"), 4)[0]
    source = WebDatasetShards(f"pipe:cat {tar}")
    (shard,) = source.list_shards()
    assert shard.source == f"pipe:cat {tar}"
    assert len(list(source.iter_samples(shard, ErrorLog(shard.name)))) == 2


@pytest.mark.slow
def test_infer_on_a_relative_folder_runs_no_name(
    make_cfg, hostile_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import infer_overrides
    from q16 import infer

    monkeypatch.chdir(hostile_folder)
    for spec in (".", "*.tar"):
        out = tmp_path / f"out-{len(spec)}"
        summary = infer.run(
            make_cfg(*infer_overrides(out, f"data.shards={spec}"), config_name="infer")
        )
        assert summary["images_scored"] == 2 * len(HOSTILE_NAMES)
        assert summary["shards_done"] == len(HOSTILE_NAMES)
        # a resume lists and reads the same names again: still nothing runs
        again = infer.run(
            make_cfg(*infer_overrides(out, f"data.shards={spec}"), config_name="infer")
        )
        assert again["images_scored"] == summary["images_scored"]
    assert not list(hostile_folder.glob("RAN*"))
