"""DataComp shards' precomputed embeddings (``data=datacomp``).

Each shard ``{i:08d}.tar`` ships ``{i:08d}.npz`` (float16 arrays ``b32_img``, ``b32_txt``,
``l14_img``, ``l14_txt``: OpenAI's ViT-B/32 and ViT-L/14, L2-normalised) and ``{i:08d}.parquet``
whose rows follow the arrays by position (``uid``, ``url``, ``text``, ``sha256``, ...). The
model named picks the array (``model=ViT-L-14`` reads ``l14_img``); each ``.npz`` is a shard.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from q16.errors import Q16Error
from q16.models.backbone import base_model_name
from q16.sources.base import EmbeddingSpace, ErrorLog, FeatureBlock, RawSample, Shard
from q16.sources.collection import (
    RowReader,
    check_matrix,
    collection_key_column,
    npz_header,
    parquet_rows,
    same_width,
)

ARRAYS = {"ViT-B-32": "b32_img", "ViT-L-14": "l14_img"}
"""Model -> the image-embedding array DataComp computed with OpenAI's weights of it."""
KEY_CANDIDATES = ("uid", "key")


@dataclass
class DataCompShards:
    """A folder of DataComp shards (``*.npz`` beside ``*.parquet``).

    Args:
        path: the folder.
        model: the model of the run (``${model.name}``): picks the array.
        array: the array to read instead (``l14_img``, ``b32_img``).
        meta_columns: parquet columns carried into the scores (``uid``, ``url``, ``text``, ...).
        key_column: the column naming each image (default ``uid``).
        name: label for reports.
    """

    path: str
    model: str | None = None
    array: str | None = None
    meta_columns: Sequence[str] = ()
    key_column: str | None = None
    name: str = "datacomp"
    _reader: RowReader | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.meta_columns = tuple(str(c) for c in self.meta_columns)

    @property
    def array_name(self) -> str:
        if self.array:
            return self.array
        base = base_model_name(self.model or "")
        if base not in ARRAYS:
            raise Q16Error(
                f"model={self.model}: DataComp ships embeddings of "
                f"{', '.join(ARRAYS)} only; pass one of them or data.array=<name>"
            )
        return ARRAYS[base]

    def _files(self) -> list[Path]:
        root = Path(self.path).expanduser()
        files = sorted(root.glob("*.npz")) if root.is_dir() else []
        if not files:
            raise Q16Error(f"data.path={self.path!r}: no DataComp .npz shards there")
        return files

    def _widths(self) -> dict[str, int]:
        widths = {}
        for npz in self._files():
            rows = parquet_rows(npz.with_suffix(".parquet"), self.meta_columns)
            shape, dtype = npz_header(npz, self.array_name)
            widths[str(npz)] = check_matrix(f"{npz}:{self.array_name}", shape, dtype, rows)
        return widths

    def embedding_space(self) -> EmbeddingSpace:
        """OpenAI's weights of the model whose array is read."""
        model = {v: k for k, v in ARRAYS.items()}.get(self.array_name)
        weights = "openai" if model else None
        return EmbeddingSpace(model, weights, weights, same_width(self._widths()))

    def list_shards(self) -> list[Shard]:
        same_width(self._widths())
        files = [f.with_suffix(".parquet") for f in self._files()]
        collection_key_column(files, self.key_column, KEY_CANDIDATES)  # one line, up front
        return [Shard(npz.stem, str(npz)) for npz in self._files()]

    def _open(self, shard: Shard) -> tuple[RowReader, np.ndarray, Path]:
        npz = Path(shard.source)
        metadata = npz.with_suffix(".parquet")
        if self._reader is None:
            files = [f.with_suffix(".parquet") for f in self._files()]
            key = collection_key_column(files, self.key_column, KEY_CANDIDATES)
            self._reader = RowReader(tuple(self.meta_columns), key)
        # an .npz member cannot be memory-mapped: one shard's array is read whole (DataComp
        # shards hold about 10k rows: 15 MB at 768-d)
        with np.load(npz, allow_pickle=False) as arrays:
            array = arrays[self.array_name]
        return self._reader, array, metadata

    def iter_samples(self, shard: Shard, errors: ErrorLog) -> Iterator[RawSample]:
        reader, array, metadata = self._open(shard)
        yield from reader.rows(shard.name, shard.source, array, metadata, errors)

    def iter_blocks(self, shard: Shard, errors: ErrorLog) -> Iterator[FeatureBlock]:
        reader, array, metadata = self._open(shard)
        yield from reader.blocks(shard.name, shard.source, array, metadata, errors)
