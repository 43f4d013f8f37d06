"""Removal requests: copies found by sha256, PDQ and keys, with hashes stored by the run or
computed on demand; the review page shows the request beside each candidate."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from privacy_runs import score
from q16.errors import Q16Error
from q16.models.backbone import Backbone
from q16.privacy import photos
from q16.privacy.removal import find_copies
from q16.privacy.removal_page import write_removal
from q16.privacy.requests import key_items, photo_items, sha256_items
from q16.sources.folder import ImageFolder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dataset")
    photos.write_folder(folder)
    return folder


@pytest.fixture(scope="module")
def request_photos(tmp_path_factory: pytest.TempPathFactory, dataset: Path) -> Path:
    folder = tmp_path_factory.mktemp("request")
    astronaut = Image.open(dataset / "astronaut.jpg")
    astronaut.resize((256, 256)).save(folder / "me_small.jpg", quality=50)  # re-encoded, resized
    ImageOps.mirror(Image.open(dataset / "rocket.jpg")).save(folder / "me_flipped.png")
    import skimage.data

    Image.fromarray(skimage.data.coins()).save(folder / "unrelated.png")  # not in the dataset
    return folder


@pytest.mark.parametrize("hashes", [True, False], ids=["stored", "on-demand"])
def test_copies_found_by_hash_and_by_key(
    tmp_path: Path, tiny_backbone: Backbone, dataset: Path, request_photos: Path, hashes: bool
) -> None:
    out = score(
        ImageFolder(str(dataset), class_from_dirs=False),
        tmp_path / "out",
        tiny_backbone,
        hashes=hashes,
    )
    digest = hashlib.sha256((dataset / "coffee.jpg").read_bytes()).hexdigest()
    (tmp_path / "sha.txt").write_text(f"# from the requester\n{digest}\n")
    (tmp_path / "keys.txt").write_text("china.jpg\n")
    items = (
        photo_items(request_photos)
        + sha256_items(tmp_path / "sha.txt")
        + key_items(tmp_path / "keys.txt")
    )
    result = find_copies(out, items)
    found = {(c.request, c.key, c.method) for c in result.candidates}
    assert ("me_small.jpg", "astronaut.jpg", "pdq") in found
    assert ("me_flipped.png", "rocket.jpg", "pdq") in found
    assert (digest, "coffee.jpg", "sha256") in found
    assert ("china.jpg", "china.jpg", "key") in found
    assert not any(c.request == "unrelated.png" for c in result.candidates)
    assert len(found) == 4  # nothing else: no false matches among the other photographs
    assert (result.hashed_on_demand > 0) is not hashes
    files = write_removal(tmp_path / "removal", items, result, random_weights=True)
    page = files.page.read_text()
    assert page.count("<img") == 2 * 2 + 2  # two photo requests beside their copies, 2 keys
    with files.keys_remove.open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["key"] for r in rows} == {"astronaut.jpg", "rocket.jpg", "coffee.jpg", "china.jpg"}


def test_bad_requests_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "sha.txt").write_text("abc\n")
    with pytest.raises(Q16Error, match="not a sha256"):
        sha256_items(tmp_path / "sha.txt")
    with pytest.raises(Q16Error, match="not a folder"):
        photo_items(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(Q16Error, match="no image files"):
        photo_items(tmp_path / "empty")
    (tmp_path / "empty" / "x.jpg").write_bytes(b"<script>")
    with pytest.raises(Q16Error, match=r"x\.jpg cannot be read"):
        photo_items(tmp_path / "empty")


def test_likeness_by_cosine_where_embeddings_were_saved(
    tmp_path: Path, tiny_backbone: Backbone, dataset: Path, request_photos: Path
) -> None:
    import numpy as np
    import pyarrow.parquet as pq

    source = ImageFolder(str(dataset), class_from_dirs=False)
    out = score(source, tmp_path / "out", tiny_backbone, embeddings=True)
    (shard,) = sorted((out / "scores").glob("*.parquet"))
    keys = pq.read_table(shard)["key"].to_pylist()
    saved = np.load(out / "embeddings" / f"{shard.stem}.npy")
    target = saved[keys.index("chelsea.jpg")]

    def embed(images: list) -> np.ndarray:  # stands in for a real CLIP: "looks like chelsea"
        return np.repeat(target[None], len(images), axis=0)

    result = find_copies(out, photo_items(request_photos), embed=embed, cosine_threshold=0.999)
    cosine = [(c.request, c.key) for c in result.candidates if c.method == "cosine"]
    assert ("unrelated.png", "chelsea.jpg") in cosine and "cosine" in result.methods


def test_a_curators_removal_list_is_never_replaced(
    tmp_path: Path, tiny_backbone: Backbone, dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The curator strikes lines in keys_remove.csv; ``q16 apply`` writes one into OUT:
    neither is overwritten by the next request, and --dest follows out_dir's folder rule."""
    from q16 import cli

    out = score(ImageFolder(str(dataset), class_from_dirs=False), tmp_path / "out", tiny_backbone)
    (tmp_path / "keys.txt").write_text("china.jpg\ncoffee.jpg\n")
    request = ["remove", str(out), "--keys", str(tmp_path / "keys.txt")]

    def refused(argv: list[str], why: str) -> None:
        with pytest.raises(SystemExit) as stop:
            cli.main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.count("\n") == 1 and why in err, err

    cli.main(request)
    keys = out / "removal" / "keys_remove.csv"
    cli.main(request)  # q16's own, unchanged: a new request may replace it
    struck = "".join(line for line in keys.read_text().splitlines(True) if "coffee" not in line)
    keys.write_text(struck)
    refused(request, "not the file an earlier q16 remove wrote")
    assert keys.read_text() == struck
    (out / "keys_remove.csv").write_text("shard,key\r\nfolder-0,astronaut.jpg\r\n")  # q16 apply's
    refused([*request, "--dest", str(out)], "keys_remove.csv")
    assert "astronaut" in (out / "keys_remove.csv").read_text()
    mine = tmp_path / "Documents"
    mine.mkdir()
    (mine / "keys_remove.csv").write_text("my list")
    refused([*request, "--dest", str(mine)], "did not make")
    refused([*request, "--dest", str(dataset / "removal")], "inside the input folder")
    assert sorted(p.name for p in mine.iterdir()) == ["keys_remove.csv"]
    assert not (dataset / "removal").exists()
