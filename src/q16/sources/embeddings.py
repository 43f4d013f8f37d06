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
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from q16.errors import Q16Error
from q16.outdir import EMBEDDINGS_DIR, EMBEDDINGS_INPUTS, EMBEDDINGS_META_FILE, scores_path
from q16.sources.base import (
    INCOMPLETE_FIELD,
    MAX_TEXT_CHARS,
    EmbeddingSpace,
    ErrorLog,
    FeatureBlock,
    Shard,
    is_remote,
    text_array,
)
from q16.sources.collection import npy_header, npy_rows

META_COLUMNS = ("key", "source", "file_name", "class_id", "class_name", "synset")
TEXT_FIELDS = ("source", "file_name", "class_name", "synset")
BLOCK_ROWS = 16384
"""Rows per ``FeatureBlock`` (as ``collection.BLOCK_ROWS``)."""


@dataclass
class SavedEmbeddings:
    """Embeddings written by an earlier ``infer.py`` run.

    Args:
        path: that run's ``infer.out_dir``.
        meta_columns: columns of its scores carried again: ``url`` reads ``meta_url`` (what
            that run carried), else a column of that name (``class_name``, ...).
        name: label for reports.
        image_roots: folders (or files) the user running this re-scoring trusts to be shown:
            a row's ``source`` is carried (and its thumbnail shown) only when it lies in one of
            them and in the inputs the saving run recorded; none named, none is carried.
    """

    path: str
    meta_columns: Sequence[str] = ()
    name: str = "embeddings"
    image_roots: Sequence[str] = ()
    _inputs: tuple[str, ...] | None = field(default=None, init=False, repr=False)
    _roots: tuple[str, ...] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.meta_columns = tuple(str(c) for c in self.meta_columns)
        self.image_roots = tuple(str(r) for r in self.image_roots or ())

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
        self._roots = trusted_roots(self.image_roots)
        dim = int(self.meta()["embed_dim"])
        shards = []
        for npy in sorted((self.root / EMBEDDINGS_DIR).glob("*.npy")):
            scores = scores_path(self.root, npy.stem)
            if scores.is_file():
                check_array(npy, dim, _rows(scores))
                self._meta_sources(scores)
                shards.append(Shard(npy.stem, str(npy)))
        if not shards:
            raise Q16Error(f"data.path={self.path!r}: no finished shards with embeddings")
        return shards

    def _meta_sources(self, scores: Path) -> dict[str, str]:
        """``data.meta_columns`` -> the scores column each is read from."""
        try:
            names = pq.read_schema(scores).names
        except Exception as err:  # ArrowInvalid, OSError: a cut or foreign file
            raise Q16Error(f"{scores}: not a readable parquet ({type(err).__name__})") from err
        found = {}
        for column in self.meta_columns:
            name = next((n for n in (f"meta_{column}", column) if n in names), None)
            if name is None:
                raise Q16Error(
                    f"{scores}: no column meta_{column} or {column} for data.meta_columns "
                    f"(it has {', '.join(names)})"
                )
            found[column] = name
        return found

    def _open(self, shard: Shard, errors: ErrorLog) -> tuple[np.ndarray, pa.Table] | None:
        features = npy_rows(Path(shard.source), errors)
        scores = scores_path(Path(shard.source).parent.parent, shard.name)
        schema = pq.read_schema(scores)
        meta = self._meta_sources(scores)
        columns = list(
            dict.fromkeys([c for c in META_COLUMNS if c in schema.names] + list(meta.values()))
        )
        table = pq.read_table(scores, columns=columns)
        if table.num_rows > len(features) and any(r.get(INCOMPLETE_FIELD) for r in errors.records):
            table = table.slice(0, len(features))  # the rows beyond the cut are recorded
        if table.num_rows != len(features):
            errors.add(None, f"{shard.name}: {len(features)} embeddings but {table.num_rows} rows")
            return None
        return features, table

    def iter_blocks(self, shard: Shard, errors: ErrorLog) -> Iterator[FeatureBlock]:
        """Blocks of the memory-mapped array with the scores' columns beside them."""
        opened = self._open(shard, errors)
        if opened is None:
            return
        features, table = opened
        n = table.num_rows
        meta = self._meta_sources(scores_path(Path(shard.source).parent.parent, shard.name))
        fields = {
            c: text_array(table.column(c), MAX_TEXT_CHARS)
            for c in TEXT_FIELDS
            if c in table.column_names
        }
        if "source" in fields:  # an empty source is this file
            empty = pc.or_kleene(pc.is_null(fields["source"]), pc.equal(fields["source"], ""))
            fields["source"] = pc.if_else(empty, shard.source, fields["source"])
            fields["source"] = self._within_inputs(fields["source"], shard, errors)
        if "class_id" in table.column_names:
            ids = table.column("class_id").combine_chunks().cast(pa.int64())
            fields["class_id"] = pc.fill_null(ids, -1)
        keys = text_array(table.column("key"))
        texts = {c: text_array(table.column(name), MAX_TEXT_CHARS) for c, name in meta.items()}
        for start in range(0, n, BLOCK_ROWS):
            size = min(BLOCK_ROWS, n - start)
            yield FeatureBlock(
                start=start,
                keys=keys.slice(start, size),
                features=features[start : start + size],
                source=shard.source,
                meta={c: v.slice(start, size) for c, v in texts.items()},
                fields={c: v.slice(start, size) for c, v in fields.items()},
                unit=False,
            )

    def recorded_inputs(self) -> tuple[str, ...]:
        """The inputs the saving run recorded (meta.json; none from a q16 that did not)."""
        listed = self.meta().get(EMBEDDINGS_INPUTS)
        if not isinstance(listed, list):
            return ()
        return tuple(str(p) for p in listed if isinstance(p, str) and os.path.isabs(p))

    def _within_inputs(self, sources: pa.Array, shard: Shard, errors: ErrorLog) -> pa.Array:
        """Sources limited to what the user trusts: a local file is carried only when it lies,
        symbolic links and ``..`` resolved, in ``image_roots`` (named by the user of this run)
        and in the saving run's recorded inputs (meta.json, from the folder itself: it can
        narrow the set, never widen it). Another row (a folder made elsewhere naming
        ``/home/<you>/private.jpg``, whose meta.json says its input was ``/``) keeps this
        embeddings file as its source, so the report shows no thumbnail of that file; one
        record per shard."""
        if self._inputs is None:
            self._inputs = self.recorded_inputs()
        if self._roots is None:
            self._roots = trusted_roots(self.image_roots)
        recorded = tuple(_real(p) for p in self._inputs if not is_remote(p))
        allowed = {
            str(v): _carried(str(v), self._inputs, recorded, self._roots)
            for v in pc.unique(sources).to_pylist()
        }
        allowed[shard.source] = True
        if all(allowed.values()):
            return sources
        keep = pc.is_in(sources, value_set=pa.array([k for k, ok in allowed.items() if ok]))
        outside = [k for k, ok in allowed.items() if not ok]
        hint = (
            "name the folders the images are in with data.image_roots=[...] to show them"
            if not self._roots
            else "data.image_roots does not hold them"
        )
        errors.add(
            None,
            f"{len(outside)} source(s) lie outside the inputs this run trusts (data.image_roots, "
            f"within those the saving run recorded; e.g. {outside[0][:200]!r}): not carried, "
            f"the report shows no thumbnail of them; {hint}",
        )
        return pc.if_else(keep, sources, shard.source)


