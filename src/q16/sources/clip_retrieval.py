"""A folder of image embeddings as clip-retrieval's inference writes it (``data=clip_retrieval``).

``img_emb/img_emb_{i}.npy`` (float16, L2-normalised; LAION-5B's release numbers them
``img_emb_0000.npy``) with ``metadata/metadata_{i}.parquet`` whose rows follow the array's by
position (``image_path``, ``caption``, and the flattened ``.json`` fields when metadata was
enabled: ``url``, ``key``, ...). Each ``.npy`` is a shard: the unit of partitioning and resume.
The files do not say which model made them: ``model=`` fixes the space, and its width is
checked against the arrays'.

The arrays are memory-mapped and read in chunks, so memory does not grow with the files.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from q16.errors import Q16Error
from q16.sources.base import EmbeddingSpace, ErrorLog, FeatureBlock, RawSample, Shard
from q16.sources.collection import (
    RowReader,
    check_matrix,
    collection_key_column,
    npy_header,
    parquet_rows,
    same_width,
)

EMB_DIR, META_DIR = "img_emb", "metadata"
KEY_CANDIDATES = ("key", "image_path")


@dataclass
class ClipRetrievalEmbeddings:
    """clip-retrieval's output folder.

    Args:
        path: the folder holding ``img_emb/`` and ``metadata/``.
        meta_columns: metadata columns carried into the scores (``url``, ``caption``, ...).
        key_column: the column naming each image (default: ``key``, else ``image_path``).
        name: label for reports.
    """

    path: str
    meta_columns: Sequence[str] = ()
    key_column: str | None = None
    name: str = "clip_retrieval"
    _reader: RowReader | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.meta_columns = tuple(str(c) for c in self.meta_columns)

    @property
    def root(self) -> Path:
        return Path(self.path).expanduser()

    def _files(self) -> list[Path]:
        if not (self.root / EMB_DIR).is_dir():
            raise Q16Error(f"data.path={self.path!r}: no {EMB_DIR}/ folder (clip-retrieval layout)")
        files = sorted((self.root / EMB_DIR).glob("img_emb_*.npy"))
        if not files:
            raise Q16Error(f"data.path={self.path!r}: no {EMB_DIR}/img_emb_*.npy files")
        return files

    def metadata_file(self, npy: Path) -> Path:
        return self.root / META_DIR / f"metadata_{npy.stem.removeprefix('img_emb_')}.parquet"

    def _widths(self) -> dict[str, int]:
        widths = {}
        for npy in self._files():
            rows = parquet_rows(self.metadata_file(npy), self.meta_columns)
            with npy.open("rb") as file:
                shape, dtype = npy_header(file, str(npy))
            widths[str(npy)] = check_matrix(str(npy), shape, dtype, rows)
        return widths

    def embedding_space(self) -> EmbeddingSpace:
        """Only the width is known (clip-retrieval records no model)."""
        return EmbeddingSpace(None, None, None, same_width(self._widths()))

    def list_shards(self) -> list[Shard]:
        same_width(self._widths())
        files = [self.metadata_file(f) for f in self._files()]
        collection_key_column(files, self.key_column, KEY_CANDIDATES)  # one line, up front
        return [Shard(npy.stem, str(npy)) for npy in self._files()]

    def _open(self, shard: Shard) -> tuple[RowReader, np.ndarray, Path]:
        npy = Path(shard.source)
        metadata = self.metadata_file(npy)
        if self._reader is None:
            files = [self.metadata_file(f) for f in self._files()]
            key = collection_key_column(files, self.key_column, KEY_CANDIDATES)
            self._reader = RowReader(tuple(self.meta_columns), key)
        return self._reader, np.load(npy, mmap_mode="r", allow_pickle=False), metadata

    def iter_samples(self, shard: Shard, errors: ErrorLog) -> Iterator[RawSample]:
        reader, array, metadata = self._open(shard)
        yield from reader.rows(shard.name, shard.source, array, metadata, errors)

    def iter_blocks(self, shard: Shard, errors: ErrorLog) -> Iterator[FeatureBlock]:
        """Blocks of the memory-mapped array: only the rows of blocks in flight are read."""
        reader, array, metadata = self._open(shard)
        yield from reader.blocks(shard.name, shard.source, array, metadata, errors)
