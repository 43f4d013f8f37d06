"""DataComp shards' precomputed embeddings (``data=datacomp``).

Each shard ``{i:08d}.tar`` ships ``{i:08d}.npz`` (float16 arrays ``b32_img``, ``b32_txt``,
``l14_img``, ``l14_txt``: OpenAI's ViT-B/32 and ViT-L/14, L2-normalised) and ``{i:08d}.parquet``
whose rows follow the arrays by position (``uid``, ``url``, ``text``, ``sha256``, ...). The
model named picks the array (``model=ViT-L-14`` reads ``l14_img``); each ``.npz`` is a shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from q16.errors import Q16Error
from q16.models.backbone import base_model_name
from q16.sources.base import EmbeddingSpace, ErrorLog
from q16.sources.collection import EmbeddingCollection, npz_header

ARRAYS = {"ViT-B-32": "b32_img", "ViT-L-14": "l14_img"}
"""Model -> the image-embedding array DataComp computed with OpenAI's weights of it."""


@dataclass
class DataCompShards(EmbeddingCollection):
    """A folder of DataComp shards (``*.npz`` beside ``*.parquet``).

    Args:
        path: the folder.
        model: the model of the run (``${model.name}``): picks the array.
        array: the array to read instead (``l14_img``, ``b32_img``).
        meta_columns: parquet columns carried into the scores (``uid``, ``url``, ``text``, ...).
        key_column: the column naming each image (default ``uid``).
        name: label for reports.
    """

    model: str | None = None
    array: str | None = None
    name: str = "datacomp"
    KEY_CANDIDATES: ClassVar[tuple[str, ...]] = ("uid", "key")

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

    def files(self) -> list[Path]:
        root = Path(self.path).expanduser()
        files = sorted(root.glob("*.npz")) if root.is_dir() else []
        if not files:
            raise Q16Error(f"data.path={self.path!r}: no DataComp .npz shards there")
        return files

    def metadata_file(self, file: Path) -> Path:
        return file.with_suffix(".parquet")

    def header(self, file: Path) -> tuple[str, tuple[int, ...], np.dtype]:
        shape, dtype = npz_header(file, self.array_name)
        return f"{file}:{self.array_name}", shape, dtype

    def load(self, file: Path, errors: ErrorLog) -> np.ndarray:
        # an .npz member cannot be memory-mapped: one shard's array is read whole (DataComp
        # shards hold about 10k rows: 15 MB at 768-d)
        with np.load(file, allow_pickle=False) as arrays:
            array: np.ndarray = arrays[self.array_name]
        return array

    def embedding_space(self) -> EmbeddingSpace:
        """OpenAI's weights of the model whose array is read."""
        model = {v: k for k, v in ARRAYS.items()}.get(self.array_name)
        weights = "openai" if model else None
        return EmbeddingSpace(model, weights, weights, self.width())
