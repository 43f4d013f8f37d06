"""Which image each row of a filled-in review means, and the one decision for each image.

A review comes back from a spreadsheet: cells we quoted against formula injection may or may
not still carry the quote, and zero-padded keys may have become numbers. Rows are matched to
the run's images exactly (quote removed, or as written); what cannot be matched, or an image
given two different decisions, is a one-line error that names the rows and says why.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from q16.errors import Q16Error
from q16.spreadsheet import restore
from q16.text import clean

Image = tuple[str, str]
"""(shard, key): keys need only be unique within a shard."""
SHOWN = 3
"""Rows named in an error message."""


ANOTHER_RUN = "was the review made for another run?"


def match_images(
    review: pd.DataFrame, known: set[Image], path: str, out_dir: Path, hint: str = ANOTHER_RUN
) -> list[Image]:
    """The run's image for every review row, in row order; ``hint`` ends the message for rows
    that are no image of the run (what the caller's user can pass to point at the right run)."""
    matched: list[Image] = []
    unknown: list[tuple[int, Image]] = []
    for row, (shard, key) in enumerate(zip(review["shard"], review["key"], strict=True)):
        candidates = [(s, k) for s in (restore(shard), shard) for k in (restore(key), key)]
        image = next((c for c in candidates if c in known), None)
        if image is None:
            unknown.append((row, (restore(shard), restore(key))))
        else:
            matched.append(image)
    if not unknown:
        return matched
    rows = ", ".join(f"line {row + 2}: {show(image)}" for row, image in unknown[:SHOWN])
    padded = _lost_zeros([image for _, image in unknown], known)
    if padded:
        raise Q16Error(
            f"{path}: {len(unknown)} row(s) are not images of {out_dir} ({rows}); "
            f"{show(padded[0])} is {show(padded[1])} without its leading zeros: a spreadsheet "
            "turned the keys into numbers. Import review.csv with the shard and key columns as "
            "text (or edit it in a text editor) and save it again"
        )
    raise Q16Error(f"{path}: {len(unknown)} row(s) are not images of {out_dir} ({rows}); {hint}")


def one_decision_per_image(
    images: list[Image], decisions: list[str], path: str
) -> dict[Image, str]:
    """Each image's decision; a blank row does not undo a decision, two decisions conflict."""
    chosen: dict[Image, str] = {}
    lines: dict[Image, list[int]] = {}
    conflicts: dict[Image, set[str]] = {}
    for row, (image, decision) in enumerate(zip(images, decisions, strict=True)):
        lines.setdefault(image, []).append(row + 2)
        before = chosen.get(image, "")
        if decision and before and decision != before:
            conflicts.setdefault(image, {before}).add(decision)
        chosen[image] = decision or before
    if conflicts:
        shown = "; ".join(
            f"{show(image)} (lines {', '.join(map(str, lines[image]))}: "
            f"{' vs '.join(sorted(found))})"
            for image, found in list(conflicts.items())[:SHOWN]
        )
        more = f" and {len(conflicts) - SHOWN} more" if len(conflicts) > SHOWN else ""
        raise Q16Error(
            f"{path}: conflicting decisions for {len(conflicts)} image(s): {shown}{more}; "
            "give each image one decision"
        )
    return chosen


def _lost_zeros(unknown: list[Image], known: set[Image]) -> tuple[Image, Image] | None:
    """An unmatched row and the image it would be if its shard and key had kept their zeros."""
    by_number: dict[Image, Image] = {}
    for shard, key in known:
        by_number.setdefault((_number(shard), _number(key)), (shard, key))
    for shard, key in unknown:
        image = by_number.get((_number(shard), _number(key)))
        if image is not None and (shard.isdigit() or key.isdigit()):
            return (shard, key), image
    return None


def _number(text: str) -> str:
    """Digits without leading zeros (what a spreadsheet keeps); other text unchanged."""
    return (text.lstrip("0") or "0") if text.isdigit() else text


def show(image: Image) -> str:
    """A (shard, key) for a one-line message: cleaned and shortened."""
    return f"{clean(image[0], 60)}/{clean(image[1], 60)}"
