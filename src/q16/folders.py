"""Folders q16 writes into: new, empty or q16's, apart from the inputs, one user at a time.

A q16 run or command writes only into a folder that is q16's: missing, empty, or marked by q16
(its lock file or ``fingerprint.json``). A folder holding anything else is refused, so that
nothing of another program's (or the user's) is overwritten or mixed into the results. Inputs
and outputs stay apart: a folder inside a scored input folder, or holding an input, is refused.
One writer at a time: a second one on a locked folder is refused at once, as one line. The
rule is ``infer.out_dir``'s (``q16.inference.guard``) and the report's ``--report-dir`` and
``--keys-dir``'s (``q16.report.targets``).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from q16.errors import Q16Error
from q16.outdir import FINGERPRINT_FILE, LOCK_FILE


def check_folder(out: Path, inputs: Iterable[str], option: str) -> Path:
    """The resolved folder, if q16 may write there; ``inputs`` are the local input paths,
    ``option`` names the setting in messages.

    Raises:
        Q16Error: a file, a directory that is not q16's, or overlapping an input.
    """
    try:
        out = out.expanduser().resolve()
        exists = out.exists()
    except (OSError, ValueError) as err:  # a name too long, a NUL byte, a loop of links
        raise unwritable(out, option, err) from None
    name = f"{option}={str(out)!r}"
    if exists and not out.is_dir():
        raise Q16Error(f"{name} is a file, not a directory; pass a directory for the outputs")
    if out.is_dir():
        try:
            entries = {p.name for p in out.iterdir()}
        except OSError as err:
            raise Q16Error(f"{name} cannot be listed ({err.strerror or err})") from None
        if entries and not entries & {LOCK_FILE, FINGERPRINT_FILE}:
            shown = ", ".join(sorted(entries)[:3])
            raise Q16Error(
                f"{name} is a non-empty directory that q16 did not make ({shown}...); "
                f"pass a new or empty {option}, so that nothing in it is overwritten"
            )
    for source in set(inputs):
        path = Path(source).expanduser().resolve()
        if path.is_dir() and out.is_relative_to(path):
            raise Q16Error(
                f"{name} is inside the input folder {str(path)!r}: its outputs would become "
                f"inputs; pass an {option} outside it"
            )
        if path.is_relative_to(out):
            raise Q16Error(
                f"{name} holds the input {str(path)!r}; pass an {option} that keeps "
                "outputs and inputs apart"
            )
    return out


def is_remote(spec: str) -> bool:
    """A URL or ``pipe:`` command (webdataset's), not a local path: never resolved or stat'ed."""
    return "://" in spec or spec.startswith("pipe:")


def unwritable(out: Path, option: str, err: OSError | ValueError) -> Q16Error:
    """The one line for a folder q16 cannot write (read-only, a file on its path, a name
    too long)."""
    why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return Q16Error(
        f"{option}={str(out)!r}: cannot write there ({type(err).__name__}: {why}); pass a "
        "writable folder"
    )


@contextmanager
def folder_lock(out: Path, option: str) -> Iterator[None]:
    """Hold ``out`` for this run or command; a second one gets a Q16Error at once, not a wait.

    An OS lock (``flock``, which NFSv4 carries across machines), released when the holder ends
    or its process dies, so a killed run never leaves the folder locked; the lock file stays
    as q16's mark on the directory. A folder q16 cannot write is one line, not a traceback
    (a read-only copy of a run, whose lock file is there, is locked read-only).
    """
    name = f"{option}={str(out)!r}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except (OSError, ValueError) as err:
        try:
            fd = os.open(out / LOCK_FILE, os.O_RDONLY)
        except (OSError, ValueError):
            raise unwritable(out, option, err) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Q16Error(
                f"{name} is in use by another q16 run or command; wait for it to finish or "
                f"pass another {option}"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock
