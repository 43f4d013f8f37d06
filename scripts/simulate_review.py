"""Fill a review.csv's ``decision`` column from known labels: a scripted stand-in for a person.

    python scripts/simulate_review.py OUT/review.csv --from-synthetic data/synthetic_smid
    python scripts/simulate_review.py OUT/review.csv --truth NORMS.csv

Labels come from a SMID-style norms table (``img_name,moral_mean``; the synthetic SMID's
``SMID_norms.csv``): moral mean < 2.5 -> ``remove``, > 3.5 -> ``keep``, in between ->
``unsure`` (as SMID's own thresholds). A review row is matched by its image's file name
without the extension (``file_name``, else ``key``), which is how ``data=folder`` over
``data/synthetic_smid/img`` names the images. Rows without a label are left blank and
counted. Only the ``decision`` column changes; every other cell is written back as read.
This is for demos and tests: a real audit is decided by people.

``--curator smid+green`` stands in for a curator whose standard differs from SMID's raters,
as a real dataset's will: it also removes images with a green cast (mean green more than
``GREEN_CAST`` above the mean of red and blue: a visible stand-in for a category SMID never
rated), read from each row's image file (``source``). The demo prompts were trained on SMID
labels only, so learning from this review has something to learn (``make review-demo``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from q16.errors import Q16Error, exit_on_user_error
from q16.fileio import atomic_path
from q16.spreadsheet import read_text_csv, restore, write_text_csv

NORMS_FILE = "SMID_norms.csv"
LOW, HIGH = 2.5, 3.5
GREEN_CAST = 10.0
CURATORS = ("smid", "smid+green")


def decisions_from_norms(norms_path: Path) -> dict[str, str]:
    """``img_name`` -> keep / remove / unsure."""
    norms = read_text_csv(norms_path)
    missing = {"img_name", "moral_mean"} - set(norms.columns)
    if missing:
        raise Q16Error(f"{norms_path}: missing column(s) {', '.join(sorted(missing))}")
    moral = pd.to_numeric(norms["moral_mean"], errors="coerce")
    decision = pd.Series("unsure", index=norms.index)
    decision[moral < LOW] = "remove"
    decision[moral > HIGH] = "keep"
    decision[moral.isna()] = ""
    return dict(zip(norms["img_name"].map(restore), decision, strict=True))


def green_cast(path: str) -> float | None:
    """Mean green minus the mean of red and blue (None: the image cannot be read)."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    except (OSError, ValueError):
        return None
    return float(pixels[..., 1].mean() - (pixels[..., 0].mean() + pixels[..., 2].mean()) / 2)


def with_green_category(review: pd.DataFrame, found: pd.Series) -> pd.Series:
    """SMID's decisions, plus ``remove`` for every image with a green cast."""
    if "source" not in review.columns:
        raise Q16Error("--curator smid+green needs the review's source column (image paths)")
    cast = review["source"].map(lambda s: green_cast(restore(s)))
    green = cast.notna() & (cast.astype(float) > GREEN_CAST)
    return found.where(~green, "remove").where(cast.notna())


def fill_review(
    review_path: Path, labels: dict[str, str], curator: str = "smid"
) -> tuple[int, int]:
    """Write the decisions into ``review_path``; (rows decided, rows without a label)."""
    review = read_text_csv(review_path)
    if "decision" not in review.columns or "key" not in review.columns:
        raise Q16Error(f"{review_path}: not a review.csv (needs decision and key columns)")
    names = review["file_name"] if "file_name" in review.columns else review["key"]
    names = names.where(names != "", review["key"]).map(lambda n: Path(restore(n)).stem)
    found = names.map(labels)
    if curator == "smid+green":
        found = with_green_category(review, found)
    review["decision"] = found.fillna("")
    with atomic_path(review_path) as tmp:
        write_text_csv(review, tmp, ["decision"])
    return int((review["decision"] != "").sum()), int(found.isna().sum())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("review", type=Path, help="a review.csv written by q16 report or q16 audit")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--truth", type=Path, help="a norms CSV: img_name, moral_mean")
    source.add_argument("--from-synthetic", type=Path, metavar="DATA_ROOT",
                        help=f"a synthetic SMID root (reads DATA_ROOT/{NORMS_FILE})")  # fmt: skip
    parser.add_argument(
        "--curator",
        choices=CURATORS,
        default="smid",
        help="smid: SMID's thresholds; smid+green: also removes images with a green cast "
        "(a standard that differs from the training labels)",
    )
    args = parser.parse_args(argv)
    with exit_on_user_error():
        norms = args.truth or args.from_synthetic / NORMS_FILE
        if not norms.is_file():
            raise Q16Error(f"{norms}: labels not found (make demo writes data/synthetic_smid)")
        if not args.review.is_file():
            raise Q16Error(f"{args.review}: review file not found (run q16 report OUT first)")
        decided, unlabelled = fill_review(args.review, decisions_from_norms(norms), args.curator)
        print(f"{args.review}: {decided} rows decided from {norms}; {unlabelled} without a label")


if __name__ == "__main__":
    main(sys.argv[1:])
