"""The per-head counts of a ``heads:`` run, for the report page and the datasheet.

``summary.json`` lists each head (name, prompt source, category, threshold and where it came
from, images flagged). The file is read as hostile input: a missing or malformed entry shows
as ``?``, never as an exception, and every string is escaped for its destination.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from q16.text import html_text, md_cell


@dataclass(frozen=True)
class HeadRow:
    name: str
    prompt: str
    category: str
    threshold: str
    threshold_from: str
    flagged: int | None


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _threshold(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}"
    return "?"


def head_rows(summary: dict[str, Any]) -> list[HeadRow]:
    """One row per head in ``summary["heads"]``; empty for a run without ``heads:``."""
    heads = summary.get("heads")
    if not isinstance(heads, list):
        return []
    rows = []
    for head in heads:
        head = head if isinstance(head, dict) else {}
        rows.append(
            HeadRow(
                name=str(head.get("name", "?")),
                prompt=str(
                    head.get("prompt_source")
                    or (f"detector {head['detector']}" if head.get("detector") else "?")
                ),
                category=str(head.get("category") or ""),
                threshold=_threshold(head.get("threshold")),
                threshold_from=str(head.get("threshold_from", "?")),
                flagged=_count(head.get("flagged")),
            )
        )
    return rows


def _share(flagged: int | None, scored: int) -> str:
    if flagged is None:
        return "?"
    return f"{100 * flagged / scored:.2f} %" if scored else "n/a"


def heads_markdown(summary: dict[str, Any], scored: int) -> list[str]:
    """A ``## Heads`` section for ``datasheet_q16.md`` (no lines without ``heads:``)."""
    rows = head_rows(summary)
    if not rows:
        return []
    lines = [
        "## Heads",
        "",
        "Each head scored every image; the first also gives `p_inappropriate` and the counts "
        "above. `flagged.csv` lists the images flagged by any head.",
        "",
        "| head | prompts | category | threshold (from) | flagged | share of scored |",
        "|---|---|---|---|---:|---:|",
    ]
    for r in rows:
        flagged = "?" if r.flagged is None else f"{r.flagged:,}"
        lines.append(
            f"| {md_cell(r.name)} | {md_cell(r.prompt)} | {md_cell(r.category)} | "
            f"{r.threshold} ({md_cell(r.threshold_from)}) | {flagged} | "
            f"{_share(r.flagged, scored)} |"
        )
    return [*lines, ""]


def heads_html(summary: dict[str, Any], scored: int) -> list[str]:
    """A ``<h2>Heads</h2>`` table for ``report.html`` (nothing without ``heads:``)."""
    rows = head_rows(summary)
    if not rows:
        return []
    parts = [
        '<h2>Heads</h2><p class="note">Each head scored every image; the first gives the '
        "counts above; the list below holds the images flagged by any head.</p>",
        '<table id="heads"><tr><th>head</th><th>prompts</th><th>category</th>'
        "<th>threshold</th><th>from</th><th>flagged</th><th>share of scored</th></tr>",
    ]
    for r in rows:
        flagged = "?" if r.flagged is None else f"{r.flagged:,}"
        cells = (r.name, r.prompt, r.category, r.threshold, r.threshold_from, flagged)
        parts.append(
            "<tr>"
            + "".join(f"<td>{html_text(v)}</td>" for v in cells)
            + f"<td>{html_text(_share(r.flagged, scored))}</td></tr>"
        )
    return [*parts, "</table>"]
