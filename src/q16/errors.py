"""User-facing errors: one line that says what to do, and a non-zero exit."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

log = logging.getLogger(__name__)


MAX_MESSAGE = 1000
"""Characters of a Q16Error message at most: a value quoted from a hostile file (a billion
laughs YAML, a megabyte field) never makes a message longer than a line on a screen."""


class Q16Error(Exception):
    """An error the user can fix (bad path, missing weights, mismatched prompt file).

    The message is one line of at most ``MAX_MESSAGE`` characters (line breaks of quoted
    values shown as ``\\n``, the middle of a long one cut). Internal bugs raise ordinary
    exceptions and keep their traceback.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(bounded(str(message)))


def bounded(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line and at most ``limit`` characters (its start and end kept)."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(text) <= limit:
        return text
    cut = " [...] "
    keep = limit - len(cut)
    return text[: keep * 3 // 4] + cut + text[len(text) - (keep - keep * 3 // 4) :]


@contextmanager
def exit_on_user_error(exit_code: int = 2) -> Iterator[None]:
    """Turn a Q16Error into one line on stderr and a non-zero exit, at the CLI edge only."""
    try:
        yield
    except Q16Error as err:
        print(f"q16: error: {err}", file=sys.stderr)
        sys.exit(exit_code)


def check_int(name: str, value: object, minimum: int, *, optional: bool = False) -> int | None:
    """``value`` as an int of at least ``minimum`` (``None`` allowed when ``optional``).

    Raises:
        Q16Error: a bool, a non-integral number, text, or too small.
    """
    if value is None and optional:
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if number is None or number < minimum:
        none = " or null" if optional else ""
        raise Q16Error(f"{name} must be an integer >= {minimum}{none}, not {value!r}")
    return number


def check_float(name: str, value: object, low: float, high: float | None = None) -> float:
    """``value`` as a finite float in ``[low, high]``.

    Raises:
        Q16Error: a bool, text, NaN or infinity, or out of range.
    """
    number = float("nan")
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    if not low <= number <= (high if high is not None else float("inf")) or number in (
        float("inf"),
        float("-inf"),
    ):
        within = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
        raise Q16Error(f"{name} must be a number {within}, not {value!r}")
    return number


def check_bool(name: str, value: object) -> bool:
    """``value`` if it is true or false (Hydra parses ``true``/``false``), else a Q16Error."""
    if not isinstance(value, bool):
        raise Q16Error(f"{name} must be true or false, not {value!r}")
    return value


def require_package(module: str, needed_by: str, extra: str) -> ModuleType:
    """Import an optional package, or say in one line which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise Q16Error(
            f"{needed_by} needs the package {module!r}: pip install q16[{extra}]"
        ) from None
