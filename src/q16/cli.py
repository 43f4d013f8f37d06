"""``q16``: the curator's command, one subcommand per step of the review loop.

    q16 report OUT              report.html, flagged_classes.png, datasheet_q16.md, review.csv
    q16 audit OUT -n 400        the same page, review.csv = a stratified audit sample (+ audit.json)
    q16 apply OUT review.csv    keys_remove.csv, keys_keep.csv (+ estimates.json for an audit)
    q16 next OUT -n 50          review_next.csv: unreviewed images worth deciding next
    q16 release OUT DEST        DEST/*.tar: the dataset with the faces the run found blurred
    q16 remove OUT --photos D   removal.html, candidates.csv, keys_remove.csv: copies of a request

Each subcommand takes only its own options (argparse refuses the others). ``docs/review.md``
walks through the loop; training on the decisions is ``python train.py data=review``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from q16.errors import Q16Error, exit_on_user_error

Handler = Callable[[argparse.Namespace], None]


def _report(args: argparse.Namespace) -> None:
    from q16.report import write_report

    files = write_report(
        args.out_dir, args.report_dir, max_images=args.max_images, show_nudity=args.show_nudity
    )
    _print_report(files)


def _audit(args: argparse.Namespace) -> None:
    from q16.report import write_report

    files = write_report(
        args.out_dir,
        args.report_dir,
        max_images=args.max_images,
        audit=args.n,
        seed=args.seed,
        strata=args.strata,
        show_nudity=args.show_nudity,
    )
    _print_report(files)


def _apply(args: argparse.Namespace) -> None:
    from q16.report import apply_review_files

    print(apply_review_files(args.out_dir, args.review, args.keys_dir).describe())


def _next(args: argparse.Namespace) -> None:
    from q16.review import load_run, write_next_batch

    print(write_next_batch(load_run(args.out_dir), args.n, args.seed).describe())


def _release(args: argparse.Namespace) -> None:
    from q16.privacy.commands import release

    print(release(args.out_dir, args.dest, args.head, args.keep_unscored, args.boxes))


def _remove(args: argparse.Namespace) -> None:
    from q16.privacy.commands import remove

    files = remove(
        args.out_dir, args.dest, args.photos, args.sha256, args.keys, args.pdq, args.cosine
    )
    print(files.describe())


def _print_report(files: object) -> None:
    for label, name in (
        ("report", "html"),
        ("word cloud", "word_cloud"),
        ("datasheet draft", "datasheet"),
        ("review sheet", "review"),
    ):
        print(f"{label}: {getattr(files, name)}")


def _positive(text: str) -> int:
    """A count of at least 1 (argparse says what is wrong in one line)."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least 1")
    return value


