"""Documentation for humans from an inference out_dir: review page, word cloud, Q16 draft.

Rendering only: ``write_report(out_dir)`` is what ``q16 report OUT`` and ``infer.report=true``
call. The review loop itself (sheet, audit, estimates, applying decisions, next batch) is
:mod:`q16.review`.
"""

from __future__ import annotations

from q16.report.build import ReportFiles, apply_review_files, write_report

__all__ = ["ReportFiles", "apply_review_files", "write_report"]
