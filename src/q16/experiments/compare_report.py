"""``table.md``, ``roc.png`` and ``precision_recall.png`` of a prompt comparison: caveats first,
then each split's metrics with intervals, the paired differences, and what each source is."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from q16.experiments.bootstrap_metrics import BootstrapSettings, MetricSettings, SplitComparison
from q16.experiments.prompt_sources import PromptSource
from q16.fileio import atomic_path, atomic_write_text

REPORT_FILE = "table.md"
ROC_FILE = "roc.png"
PR_FILE = "precision_recall.png"
RANKING: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced acc."),
    ("auroc", "AUROC"),
    ("average_precision", "AP"),
    ("ece", "ECE"),
)
"""``table.csv`` column and ``table.md`` header of the first table of each split."""
DIFFERENCES: tuple[tuple[str, str], ...] = (
    ("balanced_accuracy", "Δ balanced acc."),
    ("auroc", "Δ AUROC"),
    ("average_precision", "Δ AP"),
)
CURVE_METRIC = {"roc": ("auroc", "AUROC"), "pr": ("average_precision", "AP")}


@dataclass
class ReportContext:
    """What the report must say about the run before any number."""

    model: str
    pretrained: str | None
    data: str
    n_images: int
    command: str
    test_fraction: float
    metrics: MetricSettings
    bootstrap: BootstrapSettings
    caveats: list[str] = field(default_factory=list)

    @property
    def note(self) -> str | None:
        return ("NOT A PAPER RESULT: " + "; ".join(self.caveats)) if self.caveats else None


def write_report(
    out: Path,
    ctx: ReportContext,
    sources: Sequence[PromptSource],
    splits: Sequence[SplitComparison],
    table: pd.DataFrame,
    differences: pd.DataFrame,
) -> None:
    atomic_write_text(out / REPORT_FILE, report_markdown(ctx, sources, splits, table, differences))
    title = f"{ctx.model} on {ctx.data}: test split seed {splits[0].seed}"
    if len(splits) > 1:
        title = (
            f"{ctx.model} on {ctx.data}: {len(splits)} test splits (thin: seeds after the first)"
        )
    labels = [s.label for s in sources]
    plot_curves(splits, labels, table, out / ROC_FILE, "roc", title, ctx)
    plot_curves(splits, labels, table, out / PR_FILE, "pr", title, ctx)


def report_markdown(
    ctx: ReportContext,
    sources: Sequence[PromptSource],
    splits: Sequence[SplitComparison],
    table: pd.DataFrame,
    differences: pd.DataFrame,
) -> str:
    m, b = ctx.metrics, ctx.bootstrap
    lines = [f"# Prompt sets head to head: {ctx.data}, {ctx.model}", ""]
    if ctx.caveats:
        lines += [
            "> **NOT A PAPER RESULT.** In this run " + "; ".join(ctx.caveats) + ".",
            "> The numbers only show that the comparison runs end to end; they say nothing about",
            "> how these prompts flag real images.",
            "",
        ]
    seeds = ", ".join(str(s.seed) for s in splits)
    lines += [
        f"- produced by: `{ctx.command}`",
        f"- model: {ctx.model} (pretrained={ctx.pretrained}); data: {ctx.data}, "
        f"{ctx.n_images} labelled images",
        f"- test split: train.py's stratified split, test_fraction {ctx.test_fraction:g}, "
        f"seed {seeds}; a prompt file trained with train.py on that seed and data never saw "
        "these images",
        f"- accuracy and balanced accuracy at p(inappropriate) >= {m.threshold:g}; precision P "
        f"and recall R at p >= {m.flag_threshold:g} (infer.py's default threshold) and at each "
        "source's best-F1 threshold t*, chosen on these same test scores: **optimistic**, that "
        "threshold has seen the answers",
        f"- ECE: expected calibration error over {m.calibration_bins} equal-width bins",
        f"- [low, high]: {b.confidence:.0%} {b.method} bootstrap intervals, {b.n_resamples} "
        f"resamples of the test images drawn within each class, seed {b.seed} "
        "(scipy.stats.bootstrap); — where a metric is undefined in some resample "
        "(precision when nothing is flagged). A zero-width interval means every resample "
        "agreed (e.g. no error among these test images), not certainty: the bootstrap cannot "
        "show errors the test split does not contain",
        "",
    ]
    for split in splits:
        rows = table[table["split_seed"] == split.seed]
        n_bad = int(split.labels.sum())
        heading = (
            f"## Test split seed {split.seed}: {len(split.labels)} images, {n_bad} inappropriate"
        )
        lines += [heading, ""]
        lines += _grid(rows, list(RANKING))
        flag = f"{m.flag_threshold:g}"
        lines += _grid(
            rows,
            [
                ("precision_at_flag", f"P @ {flag}"),
                ("recall_at_flag", f"R @ {flag}"),
                ("best_f1_threshold", "t*"),
                ("precision_at_best_f1", "P @ t*"),
                ("recall_at_best_f1", "R @ t*"),
            ],
        )
        lines += _differences(differences[differences["split_seed"] == split.seed], sources)
    lines += ["## Sources", "", "| source | what | head | trained on |", "|---|---|---|---|"]
    for s in sources:
        trained = s.trained_on or "—"
        if s.prompt_type:
            trained += f" (prompt={s.prompt_type})"
        lines.append(
            f"| {s.label} | {s.kind}: `{_display(s.origin)}` | {s.head.kind} | {trained} |"
        )
    return "\n".join(lines) + "\n"


def _grid(rows: pd.DataFrame, columns: list[tuple[str, str]]) -> list[str]:
    """A Markdown table, one row per source, each metric with its interval (the best-F1
    threshold, which has none, plain)."""
    lines = [
        "| source | " + " | ".join(name for _, name in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for r in rows.to_dict("records"):
        cells = [
            f"{r[key]:.3g}" if key == "best_f1_threshold" else _with_ci(r, key)
            for key, _ in columns
        ]
        lines.append(f"| {r['source']} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _differences(rows: pd.DataFrame, sources: Sequence[PromptSource]) -> list[str]:
    if rows.empty:
        return []
    names = [n for _, n in DIFFERENCES]
    lines = [
        f"Differences from {sources[0].label} on the same resampled images (paired); **bold** "
        "where the interval excludes 0:",
        "",
        "| source | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for source, group in rows.groupby("source", sort=False):
        by_metric = group.set_index("metric")
        cells = []
        for key, _ in DIFFERENCES:
            r = by_metric.loc[key]
            text = _fmt(r["difference"], r["difference_low"], r["difference_high"], signed=True)
            cells.append(f"**{text}**" if r["excludes_zero"] else text)
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _with_ci(row: Mapping[str, Any], key: str) -> str:
    return _fmt(row[key], row[f"{key}_low"], row[f"{key}_high"])


def _fmt(value: float, low: float, high: float, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "—"
    spec = "+.3f" if signed else ".3f"
    if math.isnan(low) or math.isnan(high):
        return f"{value:{spec}} [—]"
    return f"{value:{spec}} [{low:{spec}}, {high:{spec}}]"


def _display(origin: str) -> str:
    """A file under the working directory by its relative path (committed tables stay tidy)."""
    try:
        return str(Path(origin).relative_to(Path.cwd()))
    except ValueError:
        return origin


def plot_curves(
    splits: Sequence[SplitComparison],
    labels: list[str],
    table: pd.DataFrame,
    path: Path,
    kind: str,
    title: str,
    ctx: ReportContext,
) -> Path:
    """Every source's ROC (``kind="roc"``) or precision-recall curve (``"pr"``) in one figure;
    a dot marks where infer.py flags (``p >= flag_threshold``)."""
    fig = Figure(figsize=(6.4, 5.6), dpi=110)
    ax = fig.add_subplot()
    first = splits[0]
    if kind == "roc":
        ax.plot([0, 1], [0, 1], color="grey", ls=":", label="chance")
    else:
        prevalence = float(first.labels.mean())
        ax.axhline(prevalence, color="grey", ls=":", label=f"chance ({prevalence:.2f})")
    key, short = CURVE_METRIC[kind]
    flag = ctx.metrics.flag_threshold
    for k, split in enumerate(splits):
        rows = table[table["split_seed"] == split.seed].set_index("source")
        for i, (label, probs) in enumerate(zip(labels, split.probs, strict=True)):
            x, y = _curve(kind, split.labels, probs)
            first_split = k == 0
            # line styles and shrinking widths keep identical curves visible on top of each other
            ax.plot(
                x,
                y,
                drawstyle="steps-pre" if kind == "pr" else "default",
                label=f"{label}: {short} {_with_ci(rows.loc[label], key)}" if first_split else None,
                color=f"C{i}",
                ls=("-", "--", "-.", ":")[i % 4],
                lw=max(2.6 - 0.4 * i, 1.0) if first_split else 0.7,
                alpha=1.0 if first_split else 0.5,
            )
            if first_split:
                point = _flag_point(kind, split.labels, probs, flag)
                ax.plot(*point, "o", color=f"C{i}", ms=6)
    if kind == "roc":
        ax.set(xlabel="false positive rate", ylabel="true positive rate (recall)", title="ROC")
    else:
        ax.set(xlabel="recall (inappropriate)", ylabel="precision", title="precision-recall")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right" if kind == "roc" else "lower left")
    fig.suptitle(f"{title}\ndots: p >= {flag:g}", fontsize=9)
    note = ctx.note
    if note:
        fig.text(
            0.5, 0.005, note, ha="center", va="bottom", fontsize=7, color="firebrick", wrap=True
        )
    fig.tight_layout(rect=(0, 0.05 if note else 0, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png")
    return path


def _curve(kind: str, labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if kind == "roc":
        fpr, tpr, _ = roc_curve(labels, probs)
        return fpr, tpr
    precision, recall, _ = precision_recall_curve(labels, probs)
    return recall[::-1], precision[::-1]


def _flag_point(
    kind: str, labels: np.ndarray, probs: np.ndarray, threshold: float
) -> tuple[float, float]:
    labels = labels.astype(bool)
    flagged = probs >= threshold
    tp, fp = int((flagged & labels).sum()), int((flagged & ~labels).sum())
    recall = tp / max(int(labels.sum()), 1)
    if kind == "roc":
        return fp / max(int((~labels).sum()), 1), recall
    return recall, tp / (tp + fp) if tp + fp else 1.0
