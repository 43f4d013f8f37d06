"""Saved image embeddings as an inference input (``data=embeddings``).

``infer.save_embeddings=true`` writes ``embeddings/<shard>.npy`` (float32, rows in the order of
``scores/<shard>.parquet``) and ``embeddings/meta.json``. Pointing ``data.path`` at that run's
``out_dir`` re-scores the dataset with a new prompt without running the image encoder again.

Everything about the files is checked when the shards are listed, before a model is loaded
or an out_dir touched (meta.json readable, every array a 2-D float array of the stated width
with one row per scored image); a row with NaN or infinite values is recorded by the reader
as that image's error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from q16.errors import Q16Error
from q16.outdir import EMBEDDINGS_DIR, EMBEDDINGS_META_FILE, scores_path
from q16.sources.base import EmbeddingSpace, ErrorLog, RawSample, Shard

META_COLUMNS = ("key", "source", "file_name", "class_id", "class_name", "synset")


@dataclass
class SavedEmbeddings:
    """Embeddings written by an earlier ``infer.py`` run.

    Args:
        path: that run's ``infer.out_dir``.
        name: label for reports.
    """

    path: str
    name: str = "embeddings"

    @property
    def root(self) -> Path:
        return Path(self.path).expanduser()

    def meta(self) -> dict[str, Any]:
        """``embeddings/meta.json`` as written by the run that saved them."""
        file = self.root / EMBEDDINGS_DIR / EMBEDDINGS_META_FILE
        if not file.is_file():
            raise Q16Error(
                f"data.path={self.path!r}: no {EMBEDDINGS_DIR}/{EMBEDDINGS_META_FILE}; point it "
                "at the out_dir of a run made with infer.save_embeddings=true"
            )
        try:
            meta = json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, OSError) as err:
            raise Q16Error(f"{file}: not readable JSON ({type(err).__name__}: {err})") from err
        dim = meta.get("embed_dim") if isinstance(meta, dict) else None
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise Q16Error(f"{file}: needs a JSON object with a positive integer embed_dim")
        return dict(meta)

    def embedding_space(self) -> EmbeddingSpace:
        """Model, weights and dimension the embeddings came from (checked by infer.run)."""
        meta = self.meta()
        return EmbeddingSpace(
            model=meta.get("model"),
            pretrained=meta.get("pretrained"),
            weights=meta.get("weights"),
            embed_dim=meta.get("embed_dim"),
        )

    def list_shards(self) -> list[Shard]:
        dim = int(self.meta()["embed_dim"])
        shards = []
        for npy in sorted((self.root / EMBEDDINGS_DIR).glob("*.npy")):
            scores = scores_path(self.root, npy.stem)
            if scores.is_file():
                check_array(npy, dim, _rows(scores))
                shards.append(Shard(npy.stem, str(npy)))
        if not shards:
            raise Q16Error(f"data.path={self.path!r}: no finished shards with embeddings")
        return shards

    def iter_samples(self, shard: Shard, errors: ErrorLog) -> Iterator[RawSample]:
        features = np.load(shard.source, mmap_mode="r")
        scores = scores_path(Path(shard.source).parent.parent, shard.name)
        schema = pq.read_schema(scores)
        columns = [c for c in META_COLUMNS if c in schema.names]
        table = pq.read_table(scores, columns=columns).to_pylist()
        if len(table) != len(features):
            errors.add(None, f"{shard.name}: {len(features)} embeddings but {len(table)} rows")
            return
        for row, vector in zip(table, features, strict=True):
            yield RawSample(
                key=row["key"],
                source=row.get("source") or shard.source,
                file_name=row.get("file_name"),
                features=np.array(vector, dtype=np.float32),
                class_id=int(row.get("class_id") if row.get("class_id") is not None else -1),
                class_name=row.get("class_name"),
                synset=row.get("synset"),
            )


def _rows(scores: Path) -> int:
    try:
        return int(pq.read_metadata(scores).num_rows)
    except Exception as err:  # ArrowInvalid, OSError: a cut or foreign file
        raise Q16Error(f"{scores}: not a readable parquet ({type(err).__name__})") from err


def check_array(path: Path, dim: int, rows: int) -> None:
    """A saved embedding file is a (rows, dim) float array (only its header is read).

    Raises:
        Q16Error: not a .npy array, object or text dtype, other shape.
    """
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as err:  # ValueError (pickled, not .npy), OSError, EOFError
        raise Q16Error(f"{path}: not a readable .npy array ({type(err).__name__})") from err
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        dtype = getattr(array, "dtype", type(array).__name__)
        raise Q16Error(f"{path}: embeddings must be a float array, not {dtype}")
    if array.shape != (rows, dim):
        raise Q16Error(
            f"{path}: shape {array.shape}, expected ({rows}, {dim}): one row of width "
            f"embed_dim={dim} (meta.json) per row of its scores parquet"
        )
