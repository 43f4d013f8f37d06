"""Human-facing documentation of an inference run.

    python scripts/report.py OUT_DIR                     # report.html, flagged_classes.png,
                                                         # datasheet_q16.md, review.csv
    python scripts/report.py OUT_DIR --audit 400 [--seed 0] [--strata 4]
                                                         # review.csv holds an audit sample
                                                         # over every scored image (+ audit.json)
    python scripts/report.py OUT_DIR --apply-review OUT_DIR/review.csv
                                                         # keys_remove.csv, keys_keep.csv; for an
                                                         # audit also estimates.json and the
                                                         # datasheet paragraph with intervals
    python scripts/report.py OUT_DIR --next-batch 50     # review_next.csv: unreviewed images
                                                         # near the threshold, diverse

``keys_remove.csv`` holds (shard, key) of the images a curator marked ``remove``;
``keys_keep.csv`` every other scored image (``unsure`` and blank rows stay in).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from q16.errors import exit_on_user_error
from q16.report import apply_review_files, load_run, write_report
from q16.report.audit import DEFAULT_STRATA
from q16.report.next_batch import write_next_batch


def build_parser() -> argparse.ArgumentParser:
    """The command line; a new option is one ``add_argument`` here and one branch in main."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("out_dir", type=Path, help="an inference out_dir (holds summary.json)")
    parser.add_argument("--report-dir", type=Path, help="write here instead of OUT_DIR")
    parser.add_argument("--max-images", type=int, default=500, help="thumbnails in the page")
    parser.add_argument(
        "--audit",
        type=int,
        metavar="N",
        help="review.csv holds a stratified random sample of N scored images (the flagged "
        "stratum and score strata below the threshold) for estimates with intervals",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="the audit's random seed; --next-batch's tie-break"
    )
    parser.add_argument(
        "--strata", type=int, default=DEFAULT_STRATA, help="audit strata below the threshold"
    )
    parser.add_argument(
        "--apply-review",
        type=Path,
        metavar="REVIEW_CSV",
        help="apply a filled-in review.csv: write keys_remove.csv and keys_keep.csv (and, for "
        "an audit, estimates.json and datasheet_q16.md beside it)",
    )
    parser.add_argument(
        "--keys-dir", type=Path, help="where the key lists go (default: beside the review)"
    )
    parser.add_argument(
        "--next-batch",
        type=int,
        metavar="N",
        help="write review_next.csv: N unreviewed images to review next (uncertain, diverse)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with exit_on_user_error():
        if args.apply_review:
            outcome = apply_review_files(args.out_dir, args.apply_review, args.keys_dir)
            print(outcome.describe())
            return
        if args.next_batch is not None:
            print(write_next_batch(load_run(args.out_dir), args.next_batch, args.seed).describe())
            return
        files = write_report(
            args.out_dir,
            args.report_dir,
            max_images=args.max_images,
            audit=args.audit,
            seed=args.seed,
            strata=args.strata,
        )
        print(f"report: {files.html}\nword cloud: {files.word_cloud}")
        print(f"datasheet draft: {files.datasheet}\nreview sheet: {files.review}")


if __name__ == "__main__":
    main()
