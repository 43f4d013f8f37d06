"""User-facing errors: one line that says what to do, and a non-zero exit."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class Q16Error(Exception):
    """An error the user can fix (bad path, missing weights, mismatched prompt file).

    Internal bugs raise ordinary exceptions and keep their traceback.
    """


@contextmanager
def exit_on_user_error(exit_code: int = 2) -> Iterator[None]:
    """Turn a Q16Error into one line on stderr and a non-zero exit, at the CLI edge only."""
    try:
        yield
    except Q16Error as err:
        print(f"q16: error: {err}", file=sys.stderr)
        sys.exit(exit_code)
