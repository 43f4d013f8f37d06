"""CSV files that people open in spreadsheets: cells that are never formulas, strings that
stay strings.

A cell starting with ``= + - @``, a tab or a carriage return is run as a formula by Excel,
LibreOffice and Google Sheets (CSV injection: ``=HYPERLINK(...)`` exfiltrates, ``=cmd|...``
runs programs). :func:`neutralise` prefixes such a cell with a single quote, as OWASP advises;
:func:`restore` undoes it. A cell that itself starts with a quote is quoted too, so that
``restore(neutralise(s)) == s`` for every string, and a cell a spreadsheet hands back without
the quote (it treats the leading quote as "this is text") restores to the same string.

:func:`read_text_csv` reads every cell as the exact string written: no ``NA``/``null``/``nan``
turned into missing values, no zero-padded ``000123`` turned into the number 123, no cell too
long (the csv module's 131,072-character limit does not apply). :func:`read_sheet` reads back
what spreadsheets save too (review sheets): UTF-8 with or without a byte-order mark, UTF-16 and
UTF-32 with one, Windows-1252, and (for a sheet whose columns are known) ``;`` or tab
separators; anything else is refused with "save it as CSV UTF-8".
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from q16.errors import Q16Error
from q16.fileio import atomic_path
from q16.userfiles import read_user_bytes

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
    cells = neutralise_columns(frame, columns)
    if isinstance(target, (str, Path)):  # a file: written whole or not at all
        with atomic_path(Path(target)) as tmp:
            cells.to_csv(tmp, index=False, lineterminator="\r\n", **options)
    else:
        cells.to_csv(target, index=False, lineterminator="\r\n", **options)


SAVE_AS = "save it as CSV UTF-8 (comma-separated)"
MAX_SHEET_BYTES = 1 << 30
"""A review sheet larger than this (1 GiB: millions of rows) is refused: it is read whole."""
MAX_CSV_BYTES = 4 << 30
"""q16's own CSVs (``flagged.csv``) and training CSVs: larger ones are refused (4 GiB)."""
"""What to do with a sheet q16 cannot read: every spreadsheet offers this format."""
SEPARATORS = (",", ";", "\t")
"""Comma (q16's); semicolon (spreadsheets in locales with a decimal comma); tab."""
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8 with BOM"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
)
"""Byte-order marks, UTF-32's first (its little-endian mark starts with UTF-16's)."""


@dataclass(frozen=True)
class Sheet:
    """A CSV read back, and how it was stored (q16 writes ``UTF-8`` with ``,``)."""

    frame: pd.DataFrame
    encoding: str
    """``UTF-8``, ``UTF-8 with BOM``, ``UTF-16``, ``UTF-32`` or ``Windows-1252``."""
    separator: str

    @property
    def as_q16_writes(self) -> bool:
        return self.encoding == "UTF-8" and self.separator == ","


