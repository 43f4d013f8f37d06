"""One bad input never stops a shard, and nothing is read beyond its limits (issue 10).

The hostile corpus (``tests/helpers/hostile.py``) says what a correct reader must score and record;
these tests read it through the real sources and reader stage.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from helpers.hostile import (
    EPS,
    hostile_members,
    hostile_samples,
    png_16bit,
    write_hostile_folder,
    write_tar,
)
from q16.imageload import ImageLoadError, load_rgb, load_rgb_file, read_file
from q16.inference.reader import Batch, ImageDecoder, ShardStream, UInt8Preprocess
from q16.models.backbone import Backbone
from q16.sources.base import ErrorLog, RawSample, Shard, checked
from q16.sources.folder import ImageFolder, list_images
from q16.sources.wds import WebDatasetShards


@pytest.fixture
def decoder(tiny_backbone: Backbone) -> ImageDecoder:
    return ImageDecoder(UInt8Preprocess.from_transform(tiny_backbone.preprocess))


def read_all(source, decoder: ImageDecoder) -> tuple[list[str], list[dict]]:
    """Keys scored and error records of every shard of ``source``, through the reader."""
    stream = ShardStream(source, source.list_shards(), decoder, batch_size=4)
    batches: list[Batch] = list(stream)
    keys = [k for b in batches for k in b.keys]
    return keys, [e for b in batches for e in b.errors]


def test_every_hostile_tar_member_is_scored_once_or_recorded(
    tmp_path: Path, decoder: ImageDecoder
) -> None:
    samples, members = hostile_samples(), hostile_members()
    write_tar(tmp_path / "hostile.tar", samples, members)
    keys, errors = read_all(WebDatasetShards(str(tmp_path)), decoder)
    assert sorted(keys) == sorted(s.key for s in samples if s.scorable)
    recorded = [e["key"] for e in errors if e["key"] is not None]
    bad = [s.key for s in samples if not s.scorable] + [m.key for m in members if m.key]
    assert sorted(recorded) == sorted(bad)  # each bad sample once
    assert sum(e["key"] is None for e in errors) == sum(m.key is None for m in members)
    reasons = {e["key"]: e["reason"] for e in errors}
    assert "RecursionError" in reasons["bad_deep_json"]
    assert "out of range" in reasons["bad_huge_cls"] and "out of range" in reasons["bad_huge_label"]
    assert (
        "hard link" in reasons["bad_hardlink"] and "exceeds data.max_bytes" in reasons["bad_sparse"]
    )
    assert "format q16 decodes" in reasons["bad_eps"]


def test_tar_member_over_max_bytes_is_not_read(tmp_path: Path, decoder: ImageDecoder) -> None:
    samples = [s for s in hostile_samples() if s.key in ("ok_rgb", "ok_1x1")]
    write_tar(tmp_path / "s.tar", samples)
    size = len(samples[0].members["jpg"])
    keys, errors = read_all(WebDatasetShards(str(tmp_path), max_bytes=size - 1), decoder)
    assert keys == ["ok_1x1"]
    assert [e["key"] for e in errors] == ["ok_rgb"] and "max_bytes" in errors[0]["reason"]


def test_sparse_member_is_judged_by_its_header_not_read(tmp_path: Path) -> None:
    """A 12 kB tar declaring 2 GiB: nothing near that size is ever allocated."""
    import resource

    write_tar(tmp_path / "sparse.tar", [], hostile_members()[-1:])
    assert (tmp_path / "sparse.tar").stat().st_size < 20_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    errors = ErrorLog("sparse")
    samples = list(
        WebDatasetShards(str(tmp_path)).iter_samples(
            Shard("s", str(tmp_path / "sparse.tar")), errors
        )
    )
    assert [s.key for s in samples] == ["bad_sparse"] and samples[0].data is None
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


def test_folder_walk_visits_each_real_file_once_and_never_blocks(
    tmp_path: Path, decoder: ImageDecoder
) -> None:
    root = tmp_path / "imgs"
    expected = write_hostile_folder(root)
    (root / "c1" / "sub").mkdir()
    os.symlink(root / "c1" / "sub", root / "c1" / "sub" / "loop")  # a second loop, inside
    listed = list_images(root)
    assert sorted(listed) == sorted(expected.scorable | expected.recorded)
    keys, errors = read_all(ImageFolder(str(root), shard_size=3), decoder)
    assert sorted(keys) == sorted(expected.scorable)  # x.jpg and x.png: two keys
    assert sorted(e["key"] for e in errors) == sorted(expected.recorded)
    reasons = {e["key"]: e["reason"] for e in errors}
    assert "FIFO" in reasons["c2/pipe.jpg"] and "character device" in reasons["c2/zero.jpg"]
    assert "exceeds data.max_bytes" in reasons["c2/sparse.jpg"]


def test_read_file_refuses_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    with open(big, "wb") as handle:
        handle.truncate(10_000)
    with pytest.raises(ImageLoadError, match=r"exceeds data\.max_bytes=9999"):
        read_file(big, max_bytes=9999)
    assert len(read_file(big, max_bytes=10_000)) == 10_000
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(ImageLoadError, match="FIFO"):
        read_file(tmp_path / "pipe.jpg")


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    """30000 of 65535 is mid gray (117), not white (255), for inference and training alike."""
    image = load_rgb(png_16bit(30_000))
    assert image.mode == "RGB" and np.asarray(image).max() == round(30_000 * 255 / 65535)
    (tmp_path / "g.png").write_bytes(png_16bit(65535))
    assert np.asarray(load_rgb_file(tmp_path / "g.png")).min() == 255
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32)).save(buffer, format="TIFF")
    assert np.asarray(load_rgb(buffer.getvalue())).max() == 128


def test_only_known_formats_are_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("Ghostscript was run on untrusted bytes")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", never)
    with pytest.raises(ImageLoadError, match="not an image of a format q16 decodes"):
        load_rgb(EPS)


def test_exif_orientation_only_when_asked() -> None:
    image = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert load_rgb(buffer.getvalue()).size == (40, 20)  # the reference recipe
    assert load_rgb(buffer.getvalue(), exif_transpose=True).size == (20, 40)


@pytest.mark.parametrize("key", ["001", "NaN", "null", "1e3", "TRUE", " x ", "a/b.jpg"])
def test_keys_stay_the_strings_they_are(key: str) -> None:
    assert checked(RawSample(key=key, source="s")).key == key


def test_undecodable_file_name_bytes_are_escaped_not_fatal() -> None:
    name = b"caf\xe9.jpg".decode("utf-8", "surrogateescape")  # a Latin-1 file name
    raw = checked(RawSample(key=name, source=f"/d/{name}", file_name=name))
    assert raw.key == "caf\\xe9.jpg" and raw.key.encode("utf-8")
    with pytest.raises(ValueError, match="out of range"):
        checked(RawSample(key="k", source="s", class_id=2**80))


def test_repeated_key_in_a_shard_is_scored_once(tmp_path: Path, decoder: ImageDecoder) -> None:
    good = [s for s in hostile_samples() if s.key == "ok_rgb"]
    write_tar(
        tmp_path / "s.tar", [*good, *[s for s in hostile_samples() if s.key == "ok_1x1"], *good]
    )
    keys, errors = read_all(WebDatasetShards(str(tmp_path)), decoder)
    assert sorted(keys) == ["ok_1x1", "ok_rgb"]
    assert [e["key"] for e in errors] == ["ok_rgb"] and "seen before" in errors[0]["reason"]
