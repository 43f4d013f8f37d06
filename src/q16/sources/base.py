"""What every inference input owes ``infer.py``, and the types it hands over.

A *source* (tar shards, an image folder, saved embeddings) lists its *shards* and reads one
shard's samples. A shard is the unit of work, partitioning and resume: one worker reads it
whole, and its scores are written in one atomic step when it is done.

Adding a source is one module here and one ``configs/infer/data/<name>.yaml`` whose ``_target_`` is
its class: ``infer.py`` checks the instance against :class:`InferenceSource` and nothing else.
A source of images is a :class:`SampleSource`; a source of precomputed image embeddings is a
:class:`BlockSource` (an :class:`EmbeddingSource`, so the model is checked against the
embeddings' before anything is scored).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from q16.folders import is_remote as is_remote  # where the sources have it


@dataclass(frozen=True)
class Shard:
    """One unit of work.

    Args:
        name: unique, filesystem-safe name; the output is ``scores/<name>.parquet``.
        source: the tar path, the image folder, or the embeddings file it comes from.
        files: for folder input, the image files of this shard (in order).
    """

    name: str
    source: str
    files: tuple[str, ...] = ()


@dataclass
class RawSample:
    """An undecoded image: its bytes plus what is known about it."""

    key: str
    source: str
    file_name: str | None = None
    data: bytes | None = None
    class_id: int = -1
    class_name: str | None = None
    synset: str | None = None
    error: str | None = None
    meta: dict[str, str | None] | None = None
    """Dataset metadata carried into the scores (``data.meta_columns``: url, caption, ...)."""


INT64_MAX = 2**63 - 1
MAX_TEXT_CHARS = 4096
"""Characters kept of one text field (class name, file name, caption, url ...): far above a
real one, so that no field can make a later step's files unreadable (a CSV reader's limit)."""
MAX_KEY_CHARS = 4096
"""A longer key (``PATH_MAX``) names no real file: the sample is recorded, not scored."""


def capped(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with a marker that says how much was dropped."""
    if len(text) > limit:
        return f"{text[:limit]}…[{len(text) - limit:,} more characters cut by q16]"
    return text


