"""The audit sample on ``report.html``: stratum by stratum, each image with its score.

A reviewer sees why each image is there (its stratum and the stratum's inclusion
probability); every string from the dataset goes through ``q16.text.html_text``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from q16.review.audit import AuditPlan
from q16.text import html_text as _e


@dataclass(frozen=True)
class AuditView:
    """What the page shows of an audit: its design, the review rows, their thumbnails."""

    plan: AuditPlan
    rows: pd.DataFrame
    thumbnails: list[str | None]
    max_images: int


def audit_section(view: AuditView | None) -> list[str]:
    """HTML lines: one heading and one grid per stratum (nothing without an audit)."""
    if view is None:
        return []
    plan = view.plan
    out = [
        f'<h2 id="audit">Audit sample ({plan.sampled:,} of {plan.population:,} scored images, '
        f"seed {plan.seed})</h2>",
        '<p class="note">A stratified random sample over every scored image: decide each row '
        "of <code>review.csv</code> (keep / remove), then <code>q16 apply</code> estimates "
        "precision, prevalence and misses with 95 % intervals.</p>",
    ]
    if plan.all_taken:
        out.append(
            f'<p class="note" id="audit-all">The audit asked for {plan.requested:,} images; the '
            f"run has {plan.population:,} scored images, so all of them are in the audit.</p>"
        )
    shown = 0
    for stratum in plan.strata:
        mine = [i for i, name in enumerate(view.rows["stratum"]) if name == stratum.name]
        out.append(
            f"<h3>{_e(stratum.name)}: scores {stratum.lower:.3f}–{stratum.upper:.3f}, "
            f"{stratum.sampled:,} of {stratum.size:,} images (inclusion probability "
            f"{stratum.inclusion_probability:.4g})</h3>"
        )
        out.append(f'<div class="grid audit-stratum" data-stratum="{_e(stratum.name)}">')
        for i in mine:
            if shown >= view.max_images:
                break
            shown += 1
            out.append(_item(view.rows.iloc[i], view.thumbnails[i]))
        out.append("</div>")
    if shown < len(view.rows):
        out.append(
            f'<p class="note">Showing {shown:,} of {len(view.rows):,} audit images; all are in '
            "<code>review.csv</code> (raise <code>--max-images</code> to show more).</p>"
        )
    return out


def _item(row: pd.Series, uri: str | None) -> str:
    key = _e(row["key"])
    image = (
        f'<img class="thumb audit-thumb" data-key="{key}" alt="{key}" src="{uri}">'
        if uri
        else f'<div class="missing" data-key="{key}">image unavailable</div>'
    )
    return (
        f'<div class="item">{image}<div class="score">{float(row["p_inappropriate"]):.3f}</div>'
        f"class {_e(row['class_name'])}<br>key {key}<br>shard {_e(row['shard'])}</div>"
    )
