"""Which image each row of a filled-in review means, and the one decision for each image.

A review comes back from a spreadsheet: cells we quoted against formula injection may or may
not still carry the quote, and keys may have become numbers (``000123`` -> ``123``,
``123456789012`` -> ``1.23457E+11``). Rows are matched to the run's images exactly (quote
removed, or as written); what cannot be matched, an image given two different decisions, or a
row decided on a shard that has been scored again since, is a one-line error that names the
rows and says why. One rule for ``q16 apply``, ``q16 next`` and ``train.py data=review``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Set
from pathlib import Path

import pandas as pd

from q16.errors import Q16Error
from q16.review.versions import VERSION_COLUMN
from q16.spreadsheet import restore
from q16.text import clean

log = logging.getLogger(__name__)

Image = tuple[str, str]
"""(shard, key): keys need only be unique within a shard."""
SHOWN = 3
"""Rows named in an error message."""


ANOTHER_RUN = "was the review made for another run?"
_SCIENTIFIC = re.compile(r"^[+-]?\d+([.,]\d+)?[eE][+-]?\d+$")
"""How a spreadsheet shows (and saves) a long number: ``1.23457E+11``, digits lost."""
_DECIMAL = re.compile(r"^(\d+)[.,]0+$")
"""``123.0``: an integer key turned into a number and back into text."""


def match_images(
    review: pd.DataFrame,
    known: Set[Image],
    path: str,
    out_dir: Path,
    hint: str = ANOTHER_RUN,
    versions: Mapping[str, str] | None = None,
) -> list[Image]:
    """The run's image for every review row, in row order; ``hint`` ends the message for rows
    that are no image of the run (what the caller's user can pass to point at the right run).

    With ``versions`` (``q16.review.versions``), a row whose ``shard_version`` is not its
    shard's version now was decided on images that have been scored again: refused.
    """
    matched: list[Image] = []
    unknown: list[tuple[int, Image]] = []
    for row, (shard, key) in enumerate(zip(review["shard"], review["key"], strict=True)):
        candidates = [(s, k) for s in (restore(shard), shard) for k in (restore(key), key)]
        image = next((c for c in candidates if c in known), None)
        if image is None:
            unknown.append((row, (restore(shard), restore(key))))
        else:
            matched.append(image)
    if unknown:
        raise Q16Error(_unknown_message(unknown, known, path, out_dir, hint))
    if versions is not None:
        _check_versions(review, matched, versions, path)
    return matched


def _unknown_message(
    unknown: list[tuple[int, Image]], known: Set[Image], path: str, out_dir: Path, hint: str
) -> str:
    rows = ", ".join(f"line {row + 2}: {show(image)}" for row, image in unknown[:SHOWN])
    start = f"{path}: {len(unknown)} row(s) are not images of {out_dir} ({rows}); "
    as_text = (
        "Import the sheet with the shard and key columns as text (or edit it in a text "
        "editor) and save it again"
    )
    numbers = [(row, image) for row, image in unknown if _is_number_form(image)]
    if numbers:
        row, image = numbers[0]
        return (
            f"{start}the keys were turned into numbers by a spreadsheet (line {row + 2}: "
            f"{show(image)}, in {len(numbers)} row(s)). {as_text}"
        )
    padded = _lost_zeros([image for _, image in unknown], known)
    if padded:
        return (
            f"{start}{show(padded[0])} is {show(padded[1])} without its leading zeros: the "
            f"keys were turned into numbers by a spreadsheet. {as_text}"
        )
    return f"{start}{hint}"


def _is_number_form(image: Image) -> bool:
    return any(_SCIENTIFIC.match(part) or _DECIMAL.match(part) for part in image)


def _check_versions(
    review: pd.DataFrame, images: list[Image], versions: Mapping[str, str], path: str
) -> None:
    if VERSION_COLUMN not in review.columns:
        log.warning(
            "%s has no %s column: cannot check that its shards were not scored again since",
            clean(path),
            VERSION_COLUMN,
        )
        return
    changed: dict[str, int] = {}
    blank: dict[str, int] = {}
    for (shard, _), written in zip(images, review[VERSION_COLUMN], strict=True):
        written, known = written.strip(), versions.get(shard, "")
        if not written and known:  # cleared in a spreadsheet: which scoring was it?
            blank[shard] = blank.get(shard, 0) + 1
        elif written and written != known:
            changed[shard] = changed.get(shard, 0) + 1
    if blank:
        shard, rows = next(iter(blank.items()))
        raise Q16Error(
            f"{path}: {sum(blank.values())} row(s) have a blank {VERSION_COLUMN} (e.g. shard "
            f"{clean(shard, 60)!r}, {rows} row(s)), so q16 cannot tell which scoring of the "
            f"shard they were decided on: copy the {VERSION_COLUMN} column back from the "
            "sheet q16 wrote"
        )
    if changed:
        shard, rows = next(iter(changed.items()))
        raise Q16Error(
            f"{path}: {sum(changed.values())} row(s) were decided on an earlier scoring of "
            f"{len(changed)} shard(s) (e.g. {clean(shard, 60)!r}, {rows} row(s)): the shard was "
            "scored again and other images may stand under its keys; these decisions no "
            "longer name what was reviewed: review the shard again (q16 report, q16 next)"
        )


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


def _lost_zeros(unknown: list[Image], known: Set[Image]) -> tuple[Image, Image] | None:
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