def utf8_text(text: str) -> str:
    """``text`` as valid UTF-8: bytes of a file name that are not UTF-8 (decoded by Python as
    lone surrogates) become ``\\xNN``, so the name can be stored and still be told apart."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate from text (a JSON "\\ud800" escape)
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
        return raw.decode("utf-8", "backslashreplace")


def checked(raw: RawSample) -> RawSample:
    """The sample as the writer can store it, whatever a source produced.

    Text fields become valid UTF-8 (:func:`utf8_text`) of at most :data:`MAX_TEXT_CHARS`
    characters (:func:`capped`); a class id must fit the int64 ``class_id`` column (``-1`` =
    unknown).

    Raises:
        ValueError: an empty key, one longer than :data:`MAX_KEY_CHARS`, or a class id out of
            range (the sample is recorded instead).
    """
    if not raw.key:
        raise ValueError("sample without a key")
    if len(raw.key) > MAX_KEY_CHARS:
        raise ValueError(f"key of {len(raw.key):,} characters (more than {MAX_KEY_CHARS:,})")
    if not -1 <= raw.class_id <= INT64_MAX:
        raise ValueError(f"class id {raw.class_id} out of range (0..{INT64_MAX}, -1 unknown)")
    raw.key, raw.source = utf8_text(raw.key), utf8_text(raw.source)
    for name in ("file_name", "class_name", "synset"):
        value = getattr(raw, name)
        if value is not None:
            setattr(raw, name, utf8_text(capped(str(value))))
    if raw.meta is not None:
        raw.meta = {
            k: None if v is None else utf8_text(capped(str(v))) for k, v in raw.meta.items()
        }
    return raw


def text_array(values: pa.Array | pa.ChunkedArray, limit: int | None = None) -> pa.Array:
    """:func:`_text_array`, each value cut to ``limit`` characters (:func:`capped`) if given."""
    text = _text_array(values)
    if limit is None:
        return text
    long = pc.fill_null(pc.greater(pc.utf8_length(text), limit), False)
    if not pc.any(long).as_py():
        return text
    return pa.array(
        [capped(v, limit) if v is not None else None for v in text.to_pylist()], pa.string()
    )


def _text_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as valid UTF-8 strings, vectorised, by the rules of :func:`checked`: strings
    stay (bytes that are not UTF-8 become ``\\xNN``), integers are cast, anything else is
    ``str(value)`` (rare types: one Python call per value); nulls stay null."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):  # pandas categoricals: decoded once
        return _text_array(values.dictionary_decode())
    kind = values.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            values.validate(full=True)
            return values.cast(pa.string())
        except pa.ArrowInvalid:  # a hostile file's bytes that are not UTF-8
            raw = values.cast(pa.binary(), safe=False).to_pylist()
            return pa.array(
                [None if v is None else v.decode("utf-8", "backslashreplace") for v in raw],
                pa.string(),
            )
    if pa.types.is_integer(kind):
        return values.cast(pa.string())
    return pa.array(
        [None if v is None else utf8_text(str(v)) for v in values.to_pylist()], pa.string()
    )


@dataclass
class FeatureBlock:
    """Consecutive rows of a shard of precomputed embeddings, as arrays.

    The reader checks them, vectorised (``q16.inference.blocks``: NaN and zero rows recorded,
    duplicate keys recorded, long rows normalised), so a source only reads.

    Args:
        start: the shard row of the first row (error records say ``row <n>``).
        keys: one string per row (``text_array``); null = unnamed (``<shard>/<row>``).
        features: (n, D) float16 or float32, unchecked, possibly a view of a memory map.
        source: the file the rows come from.
        meta: ``data.meta_columns`` as string arrays.
        fields: saved embeddings' ``source``, ``file_name``, ``class_id`` (int64), ``class_name``,
            ``synset`` columns, where the file has them.
        unit: rows are meant to be unit length (collections: zero rows are errors, others
            normalised); False for q16's saved, unnormalised features.
    """

    start: int
    keys: pa.Array
    features: np.ndarray
    source: str
    meta: dict[str, pa.Array] = field(default_factory=dict)
    fields: dict[str, pa.Array] = field(default_factory=dict)
    unit: bool = True

    def __len__(self) -> int:
        return len(self.keys)


IMAGES_FIELD, INCOMPLETE_FIELD = "images", "incomplete"
"""Optional fields of an error record: inputs it covers, and that its file was cut."""


def unscored_images(record: dict[str, Any]) -> int:
    """Inputs an error record says were not scored (one per keyed record unless it says)."""
    images = record.get(IMAGES_FIELD)
    if isinstance(images, int) and not isinstance(images, bool) and images >= 0:
        return images
    return 1 if record.get("key") is not None else 0


@dataclass
class ErrorLog:
    """A webdataset-style handler that records and continues; it never sleeps or raises.

    ``webdataset.warn_and_continue`` sleeps 0.5 s per error, which turns a bad shard into
    minutes of idle workers. This one keeps the reason for ``errors.jsonl``.
    """

    shard: str
    records: list[dict[str, Any]] = field(default_factory=list)
    io_errors: int = 0
    """OSErrors seen (vanished / unreadable file, NFS): may be transient, unlike a bad tar."""

    def add(
        self, key: str | None, reason: str, *, images: int | None = None, incomplete: bool = False
    ) -> None:
        """``key`` None: not one sample's problem (a cut tar, a member that is no sample).

        ``images``: how many inputs the record says were not scored (default: 1 with a key,
        0 without); ``incomplete``: the shard's file ends before its end (cut or unfinished),
        counted in ``summary.json``'s ``shards_incomplete``.
        """
        key = None if key is None else utf8_text(capped(key, MAX_KEY_CHARS))
        record: dict[str, Any] = {
            "key": key,
            "shard": self.shard,
            "reason": utf8_text(reason[:500]),
        }
        if images is not None:
            record[IMAGES_FIELD] = int(images)
        if incomplete:
            record[INCOMPLETE_FIELD] = True
        self.records.append(record)

    def __call__(self, exn: BaseException) -> bool:
        if isinstance(exn, OSError):
            self.io_errors += 1
            reason = f"{type(exn).__name__}: {exn.strerror or exn}"
            if exn.filename:
                reason += f": {exn.filename}"
        else:
            reason = f"{type(exn).__name__}: {exn.args[0] if exn.args else exn}"
        self.add(None, reason)
        return True


@dataclass(frozen=True)
class EmbeddingSpace:
    """Which image encoder made precomputed embeddings: scoring them with another model's
    prompts gives numbers without meaning, so ``infer.py`` refuses that."""

    model: str | None
    pretrained: str | None
    weights: str | None
    """``BackboneSpec.weights_id`` of the encoder (what is compared, with ``embed_dim``)."""
    embed_dim: int | None

    def matches(self, *, weights: str | None, embed_dim: int) -> bool:
        """``weights`` None: the files do not say (clip-retrieval), only the width is checked."""
        return self.embed_dim == embed_dim and self.weights in (None, weights)


@runtime_checkable
class InferenceSource(Protocol):
    """What ``infer.py`` needs from a ``data=`` config: shards, and a way to read one as a
    :class:`SampleSource` (images) or a :class:`BlockSource` (embeddings).

    ``list_shards`` runs once, in the main process of every rank (so a bad setting fails
    there, as one line); reading must not raise for a bad input (record it in ``errors``) and
    must yield the same rows in the same order every time (resume relies on it).
    """

    name: str
    """Label for the summary and the report (``summary.json`` ``data``)."""

    def list_shards(self) -> list[Shard]:
        """Every shard, in a fixed order (ranks take ``shards[rank::world_size]``)."""
        ...


@runtime_checkable
class SampleSource(InferenceSource, Protocol):
    """A source of images, read a sample at a time (in DataLoader workers)."""

    def iter_samples(self, shard: Shard, errors: ErrorLog) -> Iterator[RawSample]:
        """The samples of one shard (``data``: encoded image bytes), or records in ``errors``
        (or a ``RawSample`` with ``error`` set)."""
        ...


@runtime_checkable
class EmbeddingSource(InferenceSource, Protocol):
    """A source of precomputed image embeddings: the model is checked against them first."""

    def embedding_space(self) -> EmbeddingSpace:
        """The encoder the embeddings come from; raises ``Q16Error`` if it cannot be told."""
        ...


@runtime_checkable
class BlockSource(EmbeddingSource, Protocol):
    """An embedding source read as whole blocks of rows (``FeatureBlock``), which the reader
    checks and scores vectorised (``q16.inference.blocks``: the one home of the row rules)."""

    def iter_blocks(self, shard: Shard, errors: ErrorLog) -> Iterator[FeatureBlock]:
        """The shard's rows in order, as blocks; must not raise for bad rows (the reader
        checks them), may record a shard-level problem in ``errors`` and yield nothing."""
        ...


@runtime_checkable
class DownloadStatsSource(InferenceSource, Protocol):
    """A source that can say what its downloader listed and lost (img2dataset's stats)."""

    def download_stats(self, shards: Sequence[Shard]) -> dict[str, Any] | None:
        """``summary.json``'s ``source_stats`` (None: nothing known); never raises for bad
        files (they are ignored with a warning)."""
        ...
