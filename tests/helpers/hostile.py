"""Inputs that break naive pipelines, for robustness tests (and for checking a deployment).

Each ``hostile_samples`` entry says whether a correct reader must score it or record an error;
``hostile_members`` adds tar members that are not plain files of a sample (links, unsplittable
names, a sparse member declaring 2 GiB); ``write_hostile_folder`` makes a folder input with
FIFOs, device links, a sparse 10 GB file and symlink loops. Each returns what a correct run
must score and record, so a test (or a deployment check) compares the run with it.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class HostileSample:
    key: str
    members: dict[str, bytes]
    scorable: bool


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A ~100-byte PNG whose header claims ``width x height`` pixels (IHDR patched, CRC fixed)."""
    data = bytearray(encode(Image.new("L", (8, 8)), "PNG"))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def hostile_samples(seed: int = 0) -> list[HostileSample]:
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 52, 3), dtype=np.uint8))
    good = encode(rgb, "JPEG")
    return [
        HostileSample("ok_rgb", {"jpg": good, "cls": b"1"}, True),
        HostileSample("ok_gray", {"jpg": encode(rgb.convert("L"), "JPEG")}, True),
        HostileSample("ok_cmyk", {"jpg": encode(rgb.convert("CMYK"), "JPEG")}, True),
        HostileSample("ok_rgba", {"png": encode(rgb.convert("RGBA"), "PNG")}, True),
        HostileSample("ok_palette", {"png": encode(rgb.convert("P"), "PNG")}, True),
        HostileSample("ok_1x1", {"png": encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG")}, True),
        HostileSample("ok_webp", {"webp": encode(rgb, "WEBP")}, True),
        HostileSample("ok_upper", {"JPEG": good, "cls": b"2", "txt": b"two"}, True),
        HostileSample("bad_truncated", {"jpg": good[: len(good) // 2]}, False),
        HostileSample("bad_corrupt", {"jpg": good[:20] + bytes(rng.integers(0, 255, 400))}, False),
        HostileSample("bad_zero_bytes", {"jpg": b""}, False),
        HostileSample("bad_not_image", {"jpg": b"<html>this is not an image</html>"}, False),
        HostileSample("bad_no_image", {"cls": b"3", "json": b"{}"}, False),
        HostileSample("bad_bomb", {"png": png_bomb()}, False),
        HostileSample("ok_16bit", {"png": png_16bit()}, True),
        HostileSample("bad_eps", {"jpg": EPS}, False),
        HostileSample("bad_huge_cls", {"jpg": good, "cls": b"99999999999999999999999"}, False),
        HostileSample("bad_huge_label", {"jpg": good, "json": b'{"label": %d}' % 2**80}, False),
        HostileSample("bad_deep_json", {"jpg": good, "json": deep_json()}, False),
        HostileSample("ok_no_label", {"jpg": good, "cls": b"-1", "json": b"[1, 2]"}, True),
    ]


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto 8 8 lineto stroke\n%%EOF\n"
"""PostScript named ``.jpg``: PIL would hand it to Ghostscript if EPS were an allowed format."""


def png_16bit(value: int = 30_000, size: tuple[int, int] = (24, 20)) -> bytes:
    """A 16-bit grayscale PNG of one value (30000 of 65535: mid gray, not white)."""
    return encode(Image.fromarray(np.full(size[::-1], value, dtype=np.uint16)), "PNG")


def deep_json(depth: int = 200_000) -> bytes:
    """Valid JSON nested ``depth`` levels deep: ``json.loads`` raises RecursionError."""
    return b"[" * depth + b"]" * depth


@dataclass(frozen=True)
class HostileMember:
    """A raw tar member (header blocks + payload) that is not a plain file of a sample;
    ``key`` is what its error record names (None: a problem of no sample)."""

    header: bytes
    payload: bytes
    key: str | None


def _member(info: tarfile.TarInfo, payload: bytes, key: str | None) -> HostileMember:
    info.size = len(payload) if info.isreg() else 0
    return HostileMember(info.tobuf(format=tarfile.GNU_FORMAT), payload, key)


def sparse_member(name: str, declared: int, stored: bytes = b"\xff" * 512) -> HostileMember:
    """A GNU sparse member (old format) declaring ``declared`` bytes while storing
    ``stored``: in a 12 kB tar, a reader that reads members whole allocates ``declared``."""
    info = tarfile.TarInfo(name)
    info.size, info.type = len(stored), tarfile.GNUTYPE_SPARSE
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    header[386:398] = b"%011o\0" % 0  # the one stored region: offset 0 ...
    header[398:410] = b"%011o\0" % len(stored)  # ... of len(stored) bytes
    header[482] = 0  # no extended sparse headers
    header[483:495] = b"%011o\0" % declared  # the file's real size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header[:512])
    return HostileMember(bytes(header), stored, name.split(".", 1)[0])


def hostile_members() -> list[HostileMember]:
    """Links, names webdataset cannot split into ``<key>.<extension>``, a sparse member."""
    hard = tarfile.TarInfo("bad_hardlink.jpg")
    hard.type, hard.linkname = tarfile.LNKTYPE, "ok_rgb.jpg"
    soft = tarfile.TarInfo("bad_symlink.png")
    soft.type, soft.linkname = tarfile.SYMTYPE, "/dev/zero"
    fifo = tarfile.TarInfo("bad_fifo.jpg")
    fifo.type = tarfile.FIFOTYPE
    return [
        _member(hard, b"", "bad_hardlink"),
        _member(soft, b"", "bad_symlink"),
        _member(fifo, b"", "bad_fifo"),
        _member(tarfile.TarInfo(".jpg"), b"\xff\xd8", None),
        _member(tarfile.TarInfo("sub/.hidden.jpg"), b"\xff\xd8", None),
        _member(tarfile.TarInfo("README"), b"no extension", None),
        sparse_member("bad_sparse.jpg", declared=2 * 1024**3),
    ]


def write_tar(
    path: Path,
    samples: Iterator[HostileSample] | list[HostileSample],
    members: tuple[HostileMember, ...] | list[HostileMember] = (),
) -> Path:
    """Members in sample order, as webdataset expects (``<key>.<ext>``), then ``members``
    written byte for byte (tarfile would refuse or normalise some of them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for sample in samples:
            for ext, payload in sample.members.items():
                info = tarfile.TarInfo(f"{sample.key}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
        assert tar.fileobj is not None
        for member in members:
            padded = member.payload + b"\0" * (-len(member.payload) % 512)
            tar.fileobj.write(member.header + padded)
            tar.offset += len(member.header) + len(padded)
    return path


def cut_tar(path: Path, fraction: float = 0.6) -> tuple[int, list[str]]:
    """Truncate a tar in place; returns the cut offset and the keys whose image survives whole."""
    size = path.stat().st_size
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    cut = int(size * fraction)
    whole = [
        m.name.rsplit(".", 1)[0]
        for m in members
        if m.name.rsplit(".", 1)[1].lower() in ("jpg", "jpeg", "png", "webp")
        and m.offset_data + m.size <= cut
    ]
    with open(path, "r+b") as handle:
        handle.truncate(cut)
    return cut, whole


@dataclass
class HostileFolder:
    """What a correct run over ``write_hostile_folder``'s tree must do (keys: relative paths)."""

    scorable: set[str] = field(default_factory=set)
    recorded: set[str] = field(default_factory=set)


def write_hostile_folder(root: Path, seed: int = 0) -> HostileFolder:
    """A folder input that hangs, floods or fools naive readers.

    A FIFO named ``pipe.jpg`` (blocks a plain ``open``), a link to ``/dev/zero`` and a sparse
    10 GB ``.jpg`` (endless / huge reads), EPS named ``.jpg``, ``x.jpg`` beside ``x.png``
    (one key if the extension is dropped), a 16-bit PNG, symlink loops (``c1/up -> ..``,
    two of them: each image listed 41 times, the walk exponential) and a linked copy of a
    folder (one real file, two paths).
    """
    rng = np.random.default_rng(seed)
    expected = HostileFolder()

    def image(rel: str, data: bytes, scorable: bool = True) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        (expected.scorable if scorable else expected.recorded).add(rel)

    rgb = Image.fromarray(rng.integers(0, 255, (30, 34, 3), dtype=np.uint8))
    image("c1/a.jpg", encode(rgb, "JPEG"))
    image("c1/x.jpg", encode(rgb.rotate(90), "JPEG"))
    image("c1/x.png", encode(rgb, "PNG"))
    image("c2/gray16.png", png_16bit())
    image("c2/eps.jpg", EPS, scorable=False)
    image("c2/meta.json", json.dumps({"not": "an image"}).encode(), scorable=False)
    expected.recorded.discard("c2/meta.json")  # not an image name: not listed at all
    os.mkfifo(root / "c2" / "pipe.jpg")
    os.symlink("/dev/zero", root / "c2" / "zero.jpg")
    os.symlink(root / "c2" / "missing.png", root / "c2" / "dangling.png")
    with open(root / "c2" / "sparse.jpg", "wb") as handle:
        handle.truncate(10 * 1000**3)
    expected.recorded |= {"c2/pipe.jpg", "c2/zero.jpg", "c2/dangling.png", "c2/sparse.jpg"}
    os.symlink("..", root / "c1" / "up")
    os.symlink("..", root / "c2" / "up")
    os.symlink(root / "c1", root / "c3")  # the same real folder under a second name
    return expected
