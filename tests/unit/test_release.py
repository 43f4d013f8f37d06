"""The face-blurred release: same keys and members, faces blurred from the run's boxes,
everything else byte for byte, resumable per shard; the boxes parquet img2dataset and
DataComp read."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from privacy_runs import add_member, encode, score
from q16.errors import Q16Error
from q16.models.backbone import Backbone
from q16.privacy import photos
from q16.privacy.boxes import run_boxes, write_boxes_parquet
from q16.privacy.release import write_release
from q16.sources.folder import ImageFolder
from q16.sources.wds import WebDatasetShards

pytestmark = pytest.mark.slow


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def scored_tars(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: Backbone) -> Path:
    root = tmp_path_factory.mktemp("release")
    (root / "in").mkdir()
    astronaut, coffee, pair = photos.shipped()[0], photos.shipped()[2], photos.tiled(2)
    with tarfile.open(root / "in" / "part-000.tar", "w") as tar:
        add_member(tar, "a1.png", encode(astronaut.pixels, "PNG"))
        add_member(tar, "a1.json", b'{"url": "http://x/a1.png", "uid": "0f"}')
        add_member(tar, "a1.txt", b"an astronaut")
        add_member(tar, "c1.jpg", encode(coffee.pixels, "JPEG", quality=90))
        add_member(tar, "c1.txt", b"coffee")
        add_member(tar, "bad.jpg", b"not an image")
        add_member(tar, "bad.txt", b"broken")
    with tarfile.open(root / "in" / "part-001.tar", "w") as tar:
        add_member(tar, "p2.jpg", encode(pair.pixels, "JPEG", quality=92))
        add_member(tar, "p2.cls", b"3")
    source = WebDatasetShards(str(root / "in"), meta_columns=["url", "uid"])
    return score(source, root / "out", tiny_backbone)


def test_tar_release_blurs_faces_and_copies_the_rest(scored_tars: Path, tmp_path: Path) -> None:
    inputs = {p: p.read_bytes() for p in (scored_tars.parent / "in").iterdir()}
    counts = write_release(scored_tars, tmp_path / "rel")
    assert all(p.read_bytes() == data for p, data in inputs.items())  # originals untouched
    assert (counts.shards_written, counts.images_blurred, counts.boxes_blurred) == (2, 2, 3)
    original = _members(scored_tars.parent / "in" / "part-000.tar")
    released = _members(tmp_path / "rel" / "part-000.tar")
    assert list(released) == ["a1.png", "a1.json", "a1.txt", "c1.jpg", "c1.txt"]
    for name in ("a1.json", "a1.txt", "c1.jpg", "c1.txt"):
        assert released[name] == original[name]  # byte for byte
    before = np.asarray(Image.open(io.BytesIO(original["a1.png"])).convert("RGB")).astype(int)
    after = np.asarray(Image.open(io.BytesIO(released["a1.png"])).convert("RGB")).astype(int)
    box = run_boxes(scored_tars).read(sorted((scored_tars / "scores").glob("*000.parquet"))[0])
    x0, y0, x1, y1 = (np.asarray(box.to_pydict()["face_bboxes"][0][0]) * 512).astype(int)
    assert np.abs(after[y0:y1, x0:x1] - before[y0:y1, x0:x1]).mean() > 5
    assert (after[400:, :] == before[400:, :]).all()  # far below the face: PNG, exact
    assert counts.samples_omitted == 1  # bad.jpg was never scored: not released
    assert "bad" in (tmp_path / "rel" / "omitted.csv").read_text()
    pair = _members(tmp_path / "rel" / "part-001.tar")
    assert list(pair) == ["p2.jpg", "p2.cls"] and pair["p2.cls"] == b"3"
    assert Image.open(io.BytesIO(pair["p2.jpg"])).format == "JPEG"


def test_release_resumes_per_shard_and_refuses_other_folders(
    scored_tars: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "rel"
    write_release(scored_tars, dest)
    first = (dest / "part-001.tar").read_bytes()
    (dest / "part-000.tar").unlink()
    again = write_release(scored_tars, dest)
    assert (again.shards_written, again.shards_already_done) == (1, 1)
    assert (again.images_blurred, again.samples_omitted) == (2, 1)  # totals over both calls
    assert (dest / "part-001.tar").read_bytes() == first
    with pytest.raises(Q16Error, match="another release"):
        write_release(scored_tars, dest, keep_unscored=True)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("mine")
    with pytest.raises(Q16Error, match="not empty"):
        write_release(scored_tars, tmp_path / "busy")
    kept = write_release(scored_tars, tmp_path / "all", keep_unscored=True)
    assert "bad.jpg" in _members(tmp_path / "all" / "part-000.tar") and kept.samples_omitted == 1


def test_boxes_parquet_as_img2dataset_and_datacomp_read_it(
    scored_tars: Path, tmp_path: Path
) -> None:
    path = tmp_path / "boxes.parquet"
    assert write_boxes_parquet(run_boxes(scored_tars), path) == 3
    table = pq.read_table(path)
    assert table.schema.field("face_bboxes").type == pa.list_(pa.list_(pa.float64()))
    rows = {r["key"]: r for r in table.to_pylist()}
    assert rows["a1"]["url"] == "http://x/a1.png" and rows["a1"]["uid"] == "0f"
    assert len(rows["a1"]["face_bboxes"]) == 1 and rows["c1"]["face_bboxes"] == []
    # DataComp's resharder: pq.read_table(f, columns=["uid", "face_bboxes"]), rows .as_py()
    datacomp = pq.read_table(path, columns=["uid", "face_bboxes"])
    assert all(len(b) == 4 for b in datacomp["face_bboxes"][0].as_py())


def test_a_run_without_a_face_head_is_refused(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"heads": [{"name": "q16"}]}))
    with pytest.raises(Q16Error, match="no detector head 'faces'"):
        write_release(tmp_path, tmp_path.parent / "x")


def test_folder_release_packs_images_with_their_sidecars(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(photos.tiled(2).pixels).save(folder / "two.people.jpg", quality=92)
    (folder / "two.people.json").write_text('{"caption": "two"}')
    Image.fromarray(photos.shipped()[3].pixels).save(folder / "cat.png")
    out = score(ImageFolder(str(folder), class_from_dirs=False), tmp_path / "out", tiny_backbone)
    counts = write_release(out, tmp_path / "rel")
    (tar,) = sorted((tmp_path / "rel").glob("*.tar"))
    members = _members(tar)
    assert sorted(members) == ["cat.png", "two_people.jpg", "two_people.json"]
    assert members["cat.png"] == (folder / "cat.png").read_bytes()
    assert members["two_people.json"] == (folder / "two.people.json").read_bytes()
    assert counts.images_blurred == 1 and counts.boxes_blurred == 2


@pytest.fixture(scope="module")
def scored_variants(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: Backbone) -> Path:
    """Samples with several image members: names that differ only in case, and three."""
    root = tmp_path_factory.mktemp("variants")
    (root / "in").mkdir()
    face = photos.shipped()[0].pixels
    with tarfile.open(root / "in" / "v.tar", "w") as tar:
        add_member(tar, "k1.jpg", encode(face, "JPEG", quality=91))
        add_member(tar, "k1.JPG", encode(face, "JPEG", quality=90))  # scored: JPG < jpg
        add_member(tar, "k1.txt", b"one")
        add_member(tar, "k2.png", encode(face, "PNG"))
        add_member(tar, "k2.Jpeg", encode(face, "JPEG", quality=80))
        add_member(tar, "k2.jpg", encode(face, "JPEG", quality=85))  # scored: jpg first
    return score(WebDatasetShards(str(root / "in")), root / "out", tiny_backbone)


def test_only_the_scored_member_is_released_and_blurred(
    scored_variants: Path, tmp_path: Path
) -> None:
    """The member the faces were found in is the one blurred; every other image member was
    never looked at: left out and listed, or (keep_unscored) shipped as it was."""
    original = _members(scored_variants.parent / "in" / "v.tar")
    counts = write_release(scored_variants, tmp_path / "rel")
    released = _members(tmp_path / "rel" / "v.tar")
    assert list(released) == ["k1.JPG", "k1.txt", "k2.jpg"]
    assert released["k1.txt"] == b"one"
    assert released["k1.JPG"] != original["k1.JPG"] and released["k2.jpg"] != original["k2.jpg"]
    assert (counts.images_blurred, counts.members_omitted) == (2, 3)
    omitted = (tmp_path / "rel" / "omitted.csv").read_text()
    assert all(
        f"{name}: second image member" in omitted for name in ("k1.jpg", "k2.png", "k2.Jpeg")
    )
    kept = write_release(scored_variants, tmp_path / "all", keep_unscored=True)
    everything = _members(tmp_path / "all" / "v.tar")
    assert list(everything) == list(original) and kept.members_omitted == 3
    assert everything["k1.jpg"] == original["k1.jpg"]  # shipped unblurred, as documented


def test_a_tar_cut_mid_member_is_released_up_to_the_cut(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    (tmp_path / "in").mkdir()
    whole = io.BytesIO()
    with tarfile.open(fileobj=whole, mode="w") as tar:
        add_member(tar, "c1.jpg", encode(photos.shipped()[2].pixels, "JPEG", quality=90))
        add_member(tar, "a1.png", encode(photos.shipped()[0].pixels, "PNG"))
    data = whole.getvalue()
    (tmp_path / "in" / "cut.tar").write_bytes(data[: len(data) // 2 + 700])  # inside a1.png
    out = score(WebDatasetShards(str(tmp_path / "in")), tmp_path / "out", tiny_backbone)
    write_release(out, tmp_path / "rel")  # no tarfile.ReadError
    assert list(_members(tmp_path / "rel" / "cut.tar")) == ["c1.jpg"]
    assert "ReadError" in (tmp_path / "rel" / "omitted.csv").read_text()


def test_a_changed_or_missing_input_is_refused(scored_tars: Path, tmp_path: Path) -> None:
    """Boxes found on the scored images are never applied to other images at the same path."""
    path = scored_tars.parent / "in" / "part-001.tar"
    data, stat = path.read_bytes(), path.stat()
    try:
        with tarfile.open(path, "w") as tar:
            add_member(tar, "p2.jpg", encode(photos.shipped()[0].pixels, "JPEG", quality=70))
        with pytest.raises(Q16Error, match="changed since it was scored"):
            write_release(scored_tars, tmp_path / "rel")
        path.rename(path.with_suffix(".moved"))
        with pytest.raises(Q16Error, match="not found"):
            write_release(scored_tars, tmp_path / "rel")
    finally:
        path.with_suffix(".moved").unlink(missing_ok=True)
        path.write_bytes(data)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    write_release(scored_tars, tmp_path / "rel")  # the scored file again: released
    state = tmp_path / "rel" / "_q16" / "part-001.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "stamp": "other"}))
    assert write_release(scored_tars, tmp_path / "rel").shards_written == 1  # re-scored: redone


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\udcff"])
def test_a_corrupt_release_json_is_one_line(scored_tars: Path, tmp_path: Path, text: str) -> None:
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "release.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(Q16Error, match="release"):
        write_release(scored_tars, tmp_path / "rel")
