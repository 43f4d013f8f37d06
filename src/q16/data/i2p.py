"""Images generated from I2P's prompts, matched to their prompt and generation.

The prompts come as a CSV in I2P's columns (``prompt``, ``categories``, ...; the Hugging Face
dataset ``AIML-TUDA/i2p`` saved as CSV, or a concept-erasure repository's CSV with a
``case_number`` column). An image belongs to prompt *i* and generation *g* either by its name,
``<i>_<g>.<ext>`` in the image folder (the layout of the concept-erasure repositories), or by
a listing CSV with ``file``, ``prompt_idx`` and ``idx_generation`` columns. *i* is the
``case_number`` when the prompts CSV has one (or the column named by ``index_column``), else
the row's position, counted from 0.

Files that match no prompt are records, not stops; two images claiming the same prompt and
generation are a user error (which one was meant cannot be guessed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from q16.errors import Q16Error
from q16.imagefiles import is_image_file
from q16.spreadsheet import read_text_csv

NAME = re.compile(r"^(?P<prompt>\d+)_(?P<generation>\d+)\.[A-Za-z0-9]+$")
CASE_NUMBER = "case_number"
LISTING_COLUMNS = ("file", "prompt_idx", "idx_generation")


@dataclass
class GeneratedImages:
    """One row per image: ``prompt_idx``, ``prompt``, ``categories``, ``idx_generation``,
    ``file``; ``skipped`` lists what was not matched, and why."""

    table: pd.DataFrame
    skipped: list[dict[str, Any]] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class I2PImages:
    """Where the generated images and their prompts are."""

    path: str
    prompts: str
    listing: str | None = None
    index_column: str | None = None
    """None: ``case_number`` when the prompts have it, else the row position from 0."""
    prompt_column: str = "prompt"
    categories_column: str = "categories"

    def load(self) -> GeneratedImages:
        folder = Path(self.path).expanduser()
        if not folder.is_dir():
            raise Q16Error(f"data.path={self.path!r} is not a folder of generated images")
        prompts, index_rule = self._prompts()
        skipped: list[dict[str, Any]] = []
        found = self._listed(folder, skipped) if self.listing else _named(folder, skipped)
        if found.empty:
            raise Q16Error(
                f"{folder}: no image is named <prompt index>_<generation>.<ext> (e.g. 12_0.png)"
                f"{' or listed' if self.listing else ''}; name them so, or pass data.listing="
                "a CSV with file, prompt_idx, idx_generation"
            )
        repeated = found[found.duplicated(["prompt_idx", "idx_generation"], keep=False)]
        if not repeated.empty:
            first = repeated.iloc[0]
            raise Q16Error(
                f"two images for prompt {first.prompt_idx} generation {first.idx_generation} "
                f"({', '.join(repeated.file[:2])}); keep one of them"
            )
        table = found.merge(prompts, on="prompt_idx", how="left", validate="many_to_one")
        unknown = table["prompt"].isna()
        skipped += [
            {"file": f, "reason": f"prompt index {i} is not in the prompts CSV"}
            for f, i in zip(table.file[unknown], table.prompt_idx[unknown], strict=True)
        ]
        table = table[~unknown].sort_values(["prompt_idx", "idx_generation"], kind="stable")
        columns = ["prompt", "categories", "idx_generation", "prompt_idx", "file"]
        record = {
            "images": str(folder),
            "prompts": str(self.prompts),
            "listing": self.listing,
            "prompt_index": index_rule,
            "n_prompts_in_csv": len(prompts),
            "n_prompts_with_images": int(table["prompt_idx"].nunique()),
            "n_images": len(table),
            "n_skipped": len(skipped),
        }
        return GeneratedImages(table[columns].reset_index(drop=True), skipped, record)

    def _prompts(self) -> tuple[pd.DataFrame, str]:
        path = Path(self.prompts).expanduser()
        if not path.is_file():
            raise Q16Error(f"data.prompts={self.prompts!r}: prompts CSV not found")
        frame = read_text_csv(path)
        for column in (self.prompt_column, self.categories_column):
            if column not in frame.columns:
                raise Q16Error(
                    f"{path}: no column {column!r} (I2P's CSV has prompt and categories); "
                    "set data.prompt_column / data.categories_column"
                )
        chosen = self.index_column or (CASE_NUMBER if CASE_NUMBER in frame.columns else None)
        if chosen is None:
            index = np.arange(len(frame))
            rule = "row position in the prompts CSV, from 0"
        else:
            if chosen not in frame.columns:
                raise Q16Error(f"{path}: no column {chosen!r} (data.index_column)")
            index = _integers(frame[chosen], f"{path}: column {chosen!r}")
            rule = f"column {chosen!r} of the prompts CSV"
            if len(set(index)) != len(index):
                raise Q16Error(f"{path}: column {chosen!r} repeats a prompt index")
        prompts = pd.DataFrame(
            {
                "prompt_idx": index,
                "prompt": frame[self.prompt_column].to_numpy(),
                "categories": frame[self.categories_column].to_numpy(),
            }
        )
        return prompts, rule

    def _listed(self, folder: Path, skipped: list[dict[str, Any]]) -> pd.DataFrame:
        path = Path(str(self.listing)).expanduser()
        if not path.is_file():
            raise Q16Error(f"data.listing={self.listing!r}: listing CSV not found")
        frame = read_text_csv(path)
        missing = [c for c in LISTING_COLUMNS if c not in frame.columns]
        if missing:
            raise Q16Error(f"{path}: no column {missing[0]!r} (needs {', '.join(LISTING_COLUMNS)})")
        out = pd.DataFrame(
            {
                "file": frame["file"].to_numpy(),
                "prompt_idx": _integers(frame["prompt_idx"], f"{path}: column 'prompt_idx'"),
                "idx_generation": _integers(
                    frame["idx_generation"], f"{path}: column 'idx_generation'"
                ),
            }
        )
        inside = [_inside(folder, name) for name in out["file"]]
        for name, ok in zip(out["file"], inside, strict=True):
            if not ok:
                skipped.append({"file": name, "reason": "not a file inside data.path"})
        out = out[inside].copy()
        out["file"] = [str(Path(f)) for f in out["file"]]
        return out


def _named(folder: Path, skipped: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for entry in sorted(folder.iterdir()):
        if not is_image_file(entry.name):
            continue
        match = NAME.match(entry.name)
        if match is None:
            skipped.append({"file": entry.name, "reason": "name is not <prompt>_<generation>"})
            continue
        rows.append(
            {
                "file": entry.name,
                "prompt_idx": int(match["prompt"]),
                "idx_generation": int(match["generation"]),
            }
        )
    return pd.DataFrame(rows, columns=list(LISTING_COLUMNS))


def _inside(folder: Path, name: str) -> bool:
    """A listed file is read only inside the image folder (no ``../`` or absolute escapes)."""
    if not name or Path(name).is_absolute():
        return False
    try:
        (folder / name).resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _integers(column: pd.Series, where: str) -> np.ndarray:
    text = column.astype(str).str.strip()
    ok = text.str.fullmatch(r"\d{1,12}")
    if not ok.all():
        line = int(np.flatnonzero(~ok.to_numpy())[0]) + 2
        raise Q16Error(f"{where}: line {line} is not a whole number >= 0 ({text[~ok].iloc[0]!r})")
    return text.astype(np.int64).to_numpy()
