"""A directory tree of images as an inference input (``data=folder data.path=...``).

For users without shards. The sorted file list is cut into fixed-size chunks that play the
role of shards (unit of work, partitioning and resume), named ``<folder>-000000`` and so on;
adding files between runs shifts the chunks, so resume only holds for an unchanged folder.
In the ImageNet train layout (``<root>/<synset>/<file>.JPEG``) the top-level folder is the
class: ids follow sorted folder order (as torchvision's ImageFolder), and a mapping file
(``data.class_names``) turns synsets into readable names.

The walk follows symbolic links but visits each real directory and each real file once (a
link loop such as ``c1/up -> ..`` neither repeats images nor makes the walk explode). Every
entry with an image extension is a sample, keyed by its path relative to the root
(extension included: ``x.jpg`` and ``x.png`` are two images); entries that are not regular
files (a FIFO, a link to ``/dev/zero``) or larger than ``max_bytes`` are recorded, never read.

img2dataset's ``output_format=files`` (``00000/000000000.jpg`` beside ``.json`` and ``.txt``,
``00000.parquet`` and ``00000_stats.json`` beside the folder) is read with
``data.class_from_dirs=false`` (a shard folder is no class): ``data.meta_columns`` then come
from each image's ``<stem>.json`` / ``<stem>.txt`` (``q16.sources.sample_meta``; a sidecar that
cannot be read is recorded with key null, and the image is still scored), and the counts
img2dataset wrote go to ``summary.json``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from q16.errors import Q16Error, check_bool, check_int
from q16.fileio import safe_file_name
from q16.imagefiles import is_image_file
from q16.imageload import DEFAULT_MAX_BYTES, read_file
from q16.sources.base import ErrorLog, RawSample, Shard
from q16.sources.classnames import ClassNames, load_class_names
from q16.sources.img2dataset import download_stats
from q16.sources.sample_meta import json_keys, parse_json_object, sample_meta

SIDECAR_MAX_BYTES = 16 * 2**20
"""A ``.json`` / ``.txt`` beside an image is metadata: a few kB, never this much."""


def list_images(root: Path) -> list[str]:
    """Entries with an image name under ``root``, as sorted POSIX paths relative to it.

    Symbolic links are followed, but each real directory and each real file is listed once
    (the first path in sorted order): loops end, and a linked tree is not scored twice.
    Entries that are not regular files are listed (their sample records what they are).
    """
    found: list[str] = []
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    pending = [("", root)]
    while pending:
        rel, folder = pending.pop()
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in seen_dirs:
                continue
            seen_dirs.add((info.st_dev, info.st_ino))
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue  # unreadable or vanished folder: nothing of it can be listed
        subdirs = []
        for entry in entries:
            path = f"{rel}{entry.name}"
            if _is_dir(entry):
                subdirs.append((f"{path}/", Path(entry.path)))
            elif is_image_file(entry.name):
                identity = _identity(entry, info.st_dev)
                if identity is None or identity not in seen_files:
                    found.append(path)
                    if identity is not None:
                        seen_files.add(identity)
        pending.extend(reversed(subdirs))  # depth first, in sorted order
    return sorted(found)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _identity(entry: os.DirEntry[str], device: int) -> tuple[int, int] | None:
    """(device, inode) of the real file; free for plain entries, one stat for a link."""
    try:
        if entry.is_symlink():
            info = entry.stat(follow_symlinks=True)
            return info.st_dev, info.st_ino
        return device, entry.inode()
    except OSError:
        return None  # a dangling link: listed, and recorded when read


@dataclass
class ImageFolder:
    """Every image under ``path``.

    Args:
        path: the root folder.
        name: label for reports.
        shard_size: images per chunk (the unit of resume and of work per DataLoader worker).
        class_names: optional JSON/TXT class list (synset -> readable name).
        class_from_dirs: take the top-level folder as the class (ImageNet layout).
        max_bytes: larger files are not read (recorded), judged from ``fstat``.
        exif_transpose: rotate by EXIF orientation before scoring (off: the reference recipe).
        meta_columns: keys of the ``<stem>.json`` beside each image (and ``txt``: its
            ``<stem>.txt``) carried into the scores as ``meta_<name>``.
    """

    path: str
    name: str = "folder"
    shard_size: int = 1000
    class_names: str | None = None
    class_from_dirs: bool = True
    max_bytes: int = DEFAULT_MAX_BYTES
    exif_transpose: bool = False
    meta_columns: Any = ()
    _classes: dict[str, tuple[int, str | None, str]] | None = field(
        default=None, init=False, repr=False
    )

    def __post_init__(self) -> None:
        self.shard_size = int(check_int("data.shard_size", self.shard_size, 1) or 0)
        self.max_bytes = int(check_int("data.max_bytes", self.max_bytes, 1) or 0)
        self.class_from_dirs = check_bool("data.class_from_dirs", self.class_from_dirs)
        self.exif_transpose = check_bool("data.exif_transpose", self.exif_transpose)
        self.meta_columns = json_keys("data.meta_columns", self.meta_columns)

    @property
    def root(self) -> Path:
        return Path(self.path).expanduser().resolve()

    def list_shards(self) -> list[Shard]:
        if not self.root.is_dir():
            raise Q16Error(f"data.path={self.path!r} is not a directory")
        files = list_images(self.root)
        if not files:
            raise Q16Error(f"data.path={self.path!r}: no image files found")
        # a bad data.class_names fails here, in the main process, not in a DataLoader worker
        if self.class_from_dirs:
            self.class_table()
        else:
            load_class_names(self.class_names)
        stem = safe_file_name(self.root.name, fallback="folder")
        size = self.shard_size
        return [
            Shard(f"{stem}-{i // size:06d}", str(self.root), tuple(files[i : i + size]))
            for i in range(0, len(files), size)
        ]

    def class_table(self) -> dict[str, tuple[int, str | None, str]]:
        """Top-level folder -> (class id, synset, readable name)."""
        if self._classes is None:
            mapping: ClassNames = load_class_names(self.class_names)
            by_synset = mapping.by_synset
            dirs = sorted(p.name for p in self.root.iterdir() if p.is_dir())
            table: dict[str, tuple[int, str | None, str]] = {}
            for index, folder in enumerate(dirs):
                if folder in by_synset:
                    cid, info = by_synset[folder]
                    table[folder] = (cid, folder, info.name)
                else:
                    by_index = mapping.get(index) if not by_synset else None
                    table[folder] = (index, folder, by_index.name if by_index else folder)
            self._classes = table
        return self._classes

    def iter_samples(self, shard: Shard, errors: ErrorLog) -> Iterator[RawSample]:
        table = self.class_table() if self.class_from_dirs else {}
        root = Path(shard.source)
        for rel in shard.files:
            path = root / rel
            raw = RawSample(key=rel, source=str(path), file_name=path.name)
            top = rel.split("/", 1)[0] if "/" in rel else None
            if top is not None and top in table:
                raw.class_id, raw.synset, raw.class_name = table[top]
            try:
                raw.data = read_file(path, self.max_bytes)
            except OSError as err:
                raw.error = f"unreadable file: {err.strerror or err}"
            except ValueError as err:  # not a regular file, or too large
                raw.error = str(err)
            if self.meta_columns and raw.error is None:
                raw.meta = sidecar_meta(path, self.meta_columns, rel, errors)
            yield raw

    def download_stats(self, shards: Sequence[Shard]) -> dict[str, Any] | None:
        """img2dataset's counts for its shard folders (``<root>/00000/``), if it wrote any."""
        try:
            folders = sorted(p for p in self.root.iterdir() if p.is_dir())
        except OSError:
            return None
        return download_stats([str(p) for p in folders]) if folders else None


def sidecar_meta(
    image: Path, columns: Sequence[str], key: str, errors: ErrorLog
) -> dict[str, str | None]:
    """``columns`` from the ``.json`` / ``.txt`` beside ``image`` (missing: null)."""
    found: dict[str, bytes | None] = {}
    for suffix in ("json", "txt"):
        side = image.with_suffix(f".{suffix}")
        try:
            found[suffix] = read_file(side, SIDECAR_MAX_BYTES)
        except FileNotFoundError:
            found[suffix] = None
        except (OSError, ValueError) as err:  # unreadable, not a regular file, too large
            errors.add(None, f"{key}: {side.name} not read ({err}); scored without it")
            found[suffix] = None
    try:
        record, problem = parse_json_object(found["json"] or b"")
    except RecursionError:  # hostile nesting: a reason for this image, never the shard's end
        record, problem = {}, "nested too deeply to parse"
    if problem:
        errors.add(
            None, f"{key}: {image.with_suffix('.json').name} is {problem}; scored without it"
        )
    return sample_meta(columns, record, found["txt"])
