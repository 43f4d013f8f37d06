"""Reader stage: shard listing, partitioning, decoding (hostile inputs), class names."""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers.hostile import cut_tar, encode, hostile_samples, write_tar
from q16.errors import Q16Error
from q16.inference.reader import (
    Batch,
    DecodeError,
    ImageDecoder,
    ShardStream,
    UInt8Preprocess,
    make_loader,
    partition,
)
from q16.inference.scorer import Scorer
from q16.models.backbone import Backbone
from q16.models.prompts import class_embedding_prompt
from q16.sources.base import ErrorLog, RawSample, Shard
from q16.sources.classnames import load_class_names
from q16.sources.folder import ImageFolder
from q16.sources.wds import (
    WebDatasetShards,
    expand_shards,
    shard_names,
    synthetic_images,
    write_shards,
)


@pytest.fixture
def decoder(tiny_backbone: Backbone) -> ImageDecoder:
    return ImageDecoder(UInt8Preprocess.from_transform(tiny_backbone.preprocess))


def drain(stream: ShardStream) -> list[Batch]:
    return list(stream)


def test_expand_shards_dir_glob_brace_list(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"train-{i:03d}.tar").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    every = [str(tmp_path / f"train-{i:03d}.tar") for i in range(3)]
    assert expand_shards(str(tmp_path)) == every
    assert expand_shards(str(tmp_path / "train-*.tar")) == every
    assert expand_shards(str(tmp_path / "train-{000..002}.tar")) == every
    assert expand_shards([every[2], every[0], every[2]]) == [every[2], every[0]]
    with pytest.raises(Q16Error, match="do not exist"):
        expand_shards(str(tmp_path / "train-{000..004}.tar"))
    with pytest.raises(Q16Error, match="no shard"):
        expand_shards(str(tmp_path / "none-*.tar"))


def test_shard_names_unique() -> None:
    assert shard_names(["/d/a-0.tar", "/d/a-1.tar"]) == ["a-0", "a-1"]
    names = shard_names(["/d/x/000.tar", "/d/y/000.tar"])
    assert len(set(names)) == 2 and all("/" not in n for n in names)


@pytest.mark.parametrize(
    "urls",
    [
        ["/d/a b.tar", "/d/a_b.tar"],  # the same after sanitising
        ["/d/x.tar", "/d/x.tgz"],  # the same after stripping the suffix
        ["/d/X.tar", "/d/x.tar"],  # one file on case-insensitive filesystems
        ["/d/p/a b.tar", "/d/q/a b.tar", "/d/p_a_b.tar"],
    ],
)
def test_shard_names_unique_after_sanitising(urls: list[str]) -> None:
    names = shard_names(urls)
    assert len({n.lower() for n in names}) == len(urls)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", n) for n in names)
    assert shard_names(urls) == names  # stable: resume finds the same names


def test_unopenable_shard_is_not_done_but_empty_and_cut_ones_are(
    tmp_path: Path, decoder: ImageDecoder
) -> None:
    """A vanished / unreadable tar may be transient: retried, not committed as done."""
    folder = tmp_path / "shards"
    folder.mkdir()
    tarfile.open(folder / "a-empty.tar", "w").close()
    source = WebDatasetShards(str(folder))
    shards = [*source.list_shards(), Shard("b-gone", str(folder / "b-gone.tar"))]
    batches = drain(ShardStream(source, shards, decoder, batch_size=4))
    assert [(b.shard, b.done, b.unread) for b in batches] == [
        ("a-empty", True, False),
        ("b-gone", True, True),
    ]
    (reason,) = [e["reason"] for e in batches[1].errors]
    assert reason.startswith("FileNotFoundError") and "b-gone.tar" in reason


def test_unexpected_preprocessing_is_a_user_error() -> None:
    from torchvision import transforms

    with pytest.raises(Q16Error, match="preprocessing"):
        UInt8Preprocess.from_transform(transforms.Compose([transforms.Resize(8)]))


