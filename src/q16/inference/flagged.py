"""``flagged.csv`` (highest score first) in bounded memory, however many images are flagged.

Flagged rows arrive shard by shard. Up to ``max_rows`` of them are held; beyond that they are
sorted and spilled to temporary parquet runs, which are merged as streams at the end. An
ImageNet run (1.28 M images, a few % flagged) never spills; a LAION-scale one would otherwise
need all its flagged rows in memory at once.

The file is meant for spreadsheets: text cells (keys, shards, file and class names come from the
dataset) are neutralised against formula injection (``q16.spreadsheet``); read them back with
``q16.spreadsheet.read_text_csv(path, restore_cells=...)``.
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from q16.fileio import atomic_path
from q16.spreadsheet import write_text_csv

SORT_KEYS = [("p_inappropriate", "descending"), ("shard", "ascending"), ("key", "ascending")]
"""Highest score first; ties broken by shard and key so that every run writes the same file."""
NULLABLE_INTS = {pa.int64(): pd.Int64Dtype(), pa.int8(): pd.Int8Dtype()}
READ_ROWS = 8192
"""Rows read from each spilled run at a time while merging."""


@dataclass
class FlaggedSorter:
    """Collects flagged rows (arrow tables of one schema) and writes them sorted as CSV."""

    schema: pa.Schema
    spill_dir: Path
    max_rows: int = 1_000_000
    rows: int = 0
    runs: list[Path] = field(default_factory=list)
    _held: list[pa.Table] = field(default_factory=list, repr=False)
    _held_rows: int = field(default=0, repr=False)

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self._held.append(table.select(self.schema.names).cast(self.schema))
        self._held_rows += table.num_rows
        self.rows += table.num_rows
        if self._held_rows >= self.max_rows:
            self._spill()

    def write_csv(self, path: Path) -> None:
        """Write atomically (``q16.fileio.atomic_path``), as every other file of an out_dir."""
        with atomic_path(path) as tmp, tmp.open("w", newline="") as out:
            header = True
            for chunk in self._sorted_chunks():
                # nullable ints stay ints (3, not 3.0) whichever chunk holds a null
                rows = chunk.to_pandas(types_mapper=NULLABLE_INTS.get)
                write_text_csv(rows, out, header=header)
                header = False
            if header:  # nothing flagged: the header alone
                write_text_csv(self.schema.empty_table().to_pandas(), out)

    def _sorted_chunks(self) -> Iterator[pa.Table]:
        if not self.runs:
            yield self._take_held().sort_by(SORT_KEYS)
            return
        if self._held_rows:
            self._spill()
        p, shard, key = (self.schema.get_field_index(name) for name, _ in SORT_KEYS)
        merged = heapq.merge(
            *(self._read_run(run) for run in self.runs),
            key=lambda row: (-row[p], row[shard], row[key]),
        )
        chunk: list[tuple[Any, ...]] = []
        for row in merged:
            chunk.append(row)
            if len(chunk) == READ_ROWS:
                yield self._table(chunk)
                chunk = []
        if chunk:
            yield self._table(chunk)

    def _spill(self) -> None:
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        path = self.spill_dir / f"run-{len(self.runs):06d}.parquet"
        pq.write_table(self._take_held().sort_by(SORT_KEYS), path)
        self.runs.append(path)

    def _take_held(self) -> pa.Table:
        table = pa.concat_tables(self._held) if self._held else self.schema.empty_table()
        self._held, self._held_rows = [], 0
        return table

    def _read_run(self, path: Path) -> Iterator[tuple[Any, ...]]:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=READ_ROWS):
            yield from zip(*(column.to_pylist() for column in batch.columns), strict=True)

    def _table(self, rows: list[tuple[Any, ...]]) -> pa.Table:
        columns = list(zip(*rows, strict=True))
        return pa.table(
            {name: pa.array(col, type=self.schema.field(name).type)
             for name, col in zip(self.schema.names, columns, strict=True)},
            schema=self.schema,
        )  # fmt: skip


@contextmanager
def flagged_sorter(
    schema: pa.Schema, directory: Path, max_rows: int = 1_000_000
) -> Iterator[FlaggedSorter]:
    """A sorter whose spilled runs live in a temporary folder of ``directory`` (the out_dir,
    so on the same disk as the result) and are removed afterwards, even on error."""
    with tempfile.TemporaryDirectory(prefix=".flagged-sort-", dir=directory) as spill:
        yield FlaggedSorter(schema, Path(spill), max_rows)