def _non_negative(text: str) -> int:
    """A distance of 0 or more."""
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of 0 or more")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _cosine(text: str) -> float:
    """A cosine similarity threshold, in [-1, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: a cosine lies between -1 and 1")
    return value


def _page_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--report-dir",
        type=Path,
        help="write the files here instead of into OUT: a new, empty or q16's folder",
    )
    parser.add_argument(
        "--show-nudity",
        action="store_true",
        help="show thumbnails a nudity head flagged as they are (default: blurred in the page)",
    )
    parser.add_argument(
        "--max-images", type=_positive, default=500, help="thumbnails in the page (default 500)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line; a new step is one subparser here and one handler above."""
    from q16.review.audit import DEFAULT_STRATA

    parser = argparse.ArgumentParser(
        prog="q16", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    steps = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def step(name: str, handler: Handler, summary: str, writes: str) -> argparse.ArgumentParser:
        sub = steps.add_parser(
            name, help=summary, description=f"{summary[0].upper()}{summary[1:]}. Writes {writes}"
        )
        sub.add_argument(
            "out_dir", metavar="OUT", type=Path, help="an inference out_dir (holds summary.json)"
        )
        sub.set_defaults(handler=handler)
        return sub

    report = step(
        "report",
        _report,
        "the review page and sheet of the flagged images",
        "report.html, flagged_classes.png, datasheet_q16.md and review.csv (the flagged images, "
        "highest score first, with an empty decision column) into OUT or --report-dir.",
    )
    _page_options(report)

    audit = step(
        "audit",
        _audit,
        "an audit sample for estimates with confidence intervals",
        "report.html (with the audit's design), flagged_classes.png, datasheet_q16.md and "
        "review.csv holding a stratified random sample of -n scored images (the flagged "
        "stratum and --strata score strata below the threshold), with audit.json (the design) "
        "beside it, into OUT or --report-dir.",
    )
    audit.add_argument("-n", type=_positive, required=True, help="images in the audit sample")
    audit.add_argument(
        "--seed", type=_non_negative, default=0, help="the sample's random seed (default 0)"
    )
    audit.add_argument(
        "--strata",
        type=_positive,
        default=DEFAULT_STRATA,
        help=f"score strata below the threshold (default {DEFAULT_STRATA})",
    )
    _page_options(audit)

    apply = step(
        "apply",
        _apply,
        "apply a filled-in review sheet",
        "keys_remove.csv (images decided remove) and keys_keep.csv (every other scored image) "
        "and, for an audit sheet, estimates.json and datasheet_q16.md (with the estimates): "
        "into --keys-dir, else beside the sheet when that folder is q16's, else into OUT.",
    )
    apply.add_argument("review", type=Path, help="the filled-in review.csv (or review_next.csv)")
    apply.add_argument(
        "--keys-dir", type=Path, help="where the files go: a new, empty or q16's folder"
    )

    batch = step(
        "next",
        _next,
        "the images to review next",
        "review_next.csv (or review_next-2.csv, ... when taken) into OUT: -n images without a "
        "decision in any review*.csv of the run, near the threshold and unlike each other.",
    )
    batch.add_argument("-n", type=_positive, required=True, help="images in the batch")
    batch.add_argument(
        "--seed",
        type=_non_negative,
        default=0,
        help="seed of the random draws and ties (default 0)",
    )
    _privacy_steps(step)
    return parser


def _privacy_steps(step: Callable[..., argparse.ArgumentParser]) -> None:
    """``release`` and ``remove`` (docs/privacy.md)."""
    from q16.privacy import COSINE_THRESHOLD, PDQ_THRESHOLD

    release = step(
        "release",
        _release,
        "a copy of the dataset with the faces blurred",
        "DEST/<shard>.tar per scored shard: same keys and members, the faces found by the "
        "run's detector head blurred (nothing is detected again), every other member byte for "
        "byte; DEST/omitted.csv lists samples and second image members the run did not score "
        "(left out), "
        "DEST/release.json the totals. Resumable: finished shards are kept.",
    )
    release.add_argument("dest", type=Path, help="a new (or this release's) folder")
    release.add_argument("--head", default="faces", help="the detector head (default faces)")
    release.add_argument(
        "--keep-unscored",
        action="store_true",
        help="copy unscored samples and image members UNBLURRED (original pixels, faces too)",
    )
    release.add_argument(
        "--boxes", type=Path, help="also write the boxes as parquet (img2dataset, DataComp)"
    )
    remove = step(
        "remove",
        _remove,
        "find the copies of what a person asked to have removed",
        "removal.html (each candidate beside the request), candidates.csv and keys_remove.csv "
        "(shard,key of every candidate: strike the wrong ones) into OUT/removal or --dest.",
    )
    remove.add_argument("--photos", type=Path, help="a folder of the person's photos")
    remove.add_argument("--sha256", type=Path, help="a file of sha256 values, one per line")
    remove.add_argument("--keys", type=Path, help="a file of dataset keys or URLs, one per line")
    remove.add_argument("--dest", type=Path, help="where the files go (default OUT/removal)")
    remove.add_argument(
        "--pdq",
        type=_non_negative,
        default=PDQ_THRESHOLD,
        help=f"PDQ match distance in bits (default {PDQ_THRESHOLD}, measured)",
    )
    remove.add_argument(
        "--cosine",
        type=_cosine,
        default=COSINE_THRESHOLD,
        help=f"CLIP cosine match (default {COSINE_THRESHOLD}; with saved embeddings)",
    )


def main(argv: Sequence[str] | None = None) -> None:
    """``q16 COMMAND OUT ...``; a user error is one line on stderr and exit status 2.

    Every command holds OUT's lock while it runs (a second command, or an inference run
    still writing OUT, is refused at once); a folder that is not an out_dir is not locked,
    so nothing is left in it. A file that cannot be written (a full disk, a
    folder turned read-only) is one line too: nothing is left half-written.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with exit_on_user_error(), _holding(args.out_dir):
        try:
            args.handler(args)
        except OSError as err:
            where = f": {err.filename}" if err.filename else ""
            raise Q16Error(f"cannot write{where} ({err.strerror or err})") from err


@contextmanager
def _holding(out_dir: Path) -> Iterator[None]:
    """OUT's lock, when OUT is an out_dir (holds summary.json); else the command says what is
    wrong with it, and nothing is left in the folder (a lock file would mark a mistyped
    ``q16 report ~/Documents`` as q16's, to be written into later)."""
    from q16.outdir import SUMMARY_FILE

    if not (out_dir.expanduser() / SUMMARY_FILE).is_file():
        yield
        return
    from q16.folders import folder_lock

    with folder_lock(out_dir.expanduser(), "OUT"):
        yield


if __name__ == "__main__":
    main()
