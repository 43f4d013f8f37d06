"""The thumbnail shown is the image scored: the same key rule and member choice as the tar
reader (``q16.imagefiles``), and nothing inference would not read (links, over the byte cap)."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from q16.report.thumbnails import collect_thumbnails, read_file, read_from_tar
from q16.review.run import InferenceRun
from q16.sources.base import ErrorLog, Shard
from q16.sources.wds import WebDatasetShards


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _tar(path: Path, members: list[tuple[str, bytes]], links: tuple[str, ...] = ()) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return path


def _scored(path: Path, max_bytes: int = 1 << 20) -> dict[str, bytes | None]:
    """What the webdataset source scores for each key of the tar (None: recorded, not scored)."""
    source = WebDatasetShards(shards=[str(path)], max_bytes=max_bytes)
    errors = ErrorLog("s")
    samples = source.iter_samples(Shard("s", str(path)), errors)
    scored: dict[str, bytes | None] = {}
    for raw in samples:
        scored.setdefault(raw.key, None if raw.error else raw.data)
    return scored


RED, GREEN, BLUE = _png((255, 0, 0)), _png((0, 255, 0)), _png((0, 0, 255))


@pytest.mark.parametrize(
    ("members", "key"),
    [
        # two image members: the scored one is the first of IMAGE_EXTENSIONS, not tar order
        ([("k1.png", RED), ("k1.jpg", GREEN)], "k1"),
        ([("k1.webp", RED), ("k1.PNG", GREEN), ("k1.json", b"{}")], "k1"),
        # names that differ only in case are two members, whatever the tar order
        ([("k1.jpg", RED), ("k1.JPG", GREEN)], "k1"),
        ([("k1.JPG", GREEN), ("k1.jpg", RED)], "k1"),
        ([("k1.Jpg", BLUE), ("k1.jpg", RED), ("k1.JPG", GREEN), ("k1.png", RED)], "k1"),
        # the key is the path up to the first dot of the base name
        ([("dir.v2/k1.png", BLUE), ("dir.v2/k1.cls", b"3")], "dir.v2/k1"),
        # the same key again later is another sample (recorded as a duplicate): not shown
        ([("k1.png", RED), ("k2.png", GREEN), ("k1.jpg", BLUE)], "k1"),
    ],
)
def test_thumbnail_member_is_the_scored_member(tmp_path: Path, members, key: str) -> None:
    tar = _tar(tmp_path / "s.tar", members)
    assert read_from_tar(tar, [key])[key] == _scored(tar)[key]
    if any(name == "k1.JPG" for name, _ in members):
        assert _scored(tar)[key] == GREEN  # k1.JPG: the first in code-point order


def test_a_name_the_reader_does_not_score_shows_nothing(tmp_path: Path) -> None:
    """``k1.b.png``: extension ``b.png`` is no image member for the reader, so none here."""
    tar = _tar(tmp_path / "s.tar", [("k1.b.png", RED), ("k2.png", GREEN)])
    assert _scored(tar)["k1"] is None
    assert read_from_tar(tar, ["k1", "k2"]) == {"k2": GREEN}


@pytest.mark.parametrize("cap", [len(RED) - 1, 10])
def test_members_over_the_byte_cap_are_not_read(tmp_path: Path, cap: int) -> None:
    tar = _tar(tmp_path / "s.tar", [("k1.png", RED)], links=("k2.png",))
    assert _scored(tar, max_bytes=cap)["k1"] is None  # inference did not read it either
    assert read_from_tar(tar, ["k1", "k2"], max_bytes=cap) == {}
    assert read_from_tar(tar, ["k1", "k2"], max_bytes=len(RED)) == {"k1": RED}  # no link


def test_files_over_the_cap_and_fifos_are_not_read(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(RED)
    assert read_file(tmp_path / "a.png", max_bytes=len(RED)) == RED
    assert read_file(tmp_path / "a.png", max_bytes=len(RED) - 1) is None
    os.mkfifo(tmp_path / "f.png")  # would block a plain open().read()
    assert read_file(tmp_path / "f.png") is None


def test_the_run_cap_reaches_the_page(tmp_path: Path) -> None:
    """``collect_thumbnails`` gets the run's ``data.max_bytes`` from fingerprint.json."""
    (tmp_path / "fingerprint.json").write_text(json.dumps({"max_bytes": len(RED) - 1}))
    run = InferenceRun(tmp_path, {}, None, [], [])  # type: ignore[arg-type]
    tar = _tar(tmp_path / "s.tar", [("k1.png", RED)])
    rows = [{"key": "k1", "source": str(tar), "file_name": None}]
    assert collect_thumbnails(rows, tmp_path, 32, run.max_bytes) == [None]
    (tmp_path / "fingerprint.json").write_text(json.dumps({"max_bytes": None}))
    assert collect_thumbnails(rows, tmp_path, 32, run.max_bytes)[0] is not None
