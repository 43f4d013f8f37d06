"""The Socio-Moral Image Database (Crone et al., 2018) in its published layout.

``<root>/SMID_norms.csv`` (columns include ``img_name`` and ``moral_mean``) and
``<root>/img/<img_name>.<ext>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from q16.data.csv import numbers
from q16.data.labeled import LabeledImages, threshold_labels
from q16.errors import Q16Error
from q16.imagefiles import is_image_file
from q16.spreadsheet import read_text_csv

log = logging.getLogger(__name__)

NORMS_FILE = "SMID_norms.csv"
IMAGE_DIR = "img"
SMID_URL = "https://osf.io/2rqad/"


@dataclass
class SMIDDataset:
    """SMID thresholded into the paper's two classes.

    Args:
        root: folder holding ``SMID_norms.csv`` and ``img/``.
        t_low: moral mean below this is inappropriate (label 1).
        t_high: moral mean above this is appropriate (label 0); in between is dropped.
    """

    root: str = "data/SMID"
    t_low: float = 2.5
    t_high: float = 3.5

    def load(self) -> LabeledImages:
        root = Path(self.root).expanduser()
        norms = root / NORMS_FILE
        if not norms.is_file():
            raise Q16Error(
                f"SMID not found: expected {norms} (and images in {root / IMAGE_DIR}/); download "
                f"SMID from {SMID_URL} and set data.root or $SMID_ROOT, or try data=synthetic"
            )
        table = read_text_csv(norms)  # image names as written: "NA" is a name, not missing
        missing_cols = {"img_name", "moral_mean"} - set(table.columns)
        if missing_cols:
            raise Q16Error(f"{norms}: missing column(s) {', '.join(sorted(missing_cols))}")
        if table.empty:
            raise Q16Error(f"{norms}: no rows below the header")
        moral = numbers(norms, table, "moral_mean")
        files = _index_images(root / IMAGE_DIR)
        paths, scores, missing = [], [], 0
        for name, score in zip(table["img_name"], moral, strict=True):
            path = files.get(name) or files.get(Path(name).stem)
            if path is None:
                missing += 1
                continue
            paths.append(path)
            scores.append(float(score))
        if not paths:
            raise Q16Error(f"no image of {norms} found under {root / IMAGE_DIR}/")
        if missing:
            log.warning("%d images listed in %s are missing from %s", missing, norms.name, root)
        score_array = np.asarray(scores)
        labels = threshold_labels(score_array, self.t_low, self.t_high)
        keep = labels >= 0
        data = LabeledImages(paths, labels, score_array, name="smid").subset(keep)
        data.dropped = {"missing_image": missing, "between_thresholds": int((~keep).sum())}
        log.info(
            "SMID: %d images (%d inappropriate), %d between thresholds dropped, %d missing",
            len(data),
            int(data.labels.sum()),
            int((~keep).sum()),
            missing,
        )
        return data


def _index_images(image_dir: Path) -> dict[str, Path]:
    if not image_dir.is_dir():
        raise Q16Error(
            f"SMID images folder {image_dir} does not exist; download SMID from {SMID_URL}"
        )
    return {p.stem: p for p in sorted(image_dir.iterdir()) if is_image_file(p.name)}
