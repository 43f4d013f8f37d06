"""img2dataset 1.47 output (``output_format=webdataset`` or ``files``), generated for tests.

Per shard ``NNNNN``: ``NNNNN.tar`` (or the folder ``NNNNN/``) holding ``<key>.jpg`` +
``<key>.txt`` (caption) + ``<key>.json`` for each URL that downloaded; beside it
``NNNNN.parquet`` with one row per listed URL (``url``, ``caption``, ``key``, ``status``,
``error_message``, sizes, ``exif``, ``sha256``, extra columns kept) and ``NNNNN_stats.json``
with the shard's counts. Images are real JPEGs.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image


@dataclass
class Url:
    """One listed URL: downloaded unless ``error`` (img2dataset's error message) is set."""

    caption: str
    error: str | None = None
    status: str = "failed_to_download"
    extra: dict[str, Any] = field(default_factory=dict)
    """Additional columns img2dataset was asked to keep (``save_additional_columns``)."""


def jpeg(seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


class _Sink:
    """Where a shard's members go: a tar, or a folder (``output_format=files``)."""

    def __init__(self, root: Path, shard: str, files: bool) -> None:
        self.folder = root / shard if files else None
        self.tar = None if files else tarfile.open(root / f"{shard}.tar", "w")  # noqa: SIM115
        if self.folder is not None:
            self.folder.mkdir()

    def add(self, name: str, data: bytes) -> None:
        if self.folder is not None:
            (self.folder / name).write_bytes(data)
            return
        assert self.tar is not None
        info = tarfile.TarInfo(name)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


def write_img2dataset(
    root: Path, shards: list[list[Url]], output_format: str = "webdataset"
) -> dict[str, dict[str, Any]]:
    """Write the shards under ``root``; returns the ``.json`` record of each downloaded key."""
    root.mkdir(parents=True, exist_ok=True)
    downloaded: dict[str, dict[str, Any]] = {}
    for shard_id, urls in enumerate(shards):
        rows, statuses = [], Counter()
        sink = _Sink(root, f"{shard_id:05d}", files=output_format == "files")
        try:
            for i, url in enumerate(urls):
                key = f"{shard_id:05d}{i:04d}"
                record: dict[str, Any] = {
                    "url": f"https://example.com/{key}.jpg",
                    "caption": url.caption,
                    **url.extra,
                    "key": key,
                    "status": "success" if url.error is None else url.status,
                    "error_message": url.error,
                    "width": None,
                    "height": None,
                    "original_width": None,
                    "original_height": None,
                    "exif": None,
                    "sha256": None,
                }
                statuses[url.error or "success"] += 1
                if url.error is None:
                    image = jpeg(shard_id * 1000 + i)
                    record.update(
                        width=64,
                        height=48,
                        original_width=640,
                        original_height=480,
                        exif=json.dumps({"Image Make": "Canon"}),
                        sha256=hashlib.sha256(image).hexdigest(),
                    )
                    sink.add(f"{key}.jpg", image)
                    sink.add(f"{key}.txt", url.caption.encode())
                    sink.add(f"{key}.json", json.dumps(record, indent=4).encode())
                    downloaded[key] = record
                rows.append(record)
        finally:
            sink.close()
        pd.DataFrame(rows).to_parquet(root / f"{shard_id:05d}.parquet")
        by_status = Counter(r["status"] for r in rows)
        stats = {
            "count": len(urls),
            "successes": by_status["success"],
            "failed_to_download": by_status["failed_to_download"],
            "failed_to_resize": by_status["failed_to_resize"],
            "duration": 1.5,
            "start_time": 1700000000.0,
            "end_time": 1700000001.5,
            "status_dict": dict(statuses),
        }
        (root / f"{shard_id:05d}_stats.json").write_text(json.dumps(stats, indent=4))
    return downloaded
