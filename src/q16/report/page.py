"""``report.html``: one self-contained page (inline CSS, images as data URIs, one script of
q16's own: the decisions, :mod:`q16.report.decide`).

It opens from disk in any browser, can be mailed or archived with the datasheet, and loads
nothing from the network (its Content-Security-Policy forbids it, and any script but q16's).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from q16.outdir import META_PREFIX
from q16.report import decide
from q16.report.audit_page import AuditView, audit_section
from q16.report.heads_table import heads_html
from q16.report.people import people_html
from q16.review.run import Coverage, InferenceRun, meta_columns
from q16.text import html_text

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;
background:#fafafa}
h1{margin:0 0 4px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.warn{background:#fdecea;border:2px solid #c0392b;color:#7b1d12;padding:12px 16px;
border-radius:6px;font-weight:600;margin:12px 0}
.note{color:#555;font-size:14px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:130px}
.card .v{font-size:22px;font-weight:700}.card .l{font-size:12px;color:#666}
.charts{display:flex;flex-wrap:wrap;gap:16px}.charts img{background:#fff;border:1px solid #ddd;
max-width:100%}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px}
.item{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;font-size:12px;
overflow-wrap:anywhere}
.item img,.item .missing{width:100%;height:192px;object-fit:contain;background:#eee;display:block}
.item .missing{display:flex;align-items:center;justify-content:center;color:#888}
.score{font-weight:700;color:#c0392b;font-size:15px}
table{border-collapse:collapse;background:#fff;font-size:13px}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}
"""


@dataclass
class PageInputs:
    """Everything the page shows, already computed."""

    run: InferenceRun
    coverage: Coverage
    per_class: pd.DataFrame
    thumbnails: list[str | None]
    class_chart_png: bytes
    histogram_png: bytes
    max_images: int
    audit: AuditView | None = None
    versions: dict[str, str] = field(default_factory=dict)
    """Each shard's version (``q16.review.versions``), saved with the page's decisions."""
    blurred: tuple[bool, ...] = ()
    """Per thumbnail of the flagged section (then the audit's): blurred for a nudity head."""
    nudity_heads: tuple[str, ...] = ()
    show_nudity: bool = False


def _e(value: Any) -> str:
    """Dataset text as HTML: escaped, one line, bidi controls shown not obeyed, length capped."""
    return html_text(value)


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _card(value: Any, label: str) -> str:
    return (
        f'<div class="card"><div class="v">{_e(value)}</div><div class="l">{_e(label)}</div></div>'
    )


