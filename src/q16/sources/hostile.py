"""Inputs that break naive pipelines, for robustness tests (and for checking a deployment).

Each ``hostile_samples`` entry says whether a correct reader must score it or record an error.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
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
    ]


def write_tar(path: Path, samples: Iterator[HostileSample] | list[HostileSample]) -> Path:
    """Members in sample order, as webdataset expects (``<key>.<ext>``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for sample in samples:
            for ext, payload in sample.members.items():
                info = tarfile.TarInfo(f"{sample.key}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
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
