"""One atomic write for every file a later run trusts; one rule for names and image files."""

from __future__ import annotations

from pathlib import Path

import pytest

from q16.fileio import atomic_path, atomic_write_bytes, atomic_write_text, safe_file_name
from q16.imagefiles import IMAGE_EXTENSIONS, is_image_file


def test_atomic_path_replaces_the_file_only_when_the_block_succeeds(tmp_path: Path) -> None:
    target = tmp_path / "scores.parquet"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".")
        tmp.write_text("new")
        assert target.read_text() == "old"  # nobody sees the new file before it is whole
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]


def test_atomic_path_keeps_the_old_file_and_no_temp_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "fingerprint.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="crash"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["fingerprint.json"]


def test_atomic_path_through_an_open_handle(tmp_path: Path) -> None:
    """np.save would append ``.npy`` to a temporary name; writers go through a handle."""
    np = pytest.importorskip("numpy")
    target = tmp_path / "s.npy"
    with atomic_path(target) as tmp, tmp.open("wb") as handle:
        np.save(handle, np.arange(3, dtype=np.float32))
    assert np.load(target).tolist() == [0.0, 1.0, 2.0]
    assert [p.name for p in tmp_path.iterdir()] == ["s.npy"]


def test_atomic_write_bytes_and_text(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "b.txt", "äb\n")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_bytes() == "äb\n".encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt"]


@pytest.mark.parametrize(
    "text,expected",
    [("train-000001", "train-000001"), ("a b/c", "a_b_c"), ("ünï", "n"), ("///", "fallback")],
)
def test_safe_file_name(text: str, expected: str) -> None:
    assert safe_file_name(text, fallback="fallback") == expected


def test_image_files_by_extension() -> None:
    assert is_image_file("a/b.JPEG") and is_image_file("x.tiff") and is_image_file("y.webp")
    assert not is_image_file("notes.txt") and not is_image_file(".hidden.jpg")
    assert not is_image_file("no_extension")
    assert IMAGE_EXTENSIONS[:2] == ("jpg", "jpeg")  # a tar sample's image member, in this order