def render_page(p: PageInputs) -> str:
    """The whole HTML document as a string."""
    s, c = p.run.summary, p.coverage
    share = f"{100 * c.flagged / c.scored:.2f} %" if c.scored else "n/a"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        decide.csp_meta(),
        f"<title>Q16 report: {_e(p.run.out_dir.name)}</title>"
        f"<style>{CSS}{decide.CSS}</style></head><body>",
        "<h1>Q16 review report</h1>",
        f'<div class="note">inference out_dir <code>{_e(p.run.out_dir)}</code></div>',
    ]
    if p.run.random_weights:
        parts.append(
            '<div class="warn" id="random-weights">RANDOM WEIGHTS: the model '
            f"{_e(s.get('model'))} was not pretrained (pretrained={_e(str(s.get('pretrained')))}). "
            "These scores say nothing about the images.</div>"
        )
    if not c.complete:
        parts.append(f'<div class="warn" id="not-scored">{_e(c.warning())}</div>')
    parts += [
        '<p class="note">The classifier proposes, humans decide: every flagged image needs a'
        " person's review (<code>review.csv</code>) before anything is said or done about it.</p>",
        '<h2>Summary</h2><div class="cards">',
        _card(f"{c.scored:,}", "images scored"),
        _card(f"{c.flagged:,}", f"flagged ({share} of scored)"),
        _card(f"{c.unscored:,}", "images NOT scored (unreadable or no finite score)"),
        _card(f"{c.shard_problems:,}", "problems with whole shards"),
        _card(f"{p.run.threshold:g}", "threshold p(inappropriate)"),
        _card(s.get("model"), f"model (pretrained={s.get('pretrained')})"),
        _card(s.get("prompt_source"), "prompts"),
        _card(f"{_float(s.get('images_per_s')):,.1f}", "images / s"),
        _card(f"{_float(s.get('wall_time_s')):,.1f} s", "wall time"),
        _card(f"{s.get('shards_done')} / {s.get('shards_total')}", "shards done"),
        _card(s.get("date"), f"git {str(s.get('git_commit') or '?')[:10]}"),
        "</div>",
        '<h2>Scores and classes</h2><div class="charts">',
        f'<img id="histogram" alt="score histogram" src="{_png_uri(p.histogram_png)}">',
        f'<img id="class-chart" alt="flagged per class" src="{_png_uri(p.class_chart_png)}">',
        "</div>",
    ]
    parts += heads_html(s, c.scored)
    parts += people_html(s, c.scored)
    parts += _flagged_section(p)
    parts += audit_section(p.audit)
    parts += _errors_section(p.run)
    parts.append(decide.script_tag())
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _float(value: object) -> float:
    try:
        return float(value or 0)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _flagged_section(p: PageInputs) -> list[str]:
    rows = p.run.flagged.head(p.max_images)
    heads = [str(c) for c in rows.columns if str(c).startswith("flagged_")]
    which = " by any head" if heads else ""
    out = [f"<h2>Flagged images{which}, highest score first ({len(p.run.flagged):,})</h2>"]
    if len(p.run.flagged) > len(rows):
        out.append(
            f'<p class="note">Showing the top {len(rows):,}; all {len(p.run.flagged):,} are in '
            "<code>review.csv</code> (raise <code>--max-images</code> to show more).</p>"
        )
    out.append(decide.toolbar(len(rows), len(p.run.flagged)))
    out += _nudity_note(p)
    out.append('<div class="grid" id="flagged">')
    meta = meta_columns(rows)  # the dataset's own text (caption, url): often the offensive part
    meta_values = list(rows[meta].itertuples(index=False, name=None)) if meta else []
    meta_values += [()] * (len(rows) - len(meta_values))
    for rank, (row, uri) in enumerate(
        zip(rows.itertuples(index=False), p.thumbnails, strict=False), start=1
    ):
        key = _e(row.key)
        hidden = rank - 1 < len(p.blurred) and p.blurred[rank - 1]
        kind = "thumb blurred" if hidden else "thumb"
        image = (
            f'<img class="{kind}" data-key="{key}" alt="{key}" src="{uri}">'
            if uri
            else f'<div class="missing" data-key="{key}">image unavailable</div>'
        )
        if hidden:
            image += '<div class="note">blurred: flagged by the nudity head</div>'
        file_name = f"<br>file {_e(row.file_name)}" if isinstance(row.file_name, str) else ""
        fields = "".join(
            f"<br>{_e(name.removeprefix(META_PREFIX))} {_e(value)}"
            for name, value in zip(meta, meta_values[rank - 1], strict=True)
            if isinstance(value, str) and value
        )
        by = [h.removeprefix("flagged_") for h in heads if _true(rows[h].iloc[rank - 1])]
        flagged_by = f"<br>flagged by {_e(', '.join(by))}" if heads else ""
        exact = decide.image_attribute(row.shard, row.key, p.versions.get(str(row.shard), ""))
        out.append(
            f'<div class="item" {exact}>{image}<div class="score">#{rank} &nbsp; '
            f"{float(row.p_inappropriate):.3f}</div>{decide.controls()}class "
            f"{_e(row.class_name)}<br>key {key}<br>shard {_e(row.shard)}{file_name}"
            f"{flagged_by}{fields}</div>"
        )
    out.append("</div>")
    return out


def _nudity_note(p: PageInputs) -> list[str]:
    """What the page does with the thumbnails of images a nudity head flagged."""
    if not p.nudity_heads:
        return []
    names = ", ".join(p.nudity_heads)
    if p.show_nudity:
        return [
            '<p class="warn" id="nudity-shown">Thumbnails of images flagged by the nudity head '
            f"({_e(names)}) are shown unblurred, as asked (<code>--show-nudity</code>): "
            "think twice before sharing this page.</p>"
        ]
    return [
        '<p class="note" id="nudity-blurred">Thumbnails of images flagged by the nudity head '
        f"({_e(names)}) are blurred in their pixels ({sum(p.blurred):,} on this page): the "
        "page holds no unblurred copy, so it can be shared. To see them, run "
        "<code>q16 report OUT --show-nudity</code>.</p>"
    ]


def _true(value: object) -> bool:
    """A flag as stored (bool) or as read back from flagged.csv (text)."""
    return value is True or str(value).strip().lower() in ("true", "1")


def _errors_section(run: InferenceRun, limit: int = 50) -> list[str]:
    if not run.errors:
        return []
    out = [
        f"<h2>Unreadable inputs ({len(run.errors):,})</h2>",
        "<table><tr><th>shard</th><th>key</th><th>reason</th></tr>",
    ]
    for err in run.errors[:limit]:
        out.append(
            f"<tr><td>{_e(err.get('shard'))}</td><td>{_e(err.get('key'))}</td>"
            f"<td>{_e(err.get('reason'))}</td></tr>"
        )
    out.append("</table>")
    if len(run.errors) > limit:
        out.append(f'<p class="note">… and {len(run.errors) - limit:,} more in errors.jsonl</p>')
    return out
