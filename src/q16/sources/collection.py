"""What the embedding collections (clip-retrieval folders, DataComp shards) share.

Both put rows of image embeddings (``.npy``, or arrays in an ``.npz``) beside a parquet whose
rows follow them by position. Everything that can be told from headers is checked when the
shards are listed, as one line each (a missing metadata file, row counts that disagree, a dtype
that is not float, another width); what needs the values is checked by the reader, a block at a
time (``q16.inference.blocks``, the one home of the row rules): a NaN or infinite row becomes
that row's error record, a row that is not unit length is normalised (CLIP's prompts compare
by cosine; one warning per reader).

:class:`EmbeddingCollection` is the skeleton both sources share; each says where its files
are and how one array is read.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from q16.errors import Q16Error
from q16.sources.base import (
    INCOMPLETE_FIELD,
    MAX_TEXT_CHARS,
    EmbeddingSpace,
    ErrorLog,
    FeatureBlock,
    Shard,
    text_array,
)

log = logging.getLogger(__name__)

UNIT_TOLERANCE = 1e-2
"""A row whose L2 norm is further than this from 1 is normalised (float16 rounding stays within)."""
TOO_LARGE = "embedding too large to normalise (its length overflows float32)"
BLOCK_ROWS = 16384
"""Rows per ``FeatureBlock``: large enough that per-block costs vanish (25 MB of float16 at
768-d), small enough that a few blocks in flight stay far below the size of a file."""


def npy_header(file: IO[bytes], where: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a ``.npy`` header, without reading the array."""
    try:
        version = np.lib.format.read_magic(file)
        read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
            version, np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(file)
    except Exception as err:  # ValueError: not a .npy; EOFError, OSError
        raise Q16Error(f"{where}: not a readable .npy array ({type(err).__name__})") from err
    return tuple(shape), np.dtype(dtype)


