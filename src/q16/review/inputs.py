"""The local folders a run read its images from: what ``--report-dir``, ``--keys-dir`` and
``q16 remove --dest`` must stay out of (a file written there would be scored next)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from q16.folders import is_remote
from q16.review.run import InferenceRun


def input_folders(run: InferenceRun) -> list[str]:
    """The folders the run read images from: the inputs it recorded (``summary.json``
    ``inputs``: ``data.path``, the shard folders), and each scored tar's or image's folder (an
    image in ``/d/imgs/cat/`` must keep ``/d/imgs/report`` out, not only ``/d/imgs/cat/x``)."""
    sources: set[str] = set(_recorded_inputs(run))
    for path in run.score_files:
        try:
            column = pq.read_table(path, columns=["source"]).column("source")
        except Exception:  # a scores file without a readable source column names no input
            continue
        sources.update(str(s) for s in column.unique().to_pylist() if s)
    folders = set()
    for source in sources:
        if is_remote(source):
            continue
        path = Path(source).expanduser()
        folders.add(str(path if path.is_dir() else path.parent))
    return sorted(folders)


def _recorded_inputs(run: InferenceRun) -> list[str]:
    """The local entries of ``summary.json`` ``inputs`` (a hand-edited value names none)."""
    inputs = run.summary.get("inputs")
    if not isinstance(inputs, list):
        return []
    return [s for s in inputs if isinstance(s, str) and s and "\0" not in s]
