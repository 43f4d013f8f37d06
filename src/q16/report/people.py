"""What the detector heads found, for ``datasheet_q16.md`` and ``report.html``: above all the
datasheet's questions about people (images with at least one face, per class, how sure, what
the detector misses), and the audit's estimate of images showing an identifiable person.

``summary.json``'s head entries are read as hostile input: a missing or malformed value shows
as ``?``, every string is escaped for its destination.
"""

from __future__ import annotations

from typing import Any

from q16.review.estimates import Estimates
from q16.review.questions import PERSON
from q16.text import html_text, md_cell

IDENTIFY = (
    "Is it possible to identify individuals (i.e., one or more natural persons), either "
    "directly or indirectly (i.e., in combination with other data) from the dataset?"
)
TOP = 15


def detector_heads(summary: dict[str, Any]) -> list[dict[str, Any]]:
    heads = summary.get("heads")
    if not isinstance(heads, list):
        return []
    return [h for h in heads if isinstance(h, dict) and h.get("detector")]


def _int(value: object) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None  # type: ignore[return-value]


def _count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _pct(part: int | None, whole: int | None) -> str:
    if part is None or whole is None:
        return "?"
    return f"{100 * part / whole:.2f} %" if whole else "n/a"


def _classes(head: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(class, flagged, scored) with at least one flagged image, largest share first."""
    per_class = head.get("per_class")
    rows = []
    for name, row in per_class.items() if isinstance(per_class, dict) else []:
        row = row if isinstance(row, dict) else {}
        flagged, scored = _int(row.get("flagged")), _int(row.get("scored"))
        if flagged and scored:
            rows.append((str(name), flagged, scored))
    return sorted(rows, key=lambda r: (-r[1] / r[2], -r[1], r[0]))[:TOP]


def _settings(head: dict[str, Any]) -> str:
    settings = head.get("settings") if isinstance(head.get("settings"), dict) else {}
    size = settings.get("input_size", "?") if isinstance(settings, dict) else "?"
    return f"threshold {head.get('threshold', '?')}, input size {size} px"


def _limits(head: dict[str, Any]) -> list[str]:
    limits = head.get("known_limits")
    return [str(x) for x in limits] if isinstance(limits, list) else []


def _title(head: dict[str, Any]) -> str:
    return {"faces": "People: faces", "nudity": "Nudity"}.get(str(head.get("topic")), "Detector")


def _what(head: dict[str, Any]) -> str:
    """What a flag of the head means, by its topic ("" when it has none)."""
    if head.get("topic") == "faces":
        return "at least one face"
    if head.get("topic") == "nudity":
        return f"a counted exposed body part (score >= {head.get('threshold', '?')})"
    return ""


def people_markdown(
    summary: dict[str, Any], scored: int, estimates: Estimates | None = None
) -> list[str]:
    """One section per detector head (none without one)."""
    lines: list[str] = []
    person = estimates.questions.get(PERSON.column) if estimates is not None else None
    for head in detector_heads(summary):
        name, flagged = md_cell(head.get("name")), _int(head.get("flagged"))
        faces = head.get("topic") == "faces"
        what = _what(head) or f"a detection of the `{name}` head"
        lines += [f"## {_title(head)} (head `{name}`)", ""]
        if faces:
            lines += [f"> *{IDENTIFY}*", ""]
        lines += [
            f"The detector {md_cell(head.get('detector'))} ({md_cell(_settings(head))}) found "
            f"{what} in {_count(flagged)} of the {scored:,} scored "
            f"images ({_pct(flagged, scored)}).",
            "",
        ]
        if faces and person is not None and person.prevalence is not None:
            p = person.prevalence
            lines += [
                f'In the audit, reviewers answered "{PERSON.text}?" for {p.decided:,} sampled '
                f"images: an estimated {100 * p.share:.2f} % of the scored images contain an "
                f"identifiable person (95 % CI {100 * p.low:.2f}-{100 * p.high:.2f} %, the "
                "audit's stratified estimator). The detector's count is a lower bound of that.",
                "",
            ]
        elif faces:
            lines += [
                "**[Reviewers: an audit (`q16 audit OUT -n 400`) with the `person` column "
                "answered gives the share of images that show an identifiable person, with a "
                "95 % interval.]**",
                "",
            ]
        shown = _classes(head)
        if shown:
            lines += ["| class | images | scored | share |", "|---|---:|---:|---:|"]
            lines += [
                f"| {md_cell(c)} | {f:,} | {s:,} | {100 * f / s:.1f} % |" for c, f, s in shown
            ]
            lines.append("")
        limits = _limits(head)
        if limits:
            lines += ["What the detector misses or confuses:", ""]
            lines += [f"- {md_cell(x, 400)}" for x in limits]
            lines.append("")
        if faces:
            lines += [
                "Faces can be blurred in a released copy (`q16 release OUT DEST`: ImageNet's "
                "obfuscation recipe, boxes from this run) and a person's removal request is "
                "searched by sha256, PDQ and CLIP likeness (`q16 remove OUT --photos DIR`); "
                "docs/privacy.md. **[Reviewers: state whether faces were blurred and how people "
                "can ask to be removed.]**",
                "",
            ]
    return lines


def people_html(summary: dict[str, Any], scored: int) -> list[str]:
    """The same counts for ``report.html`` (nothing without a detector head)."""
    parts: list[str] = []
    for head in detector_heads(summary):
        flagged = _int(head.get("flagged"))
        title = _title(head)
        what = _what(head) or "a detection"
        parts.append(
            f"<h2>{title} (head {html_text(head.get('name'))})</h2><p>"
            f"{html_text(head.get('detector'))} ({html_text(_settings(head))}) found {what} in "
            f"{_count(flagged)} of {scored:,} scored images "
            f"({html_text(_pct(flagged, scored))}).</p>"
        )
        shown = _classes(head)
        if shown:
            parts.append("<table><tr><th>class</th><th>images</th><th>scored</th></tr>")
            parts += [
                f"<tr><td>{html_text(c)}</td><td>{f:,}</td><td>{s:,}</td></tr>" for c, f, s in shown
            ]
            parts.append("</table>")
        limits = _limits(head)
        if limits:
            items = "".join(f"<li>{html_text(x, 400)}</li>" for x in limits)
            parts.append(f'<p class="note">What the detector misses:</p><ul>{items}</ul>')
    return parts