def npy_rows(path: Path, errors: ErrorLog) -> np.ndarray:
    """A ``.npy``'s rows as a read-only memory map. A file shorter than its header says (a cut
    copy) gives the whole rows it holds, with one record that counts the others as not scored
    and the shard as incomplete: a cut is never read as complete, nor as a single error."""
    with path.open("rb") as file:
        version = np.lib.format.read_magic(file)
        read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
            version, np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read(file)
        offset = file.tell()
    rows = int(shape[0]) if shape else 0
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    whole = rows if row_bytes == 0 else max(0, (path.stat().st_size - offset) // row_bytes)
    if whole >= rows:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    if fortran:  # column-major: no whole row survives a cut
        whole = 0
    errors.add(
        None,
        f"{path.name} is cut: its header says {rows} rows, the file holds {whole} whole "
        f"ones; the other {rows - whole} are not scored (copy the file again and re-run)",
        images=rows - whole,
        incomplete=True,
    )
    if whole == 0:
        return np.empty((0, *shape[1:]), dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(whole, *shape[1:]))


def npz_header(path: Path, array: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one array of an ``.npz`` (only its header is read)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n.removesuffix(".npy") for n in archive.namelist()]
            if array not in names:
                raise Q16Error(
                    f"{path}: no array {array!r} (it has {', '.join(sorted(names)) or 'none'}); "
                    "pass data.array=<name>"
                )
            with archive.open(f"{array}.npy") as member:
                return npy_header(member, f"{path}:{array}")
    except (zipfile.BadZipFile, OSError) as err:
        raise Q16Error(f"{path}: not a readable .npz ({type(err).__name__})") from err


def check_matrix(where: str, shape: tuple[int, ...], dtype: np.dtype, rows: int) -> int:
    """A (rows, D) float array; returns D."""
    if dtype.kind != "f":
        raise Q16Error(f"{where}: embeddings must be float16 or float32, not {dtype}")
    if len(shape) != 2 or shape[1] < 1:
        raise Q16Error(f"{where}: embeddings must be a 2-D (rows, width) array, not {shape}")
    if shape[0] != rows:
        raise Q16Error(
            f"{where}: {shape[0]} embeddings but {rows} metadata rows; rows are matched by "
            "position, so the counts must agree"
        )
    return int(shape[1])


def parquet_rows(path: Path, wanted: Sequence[str]) -> int:
    """Rows of a metadata parquet that has every ``wanted`` column."""
    if not path.is_file():
        raise Q16Error(f"{path}: metadata file missing (its rows name the embeddings' images)")
    try:
        meta = pq.read_metadata(path)
        names = pq.read_schema(path).names
    except Exception as err:  # ArrowInvalid, OSError: a cut or foreign file
        raise Q16Error(f"{path}: not a readable parquet ({type(err).__name__})") from err
    missing = [c for c in wanted if c not in names]
    if missing:
        raise Q16Error(
            f"{path}: no column {missing[0]!r} for data.meta_columns (it has {', '.join(names)})"
        )
    return int(meta.num_rows)


def same_width(widths: dict[str, int]) -> int:
    """Every file of a collection has one width; returns it."""
    if len(set(widths.values())) > 1:
        shown = ", ".join(f"{k}: {v}" for k, v in list(widths.items())[:4])
        raise Q16Error(f"embedding files of different widths ({shown}); one model per run")
    return next(iter(widths.values()))


def key_column(names: Sequence[str], chosen: str | None, candidates: Sequence[str]) -> str | None:
    """The column that names each row (``data.key_column``, else the first candidate present;
    None: rows are named ``<shard>/<row>``)."""
    if chosen:
        if chosen not in names:
            raise Q16Error(f"data.key_column={chosen!r}: no such column ({', '.join(names)})")
        return chosen
    return next((c for c in candidates if c in names), None)


def collection_key_column(
    metadata_files: Sequence[Path], chosen: str | None, candidates: Sequence[str]
) -> str | None:
    """The one column that names the rows of every metadata file: chosen from all files, not
    the first one opened (which depends on resume and on the worker), and the same for all, so
    a shard is never read with a column its parquet lacks."""
    found: dict[str | None, Path] = {}
    for path in metadata_files:
        try:
            names = pq.read_schema(path).names
            found.setdefault(key_column(names, chosen, candidates), path)
        except Q16Error as err:
            raise Q16Error(f"{path}: {err}") from None
        except Exception as err:  # ArrowInvalid, OSError: a cut or foreign file
            raise Q16Error(f"{path}: not a readable parquet ({type(err).__name__})") from err
    if len(found) > 1:
        shown = ", ".join(f"{k or '<none>'} in {v.name}" for k, v in found.items())
        raise Q16Error(
            f"metadata files name their rows by different columns ({shown}); "
            "pass data.key_column=<a column every file has>"
        )
    return next(iter(found), None)


def _cut(errors: ErrorLog) -> bool:
    """Whether the shard's array was recorded as cut (``npy_rows``)."""
    return any(record.get(INCOMPLETE_FIELD) for record in errors.records)


@dataclass
class RowReader:
    """Turns one shard's embedding array and metadata parquet into RawSamples."""

    meta_columns: tuple[str, ...]
    key: str | None
    warned: bool = field(default=False)

    def _table(
        self, shard: str, array: np.ndarray, metadata: Path, errors: ErrorLog
    ) -> pa.Table | None:
        columns = list(dict.fromkeys(([self.key] if self.key else []) + list(self.meta_columns)))
        table = pq.read_table(metadata, columns=columns)
        if table.num_rows > len(array) and _cut(errors):  # rows beyond the cut: recorded
            table = table.slice(0, len(array))
        if table.num_rows != len(array):
            errors.add(None, f"{shard}: {len(array)} embeddings but {table.num_rows} rows")
            return None
        return table

    def blocks(
        self, shard: str, source: str, array: np.ndarray, metadata: Path, errors: ErrorLog
    ) -> Iterator[FeatureBlock]:
        """The rows as blocks of ``BLOCK_ROWS``: text columns made valid UTF-8 strings once,
        features left as read (the reader checks them)."""
        table = self._table(shard, array, metadata, errors)
        if table is None:
            return
        n = table.num_rows
        keys = text_array(table.column(self.key)) if self.key else pa.nulls(n, pa.string())
        meta = {c: text_array(table.column(c), MAX_TEXT_CHARS) for c in self.meta_columns}
        for start in range(0, n, BLOCK_ROWS):
            stop = min(n, start + BLOCK_ROWS)
            yield FeatureBlock(
                start=start,
                keys=keys.slice(start, stop - start),
                features=array[start:stop],
                source=source,
                meta={c: v.slice(start, stop - start) for c, v in meta.items()},
            )


@dataclass
class EmbeddingCollection:
    """A folder of embedding files, each with a metadata parquet beside it: one shard per file.

    Subclasses say where the files are (:meth:`files`, :meth:`metadata_file`), how an array's
    header and rows are read (:meth:`header`, :meth:`load`) and which columns may name rows
    (``KEY_CANDIDATES``); listing, checking and reading blocks are here.
    """

    path: str
    meta_columns: Sequence[str] = ()
    key_column: str | None = None
    name: str = "embeddings"
    KEY_CANDIDATES: ClassVar[tuple[str, ...]] = ("key",)
    _reader: RowReader | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.meta_columns = tuple(str(c) for c in self.meta_columns)

    def files(self) -> list[Path]:
        raise NotImplementedError

    def metadata_file(self, file: Path) -> Path:
        raise NotImplementedError

    def header(self, file: Path) -> tuple[str, tuple[int, ...], np.dtype]:
        """Where (for messages), shape and dtype of the file's array, from its header only."""
        raise NotImplementedError

    def load(self, file: Path, errors: ErrorLog) -> np.ndarray:
        """The file's (rows, D) array (memory-mapped where the format allows); a cut file
        gives the rows it holds, recorded (:func:`npy_rows`)."""
        raise NotImplementedError

    def widths(self) -> dict[str, int]:
        widths = {}
        for file in self.files():
            rows = parquet_rows(self.metadata_file(file), self.meta_columns)
            where, shape, dtype = self.header(file)
            widths[str(file)] = check_matrix(where, shape, dtype, rows)
        return widths

    def width(self) -> int:
        return same_width(self.widths())

    def embedding_space(self) -> EmbeddingSpace:
        """Only the width is known unless a subclass says which encoder made the files."""
        return EmbeddingSpace(None, None, None, self.width())

    def list_shards(self) -> list[Shard]:
        self.width()
        self._key()  # one line, up front
        return [Shard(file.stem, str(file)) for file in self.files()]

    def _key(self) -> str | None:
        files = [self.metadata_file(f) for f in self.files()]
        return collection_key_column(files, self.key_column, self.KEY_CANDIDATES)

    def iter_blocks(self, shard: Shard, errors: ErrorLog) -> Iterator[FeatureBlock]:
        """Blocks of the shard's array: only the rows of blocks in flight are read."""
        if self._reader is None:
            self._reader = RowReader(tuple(self.meta_columns), self._key())
        file = Path(shard.source)
        array = self.load(file, errors)
        yield from self._reader.blocks(
            shard.name, shard.source, array, self.metadata_file(file), errors
        )
