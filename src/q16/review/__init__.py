"""The curator's review loop, from a scored run to decisions and back.

- :mod:`~q16.review.run`: an inference out_dir read back (what every step starts from).
- :mod:`~q16.review.sheet`: the review sheet written and read back (one reader).
- :mod:`~q16.review.match`: review rows matched to the run's images (one matcher).
- :mod:`~q16.review.audit` / :mod:`~q16.review.audit_files`: the audit sample's design.
- :mod:`~q16.review.estimates`: shares with 95 % intervals from an applied audit.
- :mod:`~q16.review.apply`: decisions turned into key lists (and estimates).
- :mod:`~q16.review.next_batch`: what to review next.

Rendering (report.html, charts, the datasheet) is :mod:`q16.report`; the command is
:mod:`q16.cli` (``q16 report|audit|apply|next``); ``docs/review.md`` walks through the loop.
"""

from __future__ import annotations

from q16.review.apply import ReviewOutcome, apply_review
from q16.review.next_batch import write_next_batch
from q16.review.run import InferenceRun, load_run

__all__ = ["InferenceRun", "ReviewOutcome", "apply_review", "load_run", "write_next_batch"]
