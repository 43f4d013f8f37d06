"""A directory tree of images as an inference input (``data=folder data.path=...``).

For users without shards. The sorted file list is cut into fixed-size chunks that play the
role of shards (unit of work, partitioning and resume), named ``<folder>-000000`` and so on;
adding files between runs shifts the chunks, so resume only holds for an unchanged folder.
In the ImageNet train layout (``<root>/<synset>/<file>.JPEG``) the top-level folder is the
class: ids follow sorted folder order (as torchvision's ImageFolder), and a mapping file
(``data.class_names``) turns synsets into readable names.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from q16.errors import Q16Error
from q16.fileio import safe_file_name
from q16.imagefiles import is_image_file
from q16.sources.base import ErrorLog, RawSample, Shard
from q16.sources.classnames import ClassNames, load_class_names


def list_images(root: Path) -> list[str]:
    """Image files under ``root`` as sorted POSIX paths relative to it."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root)
        found.extend((rel / f).as_posix() for f in sorted(filenames) if is_image_file(f))
    return sorted(found)


@dataclass
class ImageFolder:
    """Every image under ``path``.

    Args:
        path: the root folder.
        name: label for reports.
        shard_size: images per chunk (the unit of resume and of work per DataLoader worker).
        class_names: optional JSON/TXT class list (synset -> readable name).
        class_from_dirs: take the top-level folder as the class (ImageNet layout).
    """

    path: str
    name: str = "folder"
    shard_size: int = 1000
    class_names: str | None = None
    class_from_dirs: bool = True
    _classes: dict[str, tuple[int, str | None, str]] | None = field(
        default=None, init=False, repr=False
    )

    @property
    def root(self) -> Path:
        return Path(self.path).expanduser().resolve()

    def list_shards(self) -> list[Shard]:
        if not self.root.is_dir():
            raise Q16Error(f"data.path={self.path!r} is not a directory")
        if self.shard_size < 1:
            raise Q16Error("data.shard_size must be at least 1")
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
            raw = RawSample(key=rel.rsplit(".", 1)[0], source=str(path), file_name=path.name)
            top = rel.split("/", 1)[0] if "/" in rel else None
            if top is not None and top in table:
                raw.class_id, raw.synset, raw.class_name = table[top]
            try:
                raw.data = path.read_bytes()
            except OSError as err:
                raw.error = f"unreadable file: {err}"
            yield raw
