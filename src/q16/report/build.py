"""Write every human-facing file for one inference out_dir: each atomically (a reader sees the
old file or the whole new one), into a folder that may take them (:mod:`q16.report.targets`),
and never over a sheet or an audit design that may hold a curator's decisions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from q16.errors import Q16Error
from q16.fileio import atomic_write_text
from q16.report import datasheet, page, targets, thumbnails
from q16.report.audit_page import AuditView
from q16.report.drafts import check_draft_replaceable, write_draft
from q16.review import apply, sheet
from q16.review.audit import DEFAULT_STRATA, check_audit_settings
from q16.review.audit_files import check_audit_replaceable, write_audit
from q16.review.run import InferenceRun, coverage, load_run, per_class_table
from q16.review.versions import shard_versions

log = logging.getLogger(__name__)

DATASHEET = "datasheet_q16.md"


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
    show_nudity: bool = False,
) -> ReportFiles:
    """``report.html``, ``flagged_classes.png``, ``datasheet_q16.md`` and ``review.csv``.

    Args:
        out_dir: an inference out_dir (see :mod:`q16.review.run` for what it must hold).
        report_dir: where to write (default ``out_dir`` itself): a new, empty or q16's
            folder outside the run's inputs.
        max_images: thumbnails embedded in the page (highest scores first); every flagged image
            is in ``review.csv`` regardless. Each thumbnail adds about 10 kB to the page.
        thumbnail_size: longest side of a thumbnail in pixels.
        audit: draw an audit sample of this many images (``q16.review.audit``): review.csv
            then holds the sample, with ``audit.json`` beside it; None: the flagged images.
        seed: the audit's random seed (recorded in ``audit.json``).
        strata: score strata below the threshold.
        show_nudity: embed the thumbnails of images a nudity head flagged as they are; by
            default they are blurred in their pixels, so the page can be shared.

    Raises:
        Q16Error: ``out_dir`` is missing or not a finished inference out_dir, ``report_dir``
            may not take the files, or its ``review.csv`` (or an earlier audit's sheet) may
            hold a curator's decisions (never overwritten).
    """
    run = load_run(out_dir)
    if audit is not None:
        check_audit_settings(audit, seed, strata)
    target = targets.chosen_folder(run, report_dir, "--report-dir")
    with targets.writing_into(run, target, "--report-dir"):
        # under the folder's lock, before any work and any write: nothing that may hold
        # decisions is replaced (a command writing there meanwhile is refused by the lock)
        sheet.check_replaceable(target / "review.csv")
        check_draft_replaceable(target / DATASHEET)
        if audit is not None:
            check_audit_replaceable(target)
        return _write(run, target, max_images, thumbnail_size, audit, seed, strata, show_nudity)


def _write(
    run: InferenceRun,
    target: Path,
    max_images: int,
    thumbnail_size: int,
    audit: int | None,
    seed: int,
    strata: int,
    show_nudity: bool,
) -> ReportFiles:
    from q16.report import charts  # matplotlib and wordcloud: only when drawing

    per_class = per_class_table(run)
    shown = run.flagged.head(max_images)
    rows = shown[["key", "source", "file_name"]].to_dict(orient="records")
    hidden_by = () if show_nudity else thumbnails.nudity_heads(run.summary)
    blur = thumbnails.blur_mask(shown.to_dict(orient="records"), hidden_by)
    uris = thumbnails.collect_thumbnails(rows, run.out_dir, thumbnail_size, run.max_bytes, blur)
    scores = run.scores(("p_inappropriate",))["p_inappropriate"].to_numpy(dtype=float)
    counts = coverage(run, scores)
    if not counts.complete:
        log.warning(counts.warning())
    audit_view = None
    if audit is not None:  # review.csv and audit.json: the earlier audit's are superseded
        plan, sample = write_audit(run, target, audit, seed, strata)
        head = sample.head(max_images)
        records = head[["key", "source", "file_name"]].to_dict("records")
        sample_blur = thumbnails.blur_mask(head.to_dict("records"), hidden_by)
        blur = blur + sample_blur
        sample_uris = thumbnails.collect_thumbnails(
            records, run.out_dir, thumbnail_size, run.max_bytes, sample_blur
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
        versions=shard_versions(run.score_files),
        blurred=tuple(blur),
        nudity_heads=thumbnails.nudity_heads(run.summary),
        show_nudity=show_nudity,
    )
    files = ReportFiles(
        html=target / "report.html",
        word_cloud=target / "flagged_classes.png",
        datasheet=target / DATASHEET,
        review=target / "review.csv",
    )
    atomic_write_text(files.html, page.render_page(inputs))
    charts.class_word_cloud(per_class, files.word_cloud)
    write_draft(files.datasheet, datasheet.datasheet_markdown(run, counts, per_class))
    if audit is None:
        sheet.write_review(run, files.review)
    log.info("report for %s written to %s", run.out_dir, target)
    return files


def apply_review_files(
    out_dir: str | Path, review_path: str | Path, keys_dir: str | Path | None = None
) -> apply.ReviewOutcome:
    """Apply a review: the key lists and, for an audit review, ``estimates.json`` and a
    ``datasheet_q16.md`` that states the estimates, into ``keys_dir`` (default: beside the
    review when that folder is q16's, else the out_dir; see :mod:`q16.report.targets`)."""
    run = load_run(out_dir)
    review = Path(review_path).expanduser()
    target = targets.keys_folder(run, review, keys_dir)
    with targets.writing_into(run, target, "--keys-dir"):
        if _is_audit_sheet(review):  # its estimates go into the draft: checked before writing
            check_draft_replaceable(target / DATASHEET)
        outcome = apply.apply_review(run, review, target)
        if outcome.estimates is not None:
            write_datasheet(run, target, outcome)
    return outcome


def _is_audit_sheet(review: Path) -> bool:
    try:
        return "stratum" in sheet.read_review_header(review)
    except Q16Error:
        return False  # apply_review says what is wrong with it


def write_datasheet(run: InferenceRun, target: Path, outcome: apply.ReviewOutcome) -> Path:
    """``datasheet_q16.md`` with the audit's estimates paragraph."""
    scores = run.scores(("p_inappropriate",))["p_inappropriate"].to_numpy(dtype=float)
    text = datasheet.datasheet_markdown(
        run, coverage(run, scores), per_class_table(run), estimates=outcome.estimates
    )
    return write_draft(target / DATASHEET, text)
