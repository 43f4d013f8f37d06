"""Labelled images with a category per image (and a source, e.g. real vs generated), as the
image-safety benchmarks publish them: a CSV of image files, or a Hugging Face dataset read with
``datasets`` (a ``save_to_disk`` folder, parquet files, or the hub for a user with access).

The column names default to UnsafeBench's (``image``, ``safety_label``, ``category``,
``source``). Images are read lazily, one row at a time (a 10,000-image set is never held in
memory), as bytes, and decoded by q16's one decoder like every other input; a row whose image
is missing or undecodable is a record of the run, not a stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from q16.errors import Q16Error
from q16.imageload import read_file
from q16.spreadsheet import read_text_csv

HUB_PREFIX = "hub:"
"""``data.path=hub:yiting/UnsafeBench``: load from the Hugging Face hub (network, access)."""


@dataclass
class CategorizedImages:
    """``table`` has ``category``, ``label`` (as written) and ``source`` when there is one;
    ``items[i]`` reads row i's image bytes."""

    table: pd.DataFrame
    items: list[tuple[str, Any]]
    name: str
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class CategorizedSet:
    """Where the labelled set is and which columns hold what."""

    path: str
    image_column: str = "image"
    label_column: str = "safety_label"
    category_column: str = "category"
    source_column: str | None = "source"
    """None, or a name the data lacks: no split by source."""
    split: str | None = None
    """A Hugging Face split; None merges every split (UnsafeBench's Table 3 uses train+test)."""
    image_root: str | None = None
    """CSV only: folder that relative image paths start from (default: the CSV's folder)."""
    categories: tuple[str, ...] | None = None
    """Keep only these categories (e.g. the ones a paper scored a classifier on); None: all."""
    cache_dir: str | None = None
    """Where ``datasets`` keeps its Arrow copy of parquet or hub data (None: its default,
    ``~/.cache/huggingface/datasets``)."""

    def load(self) -> CategorizedImages:
        loaded = self._load()
        if self.categories is None:
            return loaded
        wanted = [str(c) for c in self.categories]
        present = set(loaded.table["category"])
        absent = [c for c in wanted if c not in present]
        if absent:
            raise Q16Error(
                f"data.categories: {absent[0]!r} is not a category of {loaded.name} "
                f"(it has {', '.join(sorted(present)[:12])})"
            )
        keep = loaded.table["category"].isin(wanted).to_numpy()
        items = [item for item, k in zip(loaded.items, keep, strict=True) if k]
        record = {**loaded.record, "categories_kept": wanted, "rows_kept": int(keep.sum())}
        table = loaded.table[keep].reset_index(drop=True)
        return CategorizedImages(table, items, loaded.name, record)

    def _load(self) -> CategorizedImages:
        text = str(self.path)
        if text.startswith(HUB_PREFIX):
            return self._from_dataset(_hub(text[len(HUB_PREFIX) :], self.cache_dir), text)
        path = Path(text).expanduser()
        if path.is_file() and path.suffix.lower() == ".csv":
            return self._from_csv(path)
        if (path.is_file() and path.suffix.lower() == ".parquet") or _has_parquet(path):
            return self._from_dataset(_parquet(path, self.cache_dir), str(path))
        if path.is_dir():
            return self._from_dataset(_from_disk(path), str(path))
        raise Q16Error(
            f"data.path={text!r} is neither a CSV, a parquet file or folder, a folder written "
            f"by datasets' save_to_disk, nor {HUB_PREFIX}<name> of a Hugging Face dataset"
        )

    def _columns(self, available: list[str], where: str) -> list[str]:
        need = [self.image_column, self.label_column, self.category_column]
        missing = [c for c in need if c not in available]
        if missing:
            raise Q16Error(
                f"{where}: no column {missing[0]!r} (it has {', '.join(available[:12])}); set "
                "data.image_column, data.label_column and data.category_column"
            )
        return need + ([str(self.source_column)] if self.has_source(available) else [])

    def has_source(self, available: list[str]) -> bool:
        return bool(self.source_column) and self.source_column in available

    def _table(self, frame: pd.DataFrame, available: list[str]) -> pd.DataFrame:
        table = pd.DataFrame(
            {
                "category": frame[self.category_column].astype(str).to_numpy(),
                "label": frame[self.label_column].to_numpy(),
            }
        )
        if self.has_source(available):
            table["source"] = frame[str(self.source_column)].astype(str).to_numpy()
        return table

    def _from_csv(self, path: Path) -> CategorizedImages:
        frame = read_text_csv(path)
        columns = self._columns(list(frame.columns), str(path))
        if frame.empty:
            raise Q16Error(f"{path}: no rows below the header; list one image per row")
        root = Path(self.image_root).expanduser() if self.image_root else path.parent
        items = []
        for i, name in enumerate(frame[self.image_column].str.strip()):
            file = Path(name) if Path(name).is_absolute() else root / name
            items.append((f"row {i}: {name}", _FileBytes(file)))
        record = {"origin": str(path), "kind": "csv", "columns": columns, "rows": len(frame)}
        return CategorizedImages(self._table(frame, list(frame.columns)), items, path.stem, record)

    def _from_dataset(self, data: Any, origin: str) -> CategorizedImages:
        import datasets

        splits = _splits(data, self.split, origin)
        merged = datasets.concatenate_datasets(list(splits.values()))
        available = list(merged.column_names)
        columns = self._columns(available, origin)
        merged = merged.select_columns(columns)
        meta = merged.remove_columns([self.image_column])
        frame = meta.to_pandas()
        for column in columns[1:]:  # class ids -> their names, as the dataset card shows them
            feature = merged.features[column]
            if isinstance(feature, datasets.ClassLabel):
                frame[column] = [feature.int2str(int(v)) for v in frame[column]]
        feature = merged.features[self.image_column]
        if isinstance(feature, datasets.Image):
            merged = merged.cast_column(self.image_column, datasets.Image(decode=False))
        images = merged.select_columns([self.image_column])
        items = [(f"row {i}", _RowBytes(images, self.image_column, i)) for i in range(len(images))]
        record = {
            "origin": origin,
            "kind": "huggingface",
            "splits": {name: len(part) for name, part in splits.items()},
            "columns": columns,
            "rows": len(merged),
        }
        name = Path(origin.removeprefix(HUB_PREFIX)).name or "dataset"
        return CategorizedImages(self._table(frame, available), items, name, record)


