"""What an ``out_dir`` must be before a run writes into it, and the lock that keeps it one
run's.

A run writes only inside its ``infer.out_dir``, and only into one that is q16's: missing,
empty, or marked by q16 (its lock file or ``fingerprint.json``). A directory holding anything
else is refused, so that nothing of another program (or a stray parquet) is overwritten or
mixed into the results. Inputs and outputs stay apart: an out_dir inside a folder that is
scored (the report's images would become inputs) or holding an input is refused. One run at a
time: a second run on a locked out_dir is refused at once, as one line.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from q16.errors import Q16Error
from q16.outdir import FINGERPRINT_FILE, LOCK_FILE, LOGS_DIR
from q16.sources.base import Shard, is_remote


def check_out_dir(out: Path, shards: Sequence[Shard]) -> Path:
    """The resolved out_dir, if this run may write there.

    Raises:
        Q16Error: a file, a directory that is not q16's, or overlapping an input.
    """
    try:
        out = out.expanduser().resolve()
        exists = out.exists()
    except (OSError, ValueError) as err:  # a NUL byte, a loop of links, a name too long
        raise unwritable(out, err) from None
    name = f"infer.out_dir={str(out)!r}"
    if exists and not out.is_dir():
        raise Q16Error(f"{name} is a file, not a directory; pass a directory for the outputs")
    if out.is_dir():
        entries = {p.name for p in out.iterdir()}
        if entries and not entries & {LOCK_FILE, FINGERPRINT_FILE}:
            shown = ", ".join(sorted(entries)[:3])
            raise Q16Error(
                f"{name} is a non-empty directory that q16 did not make ({shown}...); "
                "pass a new or empty infer.out_dir, so that nothing in it is overwritten"
            )
    for source in {s.source for s in shards if not is_remote(s.source)}:
        path = Path(source).expanduser().resolve()
        if path.is_dir() and out.is_relative_to(path):
            raise Q16Error(
                f"{name} is inside the input folder {str(path)!r}: its outputs would become "
                "inputs; pass an infer.out_dir outside it"
            )
        if path.is_relative_to(out):
            raise Q16Error(
                f"{name} holds the input {str(path)!r}; pass an infer.out_dir that keeps "
                "outputs and inputs apart"
            )
    return out


def unwritable(out: Path, err: OSError | ValueError) -> Q16Error:
    """The one line for an out_dir q16 cannot write to (read-only, a file in its path, ...)."""
    why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return Q16Error(
        f"infer.out_dir={str(out)!r} cannot be written ({type(err).__name__}: {why}); pass "
        "an infer.out_dir in a folder you can write to"
    )


@contextmanager
def out_dir_lock(out: Path) -> Iterator[None]:
    """Hold the out_dir for this run; a second run gets a Q16Error at once, not a wait.

    An OS lock (``flock``, which NFSv4 carries across machines), released when the run ends
    or its process dies, so a killed run never leaves the out_dir locked; the lock file stays
    as q16's mark on the directory.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except (OSError, ValueError) as err:  # read-only, not permitted, a file on the way, NUL
        raise unwritable(out, err) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Q16Error(
                f"infer.out_dir={str(out)!r} is in use by another q16 run; wait for it to "
                "finish or pass another infer.out_dir"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def run_log(out: Path, config_yaml: str) -> Iterator[Path]:
    """``logs/infer-<time>.yaml`` (the resolved config) and ``.log`` (this run's log records),
    inside the out_dir: what Hydra would otherwise write under the working directory."""
    folder = out / LOGS_DIR
    stem = f"infer-{dt.datetime.now():%Y-%m-%d_%H-%M-%S}-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.yaml").write_text(config_yaml)
        handler = logging.FileHandler(folder / f"{stem}.log", encoding="utf-8")
    except (OSError, ValueError) as err:  # a full disk, a logs/ that is a file
        raise unwritable(out, err) from None
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield folder / f"{stem}.log"
    finally:
        root.removeHandler(handler)
        handler.close()
