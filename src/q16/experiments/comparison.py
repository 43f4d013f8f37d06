"""Line our SMID sweep up against the paper's published numbers.

The paper's table is a configured CSV (``cv.reference_csv``: columns model, method,
train_fraction, acc_mean, acc_std, init_acc_mean, ...). Units follow the paper: accuracies in
percent, recalls as fractions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from q16.models.backbone import BackboneSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaperColumn:
    """Which paper row and columns correspond to one of our methods."""

    method: str
    acc: str = "acc_mean"
    std: str = "acc_std"
    recall_inappropriate: str | None = "recall_inappropriate_mean"

    @property
    def label(self) -> str:
        return self.method if self.acc == "acc_mean" else f"{self.method} (before tuning)"


PAPER_METHODS: dict[str, PaperColumn] = {
    "soft": PaperColumn("prompt_tuning_clip"),
    "linear": PaperColumn("probe_tuning_clip"),
    # the paper's zero-shot figure is the prompt-tuning run's accuracy before tuning
    "zeroshot": PaperColumn("prompt_tuning_clip", "init_acc_mean", "init_acc_std", None),
}


@dataclass
class RunContext:
    """What the comparison must say about the run before any number."""

    model: str
    paper_model: str
    pretrained: str | None
    data: str
    command: str
    caveats: list[str] = field(default_factory=list)

    @property
    def is_reproduction_attempt(self) -> bool:
        return not self.caveats


def run_caveats(spec: BackboneSpec, data: str) -> list[str]:
    """Reasons a run's numbers must not be read as reproducing (or failing) the paper."""
    caveats = []
    if spec.random_weights:
        caveats.append("the model has RANDOM weights (model.pretrained=null)")
    elif not spec.is_openai_weights:
        caveats.append(
            f"the weights are {spec.weights_id!r}, not the OpenAI CLIP weights (with QuickGELU) "
            "the paper used"
        )
    if data == "synthetic":
        caveats.append("the data is SYNTHETIC (data=synthetic), not SMID")
    elif data != "smid":
        caveats.append(f"the data is {data!r}, not SMID")
    return caveats


def load_reference(path: str | Path | None) -> pd.DataFrame | None:
    """The paper's table, or None (with a log line) when the file is not there."""
    if path is None:
        return None
    path = Path(path).expanduser()
    if not path.is_file():
        log.info("paper reference not found at %s; comparison lists our numbers only", path)
        return None
    return pd.read_csv(path)


def comparison_table(
    summary: pd.DataFrame, reference: pd.DataFrame | None, paper_model: str
) -> pd.DataFrame:
    """One row per (method, fraction): ours, the paper's, and the difference in points."""
    rows = []
    for rec in summary.itertuples(index=False):
        paper = _paper_row(reference, paper_model, str(rec.method), float(rec.train_fraction))
        col = PAPER_METHODS.get(str(rec.method))
        paper_acc = paper_std = paper_recall = np.nan
        if paper is not None and col is not None:
            paper_acc, paper_std = float(paper[col.acc]), float(paper[col.std])
            if col.recall_inappropriate:
                paper_recall = float(paper[col.recall_inappropriate])
        rows.append(
            {
                "method": rec.method,
                "paper_method": col.label if col else None,
                "train_fraction": rec.train_fraction,
                "acc_mean": rec.acc_mean,
                "acc_std": rec.acc_std,
                "paper_acc_mean": paper_acc,
                "paper_acc_std": paper_std,
                "acc_diff": rec.acc_mean - paper_acc,
                "recall_inappropriate_mean": rec.recall_inappropriate_mean,
                "paper_recall_inappropriate_mean": paper_recall,
            }
        )
    return pd.DataFrame(rows)


def _paper_row(
    reference: pd.DataFrame | None, paper_model: str, method: str, fraction: float
) -> pd.Series | None:
    col = PAPER_METHODS.get(method)
    if reference is None or col is None:
        return None
    match = reference[
        (reference["model"] == paper_model)
        & (reference["method"] == col.method)
        & np.isclose(reference["train_fraction"], fraction)
    ]
    return None if match.empty else match.iloc[0]


def comparison_markdown(table: pd.DataFrame, ctx: RunContext, reference_found: bool) -> str:
    """``comparison.md``: caveats first, then the table, then how to read it."""
    lines = [f"# SMID protocol: {ctx.model} vs the paper", ""]
    if ctx.caveats:
        lines += [
            "> **NOT A REPRODUCTION.** In this run " + "; ".join(ctx.caveats) + ".",
            "> The numbers below only show that the protocol runs end to end; they say nothing",
            "> about the paper's claims, and no claim of reproduction is made.",
            "",
        ]
    lines += [
        f"- produced by: `{ctx.command}`",
        f"- model: {ctx.model} (pretrained={ctx.pretrained}); data: {ctx.data}",
        f"- paper rows for: {ctx.paper_model}",
        "- units: accuracy in percent (mean ± population std over splits), recall as a fraction;"
        " Δ = ours − paper in percentage points",
        "- zero-shot is compared with the paper's accuracy *before* prompt tuning (init_acc)",
        "",
    ]
    has_paper = table["paper_acc_mean"].notna().any()
    if not reference_found:
        lines += ["The paper's reference table was not found; our numbers only.", ""]
    elif not has_paper:
        lines += [
            f"The paper reports no results for model {ctx.paper_model!r}; our numbers only "
            "(set `cv.paper_model=<RN50|ViT-B-32|ViT-B-16|ViT-L-14>` to line up against one).",
            "",
        ]
    lines += [
        "| method | paper method | fraction | ours acc | paper acc | Δ acc | ours recall inapp."
        " | paper recall inapp. |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table.itertuples(index=False):
        lines.append(
            f"| {r.method} | {r.paper_method or '—'} | {r.train_fraction:g} "
            f"| {_pm(r.acc_mean, r.acc_std)} | {_pm(r.paper_acc_mean, r.paper_acc_std)} "
            f"| {_num(r.acc_diff, signed=True)} | {_num(r.recall_inappropriate_mean, 3)} "
            f"| {_num(r.paper_recall_inappropriate_mean, 3)} |"
        )
    if has_paper and ctx.is_reproduction_attempt:
        diffs = table["acc_diff"].dropna()
        worst = table.loc[diffs.abs().idxmax()]
        lines += [
            "",
            f"Mean |Δ acc| over {len(diffs)} cells: {diffs.abs().mean():.2f} points; largest: "
            f"{worst['acc_diff']:+.2f} ({worst['method']}, fraction {worst['train_fraction']:g}).",
        ]
    return "\n".join(lines) + "\n"


def _pm(mean: float, std: float) -> str:
    if np.isnan(mean):
        return "—"
    return f"{mean:.2f} ± {std:.2f}" if not np.isnan(std) else f"{mean:.2f}"


def _num(value: float, digits: int = 2, signed: bool = False) -> str:
    if value is None or np.isnan(value):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
