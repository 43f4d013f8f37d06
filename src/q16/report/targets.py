"""Where the curator's commands may write: the out_dir, or a folder that is new, empty or q16's.

``--report-dir`` and ``--keys-dir`` follow ``infer.out_dir``'s rule (:mod:`q16.folders`):
a folder holding anything q16 did not make is refused (nothing of the user's is overwritten),
and so is one inside a scored input folder or holding an input (nothing is written into the
inputs). A folder q16 writes into is locked while it writes, and its lock file marks it as
q16's. A path naming a file, or a folder q16 cannot write, is one line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from q16.errors import Q16Error
from q16.folders import check_folder, folder_lock
from q16.outdir import FINGERPRINT_FILE, LOCK_FILE
from q16.review.inputs import input_folders
from q16.review.run import InferenceRun


def is_q16_folder(folder: Path) -> bool:
    """A folder q16 made: an out_dir or a folder a q16 command wrote into (its lock file)."""
    return (folder / LOCK_FILE).is_file() or (folder / FINGERPRINT_FILE).is_file()


def chosen_folder(run: InferenceRun, folder: str | Path | None, option: str) -> Path:
    """``folder`` checked against the rule (None: the run's out_dir)."""
    if folder is None:
        return run.out_dir
    path = Path(folder).expanduser()
    if path.resolve() == run.out_dir.resolve():
        return run.out_dir
    return check_folder(path, input_folders(run), option)


def keys_folder(run: InferenceRun, review: Path, keys_dir: str | Path | None) -> Path:
    """``--keys-dir``, else beside the review when that folder is q16's, else the out_dir (a
    sheet saved from the page into a downloads folder does not put files there)."""
    if keys_dir is not None:
        return chosen_folder(run, keys_dir, "--keys-dir")
    beside = review.expanduser().parent
    return beside if is_q16_folder(beside) else run.out_dir


@contextmanager
def writing_into(run: InferenceRun, folder: Path, option: str) -> Iterator[Path]:
    """Hold ``folder`` while writing (the out_dir itself is the command's to lock)."""
    with ExitStack() as stack:
        if folder.resolve() != run.out_dir.resolve():
            stack.enter_context(folder_lock(folder, option))
        if not os.access(folder, os.W_OK):
            raise Q16Error(f"{option}={str(folder)!r}: cannot write there; pass a writable folder")
        yield folder
