"""A folder of image embeddings as clip-retrieval's inference writes it (``data=clip_retrieval``).

``img_emb/img_emb_{i}.npy`` (float16, L2-normalised; LAION-5B's release numbers them
``img_emb_0000.npy``) with ``metadata/metadata_{i}.parquet`` whose rows follow the array's by
position (``image_path``, ``caption``, and the flattened ``.json`` fields when metadata was
enabled: ``url``, ``key``, ...). Each ``.npy`` is a shard: the unit of partitioning and resume.
The files do not say which model made them: ``model=`` fixes the space, and its width is
checked against the arrays'.

The arrays are memory-mapped and read in blocks, so memory does not grow with the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from q16.errors import Q16Error
from q16.sources.base import ErrorLog
from q16.sources.collection import EmbeddingCollection, npy_header, npy_rows

EMB_DIR, META_DIR = "img_emb", "metadata"


@dataclass
class ClipRetrievalEmbeddings(EmbeddingCollection):
    """clip-retrieval's output folder.

    Args:
        path: the folder holding ``img_emb/`` and ``metadata/``.
        meta_columns: metadata columns carried into the scores (``url``, ``caption``, ...).
        key_column: the column naming each image (default: ``key``, else ``image_path``).
        name: label for reports.
    """

    name: str = "clip_retrieval"
    KEY_CANDIDATES: ClassVar[tuple[str, ...]] = ("key", "image_path")

    @property
    def root(self) -> Path:
        return Path(self.path).expanduser()

    def files(self) -> list[Path]:
        if not (self.root / EMB_DIR).is_dir():
            raise Q16Error(f"data.path={self.path!r}: no {EMB_DIR}/ folder (clip-retrieval layout)")
        files = sorted((self.root / EMB_DIR).glob("img_emb_*.npy"))
        if not files:
            raise Q16Error(f"data.path={self.path!r}: no {EMB_DIR}/img_emb_*.npy files")
        return files

    def metadata_file(self, file: Path) -> Path:
        return self.root / META_DIR / f"metadata_{file.stem.removeprefix('img_emb_')}.parquet"

    def header(self, file: Path) -> tuple[str, tuple[int, ...], np.dtype]:
        with file.open("rb") as handle:
            shape, dtype = npy_header(handle, str(file))
        return str(file), shape, dtype

    def load(self, file: Path, errors: ErrorLog) -> np.ndarray:
        return npy_rows(file, errors)
