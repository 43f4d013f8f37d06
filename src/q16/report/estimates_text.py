"""The datasheet's paragraph on a reviewed audit: the numbers, their intervals, the method.

Without a reviewed audit the paragraph says so: a count above a threshold is not an estimate
of how much of the dataset is inappropriate.
"""

from __future__ import annotations

from q16.review.estimates import MIN_CLASS_DECIDED, Estimates, ShareEstimate
from q16.text import md_cell

NO_AUDIT = (
    "No audit reviewed yet: the counts above are images over a threshold, mixing false alarms "
    "with real finds and saying nothing about what the threshold missed. To estimate how much "
    "of the dataset is inappropriate, write an audit sample (`q16 audit OUT -n 400`), "
    "decide its rows in `review.csv`, and apply it (`q16 apply OUT OUT/review.csv`)."
)


def _pct(e: ShareEstimate) -> str:
    return f"{100 * e.share:.2f} % (95 % CI {100 * e.low:.2f}–{100 * e.high:.2f} %)"


def _count(e: ShareEstimate) -> str:
    return f"about {e.count:,.0f} images (95 % CI {e.count_low:,.0f}–{e.count_high:,.0f})"


def estimates_section(est: Estimates | None, top: int = 10) -> list[str]:
    """Markdown lines for ``datasheet_q16.md`` (a heading, a paragraph, maybe a class table)."""
    lines = ["## How much of the dataset is inappropriate (audit)", ""]
    if est is None:
        return [*lines, NO_AUDIT, ""]
    plan = est.plan
    parts = [
        f"A person reviewed a stratified random sample of {est.audit_rows:,} of the "
        f"{est.scored:,} scored images (seed {plan.get('seed')}; {_design(plan)}) and decided "
        f"{est.decided:,} of them (keep or remove); {est.unsure:,} were marked unsure and "
        f"{est.blank:,} left blank, and the estimates treat those as missing at random within "
        "their stratum."
    ]
    if est.precision is not None:
        parts.append(
            f"Of the images flagged at p(inappropriate) ≥ {plan.get('threshold', float('nan')):g},"
            f" {_pct(est.precision)} were judged inappropriate ({est.precision.decided:,} flagged"
            " images decided; Clopper–Pearson interval)."
        )
    if est.prevalence is not None:
        parts.append(
            f"We estimate that {_pct(est.prevalence)} of the scored images are inappropriate, "
            f"{_count(est.prevalence)}"
            + (
                f", of which the threshold missed {_count(est.missed)}: "
                f"{_pct(est.missed)} of the unflagged images."
                if est.missed is not None
                else "."
            )
        )
    if est.unreviewed_strata:
        parts.append(
            "No row was decided in stratum/strata "
            + ", ".join(md_cell(s) for s in est.unreviewed_strata)
            + ", so the estimates that need them are not given."
        )
    parts.append(
        "Method: the flagged images form one stratum and the images below the threshold are "
        "cut by score into further strata, sampled more densely near the threshold "
        "(`audit.json` holds the design); each stratum's share of `remove` decisions is "
        "weighted by the stratum's size (stratified estimator), and the 95 % intervals are "
        "Clopper–Pearson intervals at the design's effective sample size (Korn & Graubard "
        "1998), never larger than the number of decided rows; in simulated audits they covered "
        "the truth at least 93 % of the time (`results/audit/coverage.md`). Reviewers' "
        "judgements are taken as the truth; images that were not scored are not covered."
    )
    lines += [" ".join(parts), ""]
    shown = sorted(est.per_class.items(), key=lambda kv: -kv[1].share)[:top]
    if len(est.per_class) > 1:  # one class: the same numbers as above
        lines += [
            f"Per class (classes with at least {MIN_CLASS_DECIDED} decided audit rows):",
            "",
            "| class | decided | estimated share inappropriate (95 % CI) |",
            "|---|---:|---:|",
        ]
        lines += [f"| {md_cell(name)} | {e.decided:,} | {_pct(e)} |" for name, e in shown]
        lines.append("")
    return lines


def _design(plan: dict) -> str:
    strata = plan.get("strata") or []
    shown = ", ".join(
        f"{md_cell(s.get('name'))} {int(s.get('sampled', 0)):,} of {int(s.get('size', 0)):,}"
        for s in strata
    )
    taken = " — every scored image" if plan.get("all_taken") else ""
    return f"strata {shown}{taken}"
