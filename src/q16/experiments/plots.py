"""Figures of the SMID sweep, drawn on a bare ``Figure`` (no pyplot state, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from q16.fileio import atomic_path


def plot_accuracy_vs_fraction(
    summary: pd.DataFrame,
    path: Path,
    title: str,
    paper: pd.DataFrame | None = None,
    note: str | None = None,
) -> Path:
    """Mean ± std test accuracy per method over the training fraction (log x), like the paper.

    Args:
        summary: rows of ``summary.csv`` (acc in percent).
        paper: optional rows of :func:`comparison_table`, drawn dashed where the paper has them.
        note: a warning printed on the figure (random weights, synthetic data).
    """
    fig = Figure(figsize=(7.5, 4.8), dpi=110)
    ax = fig.add_subplot()
    for i, (method, rows) in enumerate(summary.groupby("method", sort=False)):
        rows = rows.sort_values("train_fraction")
        x, y, s = rows["train_fraction"], rows["acc_mean"], rows["acc_std"]
        color = f"C{i}"
        # distinct markers and shrinking sizes keep identical curves visible on top of each other
        ax.plot(x, y, marker="osD^v"[i % 5], ms=max(8 - 2 * i, 3), color=color, label=str(method))
        ax.fill_between(x, y - s, y + s, color=color, alpha=0.2, linewidth=0)
        if paper is not None:
            ref = paper[(paper["method"] == method) & paper["paper_acc_mean"].notna()]
            if not ref.empty:
                ax.plot(
                    ref["train_fraction"],
                    ref["paper_acc_mean"],
                    ls="--",
                    color=color,
                    alpha=0.8,
                    label=f"{method} (paper)",
                )
    fractions = np.sort(summary["train_fraction"].unique())
    ax.set_xscale("log")
    ax.set_xticks(fractions)
    ax.set_xticklabels([f"{f:g}" for f in fractions], rotation=45)
    ax.minorticks_off()
    ax.set_xlabel("share of each split's training part used for tuning")
    ax.set_ylabel("test accuracy (%)  mean ± std over splits")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=8, color="firebrick")
    fig.tight_layout(rect=(0, 0.04 if note else 0, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png")
    return path


def plot_calibration(
    bins: dict[str, pd.DataFrame],
    ece: dict[str, float],
    path: Path,
    title: str,
    note: str | None = None,
) -> Path:
    """Reliability diagram (observed share of inappropriate vs mean score) plus score counts."""
    fig = Figure(figsize=(10, 4.5), dpi=110)
    ax, hist = fig.subplots(1, 2)
    ax.plot([0, 1], [0, 1], color="grey", ls=":", label="perfectly calibrated")
    for i, (method, table) in enumerate(bins.items()):
        used = table[table["count"] > 0]
        ax.plot(
            used["mean_score"],
            used["share_inappropriate"],
            marker="o",
            color=f"C{i}",
            label=f"{method} (ECE {ece[method]:.3f})",
        )
        centers = (table["bin_lower"] + table["bin_upper"]) / 2
        width = float((table["bin_upper"] - table["bin_lower"]).iloc[0])
        offset = (i - (len(bins) - 1) / 2) * width / max(len(bins), 1)
        hist.bar(
            centers + offset,
            table["count"],
            width=width / max(len(bins), 1),
            color=f"C{i}",
            label=str(method),
        )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="mean p(inappropriate) in bin",
        ylabel="observed share inappropriate",
        title="reliability",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    hist.set(xlabel="p(inappropriate)", ylabel="test images", title="score counts", xlim=(0, 1))
    hist.set_yscale("log")
    hist.legend(fontsize=8)
    fig.suptitle(title)
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=8, color="firebrick")
    fig.tight_layout(rect=(0, 0.04 if note else 0, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png")
    return path
