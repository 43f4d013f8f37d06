"""CSV files that people open in spreadsheets: cells that are never formulas, strings that
stay strings.

A cell starting with ``= + - @``, a tab or a carriage return is run as a formula by Excel,
LibreOffice and Google Sheets (CSV injection: ``=HYPERLINK(...)`` exfiltrates, ``=cmd|...``
runs programs). :func:`neutralise` prefixes such a cell with a single quote, as OWASP advises;
:func:`restore` undoes it. A cell that itself starts with a quote is quoted too, so that
``restore(neutralise(s)) == s`` for every string, and a cell a spreadsheet hands back without
the quote (it treats the leading quote as "this is text") restores to the same string.

:func:`read_text_csv` reads every cell as the exact string written: no ``NA``/``null``/``nan``
turned into missing values, no zero-padded ``000123`` turned into the number 123.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from q16.errors import Q16Error

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula (OWASP CSV injection)."""
QUOTE = "'"


def neutralise(cell: str) -> str:
    """``cell`` safe to open in a spreadsheet: a quote in front of formula starts (and quotes)."""
    if cell.startswith((*FORMULA_STARTS, QUOTE)):
        return QUOTE + cell
    return cell


def restore(cell: str) -> str:
    """The string :func:`neutralise` was given (a cell without the added quote is unchanged)."""
    if cell.startswith(QUOTE) and cell[1:].startswith((*FORMULA_STARTS, QUOTE)):
        return cell[1:]
    return cell


def neutralise_columns(frame: pd.DataFrame, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """A copy with the text cells of ``columns`` (default: every text column) neutralised.

    Numbers stay numbers (a class id of -1 is not a formula); missing values stay missing.
    Vectorised: ``flagged.csv`` may hold millions of rows.
    """
    out = frame.copy()
    names = list(columns) if columns is not None else list(out.columns)
    for name in names:
        if name not in out.columns or pd.api.types.is_numeric_dtype(out[name].dtype):
            continue
        text = out[name]
        starts = text.str.startswith((*FORMULA_STARTS, QUOTE), na=False).astype(bool)
        if starts.any():
            out.loc[starts, name] = QUOTE + text[starts].astype(str)
    return out


def restore_columns(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """``frame`` with the text cells of ``columns`` restored (in place; returned for chaining)."""
    for name in columns:
        if name in frame.columns:
            frame[name] = frame[name].map(lambda v: restore(v) if isinstance(v, str) else v)
    return frame


def write_text_csv(
    frame: pd.DataFrame, target: Path | TextIO, columns: Iterable[str] | None = None, **options: Any
) -> None:
    """``frame`` as CSV with its text cells neutralised (all text columns, or ``columns``).

    Lines end in CRLF (RFC 4180): with a bare ``\n`` terminator, Python's csv writer leaves a
    cell holding a lone ``\r`` unquoted, and every reader splits the row there.
    """
    neutralise_columns(frame, columns).to_csv(target, index=False, lineterminator="\r\n", **options)


def read_text_csv(path: Path, restore_cells: Iterable[str] = ()) -> pd.DataFrame:
    """Every cell as the exact string in the file ("" when empty); ``restore_cells`` columns
    are passed through :func:`restore`. Unreadable files are a one-line Q16Error."""
    try:
        # the python engine: the C engine cuts a cell at a NUL byte (pandas 2.x)
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, na_filter=False, engine="python"
        )
    except pd.errors.EmptyDataError as err:
        raise Q16Error(f"{path}: empty file, expected a CSV with a header line") from err
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise Q16Error(f"{path}: not a readable CSV ({_one_line(err)})") from err
    return restore_columns(frame, restore_cells)


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())[:300]
