"""Write every human-facing file for one inference out_dir."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from q16.report import datasheet, page, thumbnails
from q16.report.audit_page import AuditView
from q16.review import apply, sheet
from q16.review.audit import DEFAULT_STRATA, check_audit_settings
from q16.review.audit_files import AUDIT_FILE, write_audit
from q16.review.run import InferenceRun, coverage, load_run, per_class_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportFiles:
    """Where the report went."""

    html: Path
    word_cloud: Path
    datasheet: Path
    review: Path


def write_report(
    out_dir: str | Path,
    report_dir: str | Path | None = None,
    max_images: int = 500,
    thumbnail_size: int = 192,
    audit: int | None = None,
    seed: int = 0,
    strata: int = DEFAULT_STRATA,
) -> ReportFiles:
    """``report.html``, ``flagged_classes.png``, ``datasheet_q16.md`` and ``review.csv``.

    Args:
        out_dir: an inference out_dir (see :mod:`q16.review.run` for what it must hold).
        report_dir: where to write; defaults to ``out_dir`` itself.
        max_images: thumbnails embedded in the page (highest scores first); every flagged image
            is in ``review.csv`` regardless. Each thumbnail adds about 10 kB to the page.
        thumbnail_size: longest side of a thumbnail in pixels.
        audit: draw an audit sample of this many images (``q16.review.audit``): review.csv
            then holds the sample, with ``audit.json`` beside it; None: the flagged images.
        seed: the audit's random seed (recorded in ``audit.json``).
        strata: score strata below the threshold.

    Raises:
        Q16Error: ``out_dir`` is missing or not a finished inference out_dir, or its
            ``review.csv`` already holds a curator's decisions (never overwritten).
    """
    from q16.report import charts  # matplotlib and wordcloud: only when drawing

    run = load_run(out_dir)
    if audit is not None:
        check_audit_settings(audit, seed, strata)
    target = Path(report_dir).expanduser() if report_dir else run.out_dir
    sheet.check_not_filled_in(target / "review.csv")  # before any work, and before any write
    target.mkdir(parents=True, exist_ok=True)
    per_class = per_class_table(run)

    shown = run.flagged.head(max_images)
    rows = shown[["key", "source", "file_name"]].to_dict(orient="records")
    uris = thumbnails.collect_thumbnails(rows, run.out_dir, thumbnail_size, run.max_bytes)
    scores = run.scores(("p_inappropriate",))["p_inappropriate"].to_numpy(dtype=float)
    counts = coverage(run, scores)
    if not counts.complete:
        log.warning(counts.warning())
    audit_view = None
    for stale in (AUDIT_FILE, "estimates.json"):  # from an earlier audit of this directory
        (target / stale).unlink(missing_ok=True)
    if audit is not None:
        plan, sample = write_audit(run, target, audit, seed, strata)
        records = sample.head(max_images)[["key", "source", "file_name"]].to_dict("records")
        sample_uris = thumbnails.collect_thumbnails(
            records, run.out_dir, thumbnail_size, run.max_bytes
        )
        audit_view = AuditView(plan, sample, sample_uris, max_images)
    inputs = page.PageInputs(
        run=run,
        coverage=counts,
        per_class=per_class,
        thumbnails=uris,
        class_chart_png=charts.class_bar_chart(per_class),
        histogram_png=charts.score_histogram(scores, run.threshold),
        max_images=max_images,
        audit=audit_view,
    )
    files = ReportFiles(
        html=target / "report.html",
        word_cloud=target / "flagged_classes.png",
        datasheet=target / "datasheet_q16.md",
        review=target / "review.csv",
    )
    files.html.write_text(page.render_page(inputs), encoding="utf-8")
    charts.class_word_cloud(per_class, files.word_cloud)
    files.datasheet.write_text(
        datasheet.datasheet_markdown(run, counts, per_class), encoding="utf-8"
    )
    if audit is None:
        sheet.write_review(run, files.review)
    log.info("report for %s written to %s", run.out_dir, target)
    return files


def apply_review_files(
    out_dir: str | Path, review_path: str | Path, keys_dir: str | Path | None = None
) -> apply.ReviewOutcome:
    """Apply a review (key lists); for an audit review also ``estimates.json`` and a
    ``datasheet_q16.md`` beside the review that states the estimates."""
    run = load_run(out_dir)
    outcome = apply.apply_review(run, review_path, Path(keys_dir) if keys_dir else None)
    if outcome.estimates is not None:
        write_datasheet(run, Path(review_path).expanduser().parent, outcome)
    return outcome


def write_datasheet(run: InferenceRun, target: Path, outcome: apply.ReviewOutcome) -> Path:
    """``datasheet_q16.md`` with the audit's estimates paragraph."""
    scores = run.scores(("p_inappropriate",))["p_inappropriate"].to_numpy(dtype=float)
    path = target / "datasheet_q16.md"
    text = datasheet.datasheet_markdown(
        run, coverage(run, scores), per_class_table(run), estimates=outcome.estimates
    )
    path.write_text(text, encoding="utf-8")
    return path