@pytest.mark.parametrize("ranks,workers", [(1, 1), (2, 3), (3, 2), (4, 4)])
def test_partition_disjoint_and_covering(ranks: int, workers: int) -> None:
    shards = list(range(17))
    owned = [
        s
        for r in range(ranks)
        for w in range(workers)
        for s in partition(partition(shards, r, ranks), w, workers)
    ]
    assert sorted(owned) == shards
    assert partition(shards, 1, 3) == partition(shards, 1, 3)
    with pytest.raises(ValueError):
        partition(shards, 3, 3)


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK", "RGBA", "P"])
@pytest.mark.parametrize("size", [(1, 1), (53, 31), (200, 90)])
def test_uint8_path_equals_backbone_preprocess(
    tiny_backbone: Backbone, decoder: ImageDecoder, mode: str, size: tuple[int, int]
) -> None:
    """Decode in workers + normalise on device must equal open_clip's float preprocessing."""
    pixels = torch.randint(0, 256, (size[1], size[0], 3), dtype=torch.uint8).numpy()
    image = Image.fromarray(pixels).convert(mode)
    data = encode(image, "PNG" if mode in ("RGBA", "P") else "TIFF")
    with Image.open(__import__("io").BytesIO(data)) as reopened:
        expected = tiny_backbone.preprocess(reopened.convert("RGB"))
    head = class_embedding_prompt(tiny_backbone, trainable=False)
    scorer = Scorer(tiny_backbone, head, decoder.preprocess.mean, decoder.preprocess.std)
    got = scorer.normalize(decoder(data)[None])[0]
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_decoder_refuses_bombs_below_pil_limit(decoder: ImageDecoder) -> None:
    data = encode(Image.new("L", (300, 300)), "PNG")
    small = ImageDecoder(decoder.preprocess, max_pixels=300 * 299)
    with pytest.raises(DecodeError, match="decompression bomb"):
        small(data)
    assert decoder(data).dtype == torch.uint8


def test_hostile_samples_scored_or_recorded(tmp_path: Path, decoder: ImageDecoder) -> None:
    samples = hostile_samples()
    write_tar(tmp_path / "shards" / "hostile.tar", samples)
    source = WebDatasetShards(str(tmp_path / "shards"))
    batches = drain(ShardStream(source, source.list_shards(), decoder, batch_size=3))
    assert [b.done for b in batches] == [False] * (len(batches) - 1) + [True]
    scored = [k for b in batches for k in b.keys]
    assert scored == [s.key for s in samples if s.scorable]
    errors = batches[-1].errors
    assert [e["key"] for e in errors] == [s.key for s in samples if not s.scorable]
    assert all(e["shard"] == "hostile" and e["reason"] for e in errors)
    bomb = next(e for e in errors if e["key"] == "bad_bomb")
    assert "bomb" in bomb["reason"]
    images = torch.cat([b.images for b in batches if b.images is not None])
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32)
    upper = next(b for b in batches if "ok_upper" in b.keys)
    i = upper.keys.index("ok_upper")
    assert (upper.file_names[i], upper.class_ids[i], upper.class_names[i]) == (
        "ok_upper.JPEG",
        2,
        "two",
    )


def test_truncated_tar_keeps_images_before_the_cut(tmp_path: Path, decoder: ImageDecoder) -> None:
    shard = Path(write_shards(synthetic_images(12), str(tmp_path / "s" / "cut-%03d.tar"), 100)[0])
    _, whole = cut_tar(shard, 0.55)
    source = WebDatasetShards(str(shard))
    batches = drain(ShardStream(source, source.list_shards(), decoder, batch_size=4))
    scored = [k for b in batches for k in b.keys]
    assert 0 < len(scored) < 12
    assert scored == whole
    assert batches[-1].done and batches[-1].errors and not batches[-1].unread
    assert all(e["key"] is None for e in batches[-1].errors)


def test_empty_and_zero_byte_shards_finish_with_an_error(
    tmp_path: Path, decoder: ImageDecoder
) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()
    tarfile.open(folder / "a-empty.tar", "w").close()
    (folder / "b-zero.tar").write_bytes(b"")
    source = WebDatasetShards(str(folder))
    batches = drain(ShardStream(source, source.list_shards(), decoder, batch_size=4))
    assert [(b.shard, b.done, b.unread, len(b)) for b in batches] == [
        ("a-empty", True, False, 0),
        ("b-zero", True, False, 0),
    ]
    assert all(len(b.errors) == 1 for b in batches)


