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
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from q16.fileio import atomic_write_text
from q16.folders import check_folder, folder_lock, unwritable
from q16.outdir import LOGS_DIR
from q16.sources.base import Shard, is_remote


def check_out_dir(out: Path, shards: Sequence[Shard]) -> Path:
    """The resolved out_dir, if this run may write there (:func:`q16.folders.check_folder`).

    Raises:
        Q16Error: a file, a directory that is not q16's, or overlapping an input.
    """
    local = [s.source for s in shards if not is_remote(s.source)]
    return check_folder(out, local, "infer.out_dir")


def out_dir_lock(out: Path) -> AbstractContextManager[None]:
    """Hold the out_dir for this run (:func:`q16.folders.folder_lock`)."""
    return folder_lock(out, "infer.out_dir")


@contextmanager
def run_log(out: Path, config_yaml: str) -> Iterator[Path]:
    """``logs/infer-<time>.yaml`` (the resolved config) and ``.log`` (this run's log records),
    inside the out_dir: what Hydra would otherwise write under the working directory."""
    folder = out / LOGS_DIR
    stem = f"infer-{dt.datetime.now():%Y-%m-%d_%H-%M-%S}-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / f"{stem}.yaml", config_yaml)
        handler = logging.FileHandler(folder / f"{stem}.log", encoding="utf-8")
    except (OSError, ValueError) as err:  # a full disk, a logs/ that is a file
        raise unwritable(out, "infer.out_dir", err) from None
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield folder / f"{stem}.log"
    finally:
        root.removeHandler(handler)
        handler.close()
