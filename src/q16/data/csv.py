"""Bring-your-own data: a CSV of image paths with labels or scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from q16.data.labeled import LabeledImages, threshold_labels
from q16.errors import Q16Error


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
        table = pd.read_csv(csv_path)
        if self.path_column not in table.columns:
            raise Q16Error(f"{csv_path}: no column {self.path_column!r} (set data.path_column)")
        root = Path(self.image_root).expanduser() if self.image_root else csv_path.parent
        paths = [p if p.is_absolute() else root / p for p in map(Path, table[self.path_column])]
        scores = None
        if self.score_column:
            if self.score_column not in table.columns:
                raise Q16Error(f"{csv_path}: no column {self.score_column!r}")
            scores = table[self.score_column].to_numpy(dtype=float)
            labels = threshold_labels(scores, self.t_low, self.t_high)
        elif self.label_column and self.label_column in table.columns:
            labels = table[self.label_column].to_numpy()
            if not np.isin(labels, [0, 1]).all():
                raise Q16Error(f"{csv_path}: column {self.label_column!r} must hold 0 or 1")
        else:
            raise Q16Error(
                f"{csv_path}: needs a {self.label_column!r} column (0/1) or data.score_column"
            )
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise Q16Error(
                f"{len(missing)} image(s) listed in {csv_path.name} do not exist, e.g. {missing[0]}"
            )
        data = LabeledImages(paths, labels.astype(np.int64), scores, name=csv_path.stem)
        return data.subset(data.labels >= 0)