@dataclass(frozen=True)
class _FileBytes:
    path: Path

    def __call__(self) -> bytes:
        return read_file(self.path)


@dataclass(frozen=True)
class _RowBytes:
    """One row's image: ``{"bytes", "path"}`` of an undecoded Image feature, raw bytes, or a
    file path string."""

    data: Any
    column: str
    index: int

    def __call__(self) -> bytes:
        value = self.data[self.index][self.column]
        if isinstance(value, dict):
            if value.get("bytes"):
                return bytes(value["bytes"])
            value = value.get("path")
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        if isinstance(value, str) and value:
            return read_file(value)
        raise OSError("the row has no image bytes and no image path")


def _has_parquet(path: Path) -> bool:
    return path.is_dir() and any(path.glob("**/*.parquet"))


def _hub(name: str, cache_dir: str | None) -> Any:
    import datasets

    try:
        return datasets.load_dataset(name, cache_dir=cache_dir)
    except Exception as err:  # network, access, unknown name: the user fixes each
        raise Q16Error(f"{HUB_PREFIX}{name}: cannot load it from the hub ({_line(err)})") from None


def _parquet(path: Path, cache_dir: str | None) -> Any:
    import datasets

    files = [str(path)] if path.is_file() else sorted(str(p) for p in path.glob("**/*.parquet"))
    try:
        return datasets.load_dataset("parquet", data_files=files, cache_dir=cache_dir)
    except Exception as err:
        raise Q16Error(f"{path}: not readable parquet ({_line(err)})") from None


def _from_disk(path: Path) -> Any:
    import datasets

    try:
        return datasets.load_from_disk(str(path))
    except Exception as err:
        raise Q16Error(
            f"{path}: not a folder written by datasets' save_to_disk ({_line(err)})"
        ) from None


def _splits(data: Any, split: str | None, origin: str) -> dict[str, Any]:
    import datasets

    if isinstance(data, datasets.Dataset):
        return {str(data.split or "data"): data}
    names = list(data.keys())
    if split is None:
        return {name: data[name] for name in names}
    if split not in names:
        raise Q16Error(f"{origin}: no split {split!r} (it has {', '.join(names)})")
    return {split: data[split]}


def _line(err: Exception) -> str:
    return " ".join(str(err).split())[:200]