def trusted_roots(roots: Sequence[str]) -> tuple[str, ...]:
    """``data.image_roots`` resolved (symbolic links, ``..``, ``~``); each must exist, and
    none may be ``/``, the home folder or a folder above it (every private file is there).

    Raises:
        Q16Error: a root that is missing, remote, or that broad.
    """
    home = _real(str(Path.home()))
    resolved = []
    for root in roots:
        if is_remote(root):
            raise Q16Error(f"data.image_roots: {root[:200]!r} is not a local folder")
        real = _real(os.path.abspath(os.path.expanduser(root)))
        if not os.path.exists(real):
            raise Q16Error(f"data.image_roots: {root[:200]!r} does not exist")
        if real == "/" or real == home or _under(home, real):
            raise Q16Error(
                f"data.image_roots: {root[:200]!r} holds every private file of the home "
                "folder; name the folder(s) the images are in"
            )
        resolved.append(real)
    return tuple(resolved)


def _carried(
    source: str, inputs: tuple[str, ...], recorded: tuple[str, ...], roots: tuple[str, ...]
) -> bool:
    """A remote source literally among the recorded inputs (the report reads no URL), or a
    local absolute one inside a trusted root and a recorded input, after resolving links."""
    if is_remote(source):
        return source in inputs
    if not os.path.isabs(source):
        return False
    real = _real(source)
    return any(_under(real, r) for r in roots) and any(_under(real, r) for r in recorded)


def _real(path: str) -> str:
    return os.path.realpath(path)


def _under(path: str, root: str) -> bool:
    """``path`` is ``root`` or inside it (both resolved)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def _text(value: object) -> str | None:
    return None if value is None else str(value)


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
    with path.open("rb") as file:  # the header only: a cut file is recorded while reading
        shape, dtype = npy_header(file, str(path))
    if dtype.kind != "f":
        raise Q16Error(f"{path}: embeddings must be a float array, not {dtype}")
    if shape != (rows, dim):
        raise Q16Error(
            f"{path}: shape {shape}, expected ({rows}, {dim}): one row of width "
            f"embed_dim={dim} (meta.json) per row of its scores parquet"
        )
