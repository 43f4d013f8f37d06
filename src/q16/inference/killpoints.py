"""Test-only seam: points where the writer can be made to die, to prove resume is exact.

The crash tests (tests/integration/test_infer_cli.py) launch ``infer.py`` with
``Q16_TEST_KILL=<point>:<n>``; the process then SIGKILLs itself at that point of its n-th
shard commit, as a preempted job would die: no ``finally``, no flush. Unset (always, outside
those tests) a kill point is one environment lookup and does nothing.
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "Q16_TEST_KILL"
"""``<point>:<n>``: SIGKILL this process at ``point`` of its n-th commit."""
BEFORE_PARQUET = "before_parquet"
"""Embeddings and error records written, the shard's parquet not yet renamed into place."""
AFTER_COMMIT = "after_commit"
"""The shard's parquet renamed into place: the shard is done."""


def kill_setting(point: str, commit: int) -> str:
    """The ``Q16_TEST_KILL`` value that kills at ``point`` of the ``commit``-th commit."""
    return f"{point}:{commit}"


def kill_point(point: str, commit: int) -> None:
    """SIGKILL ourselves if ``Q16_TEST_KILL`` names this point of this commit."""
    if os.environ.get(KILL_ENV) == kill_setting(point, commit):
        os.kill(os.getpid(), signal.SIGKILL)
