"""Bring-your-own data: a CSV of image paths with labels or scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from q16.data.labeled import LabeledImages, threshold_labels
from q16.errors import Q16Error
from q16.spreadsheet import read_text_csv


@dataclass
class CSVImageLabels:
    """Rows of ``path`` plus either ``label`` (0/1, 1 = inappropriate) or ``score``.

    With a score column, label 1 when score < ``t_low`` and 0 when score > ``t_high``
    (SMID's convention: low rating = inappropriate); rows in between are dropped. Relative
    paths are resolved against ``image_root`` (default: the CSV's folder).
    """

    path: str
    path_column: str = "path"
    label_column: str | None = "label"
    score_column: str | None = None
    t_low: float = 2.5
    t_high: float = 3.5
    image_root: str | None = None

    def load(self) -> LabeledImages:
        csv_path = Path(self.path).expanduser()
        if not csv_path.is_file():
            raise Q16Error(f"data.path={self.path!r}: CSV file not found")
        table = read_text_csv(csv_path)  # every cell the exact string written
        if self.path_column not in table.columns:
            raise Q16Error(f"{csv_path}: no column {self.path_column!r} (set data.path_column)")
        if table.empty:
            raise Q16Error(f"{csv_path}: no rows below the header; list one image per row")
        names = table[self.path_column].str.strip()
        _refuse(csv_path, self.path_column, names == "", "is empty")
        root = Path(self.image_root).expanduser() if self.image_root else csv_path.parent
        paths = [p if p.is_absolute() else root / p for p in map(Path, names)]
        scores = None
        if self.score_column:
            if self.score_column not in table.columns:
                raise Q16Error(f"{csv_path}: no column {self.score_column!r}")
            scores = numbers(csv_path, table, self.score_column)
            labels = threshold_labels(scores, self.t_low, self.t_high)
        elif self.label_column and self.label_column in table.columns:
            values = numbers(csv_path, table, self.label_column)
            _refuse(csv_path, self.label_column, ~np.isin(values, [0, 1]), "is not 0 or 1")
            labels = values.astype(np.int64)
        else:
            raise Q16Error(
                f"{csv_path}: needs a {self.label_column!r} column (0/1) or data.score_column"
            )
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise Q16Error(
                f"{len(missing)} image(s) listed in {csv_path.name} do not exist, e.g. {missing[0]}"
            )
        data = LabeledImages(paths, labels, scores, name=csv_path.stem)
        return data.subset(data.labels >= 0)


def numbers(path: Path, table: pd.DataFrame, column: str) -> np.ndarray:
    """A column of finite numbers, or a one-line error naming the first bad lines."""
    values = pd.to_numeric(table[column].str.strip(), errors="coerce").to_numpy(dtype=float)
    _refuse(path, column, ~np.isfinite(values), "is not a number")
    return values


def _refuse(path: Path, column: str, bad: np.ndarray | pd.Series, problem: str) -> None:
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        rows = np.flatnonzero(bad)
        shown = ", ".join(f"line {i + 2}" for i in rows[:3])
        raise Q16Error(
            f"{path}: column {column!r} {problem} in {len(rows)} row(s) ({shown}"
            f"{', …' if len(rows) > 3 else ''})"
        )
