"""Saved image embeddings as an inference input (``data=embeddings``).

``infer.save_embeddings=true`` writes ``embeddings/<shard>.npy`` (float32, rows in the order of
``scores/<shard>.parquet``) and ``embeddings/meta.json``. Pointing ``data.path`` at that run's
``out_dir`` re-scores the dataset with a new prompt without running the image encoder again.
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
        return dict(json.loads(file.read_text()))

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
        self.meta()
        shards = []
        for npy in sorted((self.root / EMBEDDINGS_DIR).glob("*.npy")):
            if scores_path(self.root, npy.stem).is_file():
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
                class_id=int(row.get("class_id", -1)),
                class_name=row.get("class_name"),
                synset=row.get("synset"),
            )