def test_error_log_records_and_continues() -> None:
    log = ErrorLog("s")
    assert log(ValueError("broken header")) is True
    assert log.records == [{"key": None, "shard": "s", "reason": "ValueError: broken header"}]


def test_workers_own_whole_shards(tmp_path: Path, decoder: ImageDecoder) -> None:
    """Two workers, five shards: each shard's batches come whole, and each shard once."""
    write_shards(synthetic_images(25), str(tmp_path / "s" / "w-%03d.tar"), maxcount=5)
    source = WebDatasetShards(str(tmp_path / "s"))
    stream = ShardStream(source, source.list_shards(), decoder, batch_size=2)
    batches = list(make_loader(stream, num_workers=2))
    done = [b.shard for b in batches if b.done]
    assert sorted(done) == [f"w-{i:03d}" for i in range(5)]
    keys = [k for b in batches for k in b.keys]
    assert len(keys) == len(set(keys)) == 25


def test_class_name_files(tmp_path: Path) -> None:
    keras = tmp_path / "index.json"
    keras.write_text(json.dumps({"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"]}))
    names = load_class_names(keras)
    assert names.get(1).name == "goldfish" and names.by_synset["n01440764"][0] == 0
    txt = tmp_path / "classes.txt"
    txt.write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish\n")
    assert load_class_names(txt).get(0).name == "tench, Tinca tinca"
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(["cat", "dog"]))
    assert load_class_names(plain).get(1).name == "dog"
    with pytest.raises(Q16Error):
        load_class_names(tmp_path / "missing.json")


def test_folder_in_imagenet_layout(tmp_path: Path, decoder: ImageDecoder) -> None:
    for synset, n in (("n01443537", 2), ("n01440764", 3)):
        for i in range(n):
            folder = tmp_path / "train" / synset
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (i, 0, 0)).save(folder / f"{synset}_{i}.JPEG")
    (tmp_path / "train" / "README").write_text("not an image")
    mapping = tmp_path / "names.json"
    mapping.write_text(json.dumps({"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"]}))
    source = ImageFolder(str(tmp_path / "train"), shard_size=2, class_names=str(mapping))
    shards = source.list_shards()
    assert [s.name for s in shards] == ["train-000000", "train-000001", "train-000002"]
    batches = drain(ShardStream(source, shards, decoder, batch_size=8))
    rows = [
        (k, f, c, n)
        for b in batches
        for k, f, c, n in zip(b.keys, b.file_names, b.class_ids, b.class_names, strict=True)
    ]
    assert rows[0] == ("n01440764/n01440764_0.JPEG", "n01440764_0.JPEG", 0, "tench")
    assert rows[-1][2:] == (1, "goldfish")
    assert len(rows) == 5


@dataclass
class _FailingSource:
    """Yields ``good`` samples of one image, then raises ``error`` (an I/O error or a bug)."""

    image: bytes
    good: int
    error: Exception
    name: str = "failing"

    def list_shards(self) -> list[Shard]:
        return [Shard("s", "/nowhere/s.tar")]

    def iter_samples(self, shard: Shard, errors: ErrorLog) -> Iterator[RawSample]:
        for i in range(self.good):
            yield RawSample(key=f"k{i}", source=shard.source, data=self.image)
        raise self.error


@pytest.mark.parametrize("good", [0, 3])
def test_io_error_leaves_the_shard_undone_before_or_after_its_first_sample(
    decoder: ImageDecoder, good: int
) -> None:
    """A transient read error must not commit a partial shard that resume then skips."""
    image = next(iter(synthetic_images(1)))["jpg"]
    source = _FailingSource(image, good, OSError(5, "Input/output error"))
    final = drain(ShardStream(source, source.list_shards(), decoder, batch_size=8))[-1]
    assert final.done and final.unread
    assert any("Input/output error" in e["reason"] for e in final.errors)


def test_a_source_bug_midway_keeps_what_was_read(decoder: ImageDecoder) -> None:
    image = next(iter(synthetic_images(1)))["jpg"]
    source = _FailingSource(image, 2, ValueError("bad record"))
    batches = drain(ShardStream(source, source.list_shards(), decoder, batch_size=8))
    assert sum(len(b) for b in batches) == 2 and not batches[-1].unread
    assert any("reading stopped: ValueError" in e["reason"] for e in batches[-1].errors)
