"""The audit on disk: ``review.csv`` rows for the sample and ``audit.json`` beside it.

``review.csv`` stays a plain table: the audit adds the columns ``stratum``, ``stratum_size``
and ``inclusion_probability`` to each row. ``audit.json`` records the design (seed, size,
strata bounds and sizes), the sampled images and the identity of the run they were drawn
from, so ``q16 apply`` can refuse a review that belongs to another run or another audit.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from q16.errors import Q16Error
from q16.fileio import atomic_path
from q16.outdir import FINGERPRINT_FILE, FLAGGED_COLUMNS, META_PREFIX, UNKNOWN_CLASS
from q16.review.audit import FLAGGED, AuditPlan, AuditSample, design_audit
from q16.review.estimates import Estimates, estimate
from q16.review.match import Image, show
from q16.review.questions import EXTRA_QUESTIONS, PERSON, asks_person
from q16.review.run import InferenceRun, carried_columns, is_head_column
from q16.review.sheet import check_replaceable, read_review_header, with_versions, write_sheet
from q16.review.versions import shard_versions
from q16.text import clean

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.json"
AUDIT_FORMAT = 1


def run_identity(run: InferenceRun, n_scores: int) -> str:
    """What the scores were made from (fingerprint.json), their threshold and their number,
    and the version of every shard (a shard scored again is another run's)."""
    digest = hashlib.sha256()
    fingerprint = run.out_dir / FINGERPRINT_FILE
    digest.update(fingerprint.read_bytes() if fingerprint.is_file() else b"")
    digest.update(f"|{run.threshold!r}|{n_scores}|".encode())
    digest.update("|".join(p.name for p in run.score_files).encode())
    versions = shard_versions(run.score_files)
    digest.update("|".join(f"{s}={v}" for s, v in sorted(versions.items())).encode())
    return digest.hexdigest()[:16]


def _threshold(run: InferenceRun) -> float:
    if not np.isfinite(run.threshold):
        raise Q16Error(f"{run.out_dir}: summary.json has no numeric threshold; cannot stratify")
    return run.threshold


def draw_audit(run: InferenceRun, n: int, seed: int, n_strata: int) -> AuditSample:
    """The sample over every scored image of ``run`` (scores read column-wise)."""
    scores = run.scores(("p_inappropriate",))["p_inappropriate"].to_numpy(dtype=np.float64)
    sample = design_audit(scores, _threshold(run), n, seed=seed, n_strata=n_strata)
    plan = sample.plan
    identity = run_identity(run, scores.size)
    return AuditSample(
        AuditPlan(
            plan.requested, plan.seed, plan.threshold, plan.strata, plan.flagged_share, identity
        ),
        sample.index,
        sample.stratum,
    )


def sampled_rows(run: InferenceRun, index: np.ndarray) -> pd.DataFrame:
    """The score rows at global positions ``index`` (in that order), reading only those."""
    starts = np.cumsum([0] + [pq.ParquetFile(p).metadata.num_rows for p in run.score_files])
    parts, order = [], []
    for f, path in enumerate(run.score_files):
        mine = np.flatnonzero((index >= starts[f]) & (index < starts[f + 1]))
        if not mine.size:
            continue
        names = pq.read_schema(path).names
        columns = [
            c
            for c in names
            if c in FLAGGED_COLUMNS or c.startswith(META_PREFIX) or is_head_column(c)
        ]
        table = pq.read_table(path, columns=columns)
        parts.append(table.take(pa.array(index[mine] - starts[f])).to_pandas())
        order.append(mine)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    frame.index = np.concatenate(order) if order else []
    frame = frame.sort_index().reset_index(drop=True)
    frame = frame.reindex(columns=[*FLAGGED_COLUMNS, *carried_columns(frame)])
    frame["class_name"] = frame["class_name"].where(frame["class_name"].notna(), UNKNOWN_CLASS)
    return frame


def _meta(frame: pd.DataFrame) -> list[str]:
    return [str(c) for c in frame.columns if str(c).startswith(META_PREFIX)]


def write_audit(
    run: InferenceRun, target: Path, n: int, seed: int, n_strata: int
) -> tuple[AuditPlan, pd.DataFrame]:
    """``review.csv`` holding the audit sample (flagged stratum first, then by score) and
    ``audit.json``; says so when the audit takes every scored image. Returns the plan and the
    review's rows."""
    sample = draw_audit(run, n, seed, n_strata)
    plan = sample.plan
    versions = shard_versions(run.score_files)
    rows = sampled_rows(run, sample.index)
    strata = plan.strata
    rows.insert(0, "inclusion_probability", sample.inclusion_probability)
    rows.insert(0, "stratum_size", [strata[h].size for h in sample.stratum])
    rows.insert(0, "stratum", [strata[h].name for h in sample.stratum])
    rows.insert(0, "decision", "")
    if asks_person(run.summary):  # a second question, answered on the same sample
        rows.insert(1, PERSON.column, "")
    rows["note"] = ""
    rows["_h"] = sample.stratum
    rows = rows.sort_values(["_h", "p_inappropriate"], ascending=[True, False], kind="stable")
    record = {
        "format": AUDIT_FORMAT,
        **plan.to_json(),
        "shard_versions": versions,
        "sample": {
            "shard": rows["shard"].astype(str).tolist(),
            "key": rows["key"].astype(str).tolist(),
            "stratum": rows["_h"].astype(int).tolist(),
            "class_name": rows["class_name"].astype(str).tolist(),
        },
    }
    rows = with_versions(rows.drop(columns="_h"), versions)
    write_sheet(rows, target / "review.csv", _meta(rows), "%.6g")
    with atomic_path(target / AUDIT_FILE) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    if plan.all_taken:
        log.warning(
            "audit of %d images asked for, the run has %d scored images: all of them are in "
            "the audit (every inclusion probability is 1)",
            n,
            plan.population,
        )
    return plan, rows


def check_audit_replaceable(folder: Path, sheet_name: str = "review.csv") -> None:
    """A new audit replaces ``audit.json`` only when no sheet beside it could still be applied
    with it: every CSV there with a ``stratum`` column (the old audit's sheet, perhaps renamed
    once filled in) must be q16's own blank sheet, and none may be unreadable. Only each
    file's header line is read to tell (``keys_keep.csv`` may list 10^8 images).

    Raises:
        Q16Error: naming the sheet that may hold the old audit's decisions.
    """
    if not (folder / AUDIT_FILE).exists():
        return
    for path in sorted(folder.glob("*.csv"))[:10_000]:
        if not path.is_file():  # a FIFO or a device is nobody's sheet, and never waited on
            continue
        try:
            columns = read_review_header(path)
        except Q16Error:
            columns = ["stratum"]  # cannot tell: it may be the old audit's
        if "stratum" not in columns:
            continue
        try:
            check_replaceable(path)
        except Q16Error as err:
            raise Q16Error(
                f"{folder / AUDIT_FILE} is the design of an earlier audit whose sheet "
                f"{path.name} may hold decisions ({err}); apply that sheet first, or pass "
                "--report-dir for the new audit"
            ) from None


@dataclass(frozen=True)
class LoadedAudit:
    """``audit.json`` read back: the design and each sampled image's stratum and class."""

    plan: AuditPlan
    stratum: dict[Image, int]
    class_name: dict[Image, str]


def load_audit(path: Path, run: InferenceRun, n_scores: int) -> LoadedAudit:
    """``audit.json``, checked against ``run``; every problem is one line."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        plan = AuditPlan.from_json(record)
        sample = record["sample"]
        images = list(zip(map(str, sample["shard"]), map(str, sample["key"]), strict=True))
        strata = [int(h) for h in sample["stratum"]]
        classes = [str(c) for c in sample["class_name"]]
    except (OSError, ValueError, KeyError, TypeError, OverflowError, RecursionError) as err:
        raise Q16Error(
            f"{path}: not an audit.json q16 wrote ({type(err).__name__}: {err})"
            "; write a new audit with q16 audit OUT -n N"
        ) from err
    if record.get("format") != AUDIT_FORMAT:
        raise Q16Error(
            f"{path}: audit format {record.get('format')!r}, this q16 reads "
            f"{AUDIT_FORMAT}; write a new audit with q16 audit OUT -n N"
        )
    recorded = record.get("shard_versions")
    if isinstance(recorded, dict):
        now = shard_versions(run.score_files)
        changed = sorted(s for s in set(recorded) & set(now) if recorded[s] != now[s])
        if changed:
            raise Q16Error(
                f"{path}: {len(changed)} shard(s) were scored again since this audit was drawn "
                f"(e.g. {clean(changed[0], 60)!r}: other images may stand under its keys); its "
                "decisions no longer name what was reviewed: write a new audit with "
                "q16 audit OUT -n N"
            )
    if plan.run_id != run_identity(run, n_scores):
        raise Q16Error(
            f"{path}: this audit was drawn from another run than {run.out_dir} (run id "
            f"{plan.run_id[:16]!r} differs); apply it to the out_dir it came from, or write a "
            "new audit with q16 audit OUT -n N"
        )
    if not plan.strata or plan.strata[0].name != FLAGGED or min(strata, default=0) < 0:
        raise Q16Error(f"{path}: strata do not match q16's audit design; write a new audit")
    if any(not 0 <= st.sampled <= st.size for st in plan.strata) or (
        sum(st.sampled for st in plan.strata) != len(images)
    ):
        raise Q16Error(f"{path}: stratum sizes do not match the sample; write a new audit")
    if max(strata, default=0) >= len(plan.strata) or len(set(images)) != len(images):
        raise Q16Error(f"{path}: sample does not match its strata; write a new audit")
    return LoadedAudit(
        plan, dict(zip(images, strata, strict=True)), dict(zip(images, classes, strict=True))
    )


def estimates_for_review(
    run: InferenceRun,
    review_path: Path,
    columns: list[str],
    decisions: dict[Image, str],
    n_scores: int,
    answers: Mapping[str, dict[Image, str]] | None = None,
) -> Estimates | None:
    """Estimates when the review is an audit sheet (its ``stratum`` column; ``audit.json``
    beside it), else None.

    ``answers``: per extra question (``person``) each image's answer; a question with at
    least one yes/no answer is estimated from the same sample (``Estimates.questions``)."""
    path = review_path.parent / AUDIT_FILE
    if not path.is_file():
        if "stratum" in columns:
            raise Q16Error(
                f"{review_path} is an audit review but {path} is missing: keep the audit.json "
                "written with it beside review.csv, or write a new audit with q16 audit OUT -n N"
            )
        return None
    if "stratum" not in columns:  # a review of the flags: the audit beside it is another sheet's
        return None
    audit = load_audit(path, run, n_scores)
    outside = [image for image in decisions if image not in audit.stratum]
    if outside:
        raise Q16Error(
            f"{review_path}: {len(outside)} row(s) are not in the audit sample of {path} "
            f"(e.g. {show(outside[0])}); was the review made for another audit?"
        )
    images = list(audit.stratum)
    strata = np.array([audit.stratum[i] for i in images], dtype=np.int64)
    classes = [audit.class_name[i] for i in images]
    found = estimate(audit.plan, strata, [decisions.get(i, "") for i in images], classes)
    for question in EXTRA_QUESTIONS:
        given = (answers or {}).get(question.column, {})
        if any(a in (question.yes, question.no) for a in given.values()):
            found.questions[question.column] = estimate(
                audit.plan, strata, [given.get(i, "") for i in images], classes, question
            )
    return found
