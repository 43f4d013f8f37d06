"""Documentation for humans from an inference out_dir: review page, word cloud, Q16 draft.

``write_report(out_dir)`` is what ``scripts/report.py OUT_DIR`` and ``infer.report=true`` call;
``apply_review`` turns a curator's filled-in ``review.csv`` into key lists.
"""

from __future__ import annotations

from q16.report.build import ReportFiles, apply_review_files, write_report
from q16.report.inputs import InferenceRun, load_run
from q16.report.review import ReviewOutcome, apply_review

__all__ = [
    "InferenceRun",
    "ReportFiles",
    "ReviewOutcome",
    "apply_review",
    "apply_review_files",
    "load_run",
    "write_report",
]