def decode(
    data: bytes, path: Path, spreadsheet: bool = True, final: bool = True
) -> tuple[str, str]:
    """The text of a CSV file and the name of its encoding, or a one-line Q16Error. Without
    ``spreadsheet``, UTF-8 only (a byte-order mark is dropped): q16's own files and inputs
    whose bytes must not be guessed at (training CSVs name files). Without ``final``, ``data``
    is the start of the file: a character cut at its end is left out."""

    def text(raw: bytes, codec: str) -> str:
        return str(codecs.getincrementaldecoder(codec)().decode(raw, final=final))

    if not spreadsheet:
        try:
            return text(data.removeprefix(codecs.BOM_UTF8), "utf-8"), "UTF-8"
        except UnicodeDecodeError as err:
            raise Q16Error(f"{path}: not a readable CSV (not UTF-8 text: {err.reason})") from err
    for bom, codec, name in _BOMS:
        if data.startswith(bom):
            try:
                return text(data[len(bom) :], codec), name
            except UnicodeDecodeError as err:
                raise Q16Error(f"{path}: not valid {name} text ({err.reason}); {SAVE_AS}") from err
    try:
        return text(data, "utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError as err:
        raise Q16Error(
            f"{path}: neither UTF-8, UTF-16 nor Windows-1252 text (byte {err.start}); {SAVE_AS}"
        ) from err


def read_sheet(
    path: Path,
    required: Iterable[str] = (),
    spreadsheet: bool = True,
    max_bytes: int | None = None,
    what: str = "review sheet",
) -> Sheet:
    """Every cell as the exact string stored ("" when empty). With ``required`` column names,
    the separator is the one of :data:`SEPARATORS` whose header has them all (else ``,``);
    ``spreadsheet``: the encodings spreadsheets save (:func:`decode`). A file that is not
    regular or holds more than ``max_bytes`` (default :data:`MAX_SHEET_BYTES`) is refused
    before it is read.

    Raises:
        Q16Error: unreadable, too large, not a regular file, empty, not text in an encoding
            spreadsheets write, not CSV.
    """
    cap = MAX_SHEET_BYTES if max_bytes is None else max_bytes
    data = read_user_bytes(Path(path), what, cap)
    text, encoding = decode(data, path, spreadsheet)
    separator = _separator(text, set(required))
    try:
        with _long_fields():
            # the python engine: the C engine cuts a cell at a NUL byte (pandas 2.x)
            frame = pd.read_csv(
                io.StringIO(text),
                sep=separator,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                engine="python",
            )
    except pd.errors.EmptyDataError as err:
        raise Q16Error(f"{path}: empty file, expected a CSV with a header line") from err
    except (pd.errors.ParserError, csv.Error, ValueError) as err:
        raise Q16Error(f"{path}: not a readable CSV ({_one_line(err)}); {SAVE_AS}") from err
    return Sheet(frame, encoding, separator)


HEADER_BYTES = 1 << 20
"""The most of a file read for its header line (:func:`read_header`)."""


def read_header(path: Path, required: Iterable[str] = (), spreadsheet: bool = True) -> list[str]:
    """The column names of a CSV, as :func:`read_sheet` reads them, from its first line only
    (at most :data:`HEADER_BYTES`): telling a sheet from a key list of 10^8 rows reads one
    line, and what is not a regular file (a FIFO, a device) is refused, never waited on.

    Raises:
        Q16Error: unreadable, not a regular file, empty, or a header line longer than
            :data:`HEADER_BYTES`.
    """
    try:  # O_NONBLOCK: opening a FIFO does not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as err:
        raise Q16Error(f"{path}: cannot read ({err.strerror or err})") from err
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Q16Error(f"{path}: not a regular file; q16 reads sheets from files only")
        data = handle.read(HEADER_BYTES)
    whole = len(data) < HEADER_BYTES
    text, _ = decode(data, path, spreadsheet, final=whole)
    if not whole and "\n" not in text:
        raise Q16Error(f"{path}: a header line longer than {HEADER_BYTES} bytes; {SAVE_AS}")
    separator = _separator(text, set(required))
    try:
        with _long_fields():
            # blank lines before the header are skipped, as read_sheet's parser skips them
            rows = csv.reader(io.StringIO(text), delimiter=separator)
            header = next((row for row in rows if row), [])
    except csv.Error as err:
        raise Q16Error(f"{path}: not a readable CSV ({_one_line(err)}); {SAVE_AS}") from err
    if not header:
        raise Q16Error(f"{path}: empty file, expected a CSV with a header line")
    return header


def read_text_csv(path: Path, restore_cells: Iterable[str] = ()) -> pd.DataFrame:
    """:func:`read_sheet`'s cells of a UTF-8 CSV (q16's own files, training CSVs);
    ``restore_cells`` columns are passed through :func:`restore`. Unreadable files are a
    one-line Q16Error."""
    frame = read_sheet(path, spreadsheet=False, max_bytes=MAX_CSV_BYTES, what="CSV").frame
    return restore_columns(frame, restore_cells)


def _separator(text: str, required: set[str]) -> str:
    if not required:
        return ","
    first = text.split("\n", 1)[0]
    for separator in SEPARATORS:
        try:
            header = next(csv.reader([first], delimiter=separator), [])
        except csv.Error:
            continue
        if required <= set(header):
            return separator
    return ","


@contextmanager
def _long_fields() -> Iterator[None]:
    """No cell length limit while reading (q16 caps its own fields; a long one must never make
    a run's files unreadable). Process-wide in the csv module, so restored afterwards."""
    old = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())[:300]
