"""``python train.py experiment=smid_cv``: the paper's SMID protocol for one model.

Ten stratified splits (10 % test, stratified on label and rounded moral mean), each split's
training part subsampled to every fraction, and every method (a prompt config name) fitted on
the same cached features. The image encoder runs once per model; each cell is a few seconds of
prompt training. Everything lands in ``${cv.out_dir}`` (default ``results/smid/<model>/``):

- ``per_split.csv``: one row per (method, fraction, split); metrics as fractions in [0, 1].
- ``summary.csv``: mean over splits in the paper's units — ``acc_*`` and ``balanced_acc_mean``
  in percent, ``auroc_mean`` and recalls as fractions; ``acc_std`` is the population std.
- ``accuracy_vs_fraction.png``, ``comparison.md`` (ours vs the paper's table),
  ``thresholds.csv`` / ``thresholds.json`` and ``calibration.png`` / ``calibration.csv``
  from the test scores pooled over splits at ``cv.threshold_fraction``.
- ``config.yaml`` and ``run_info.json``: what produced the files.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from q16.data.splits import subsample, train_test_indices
from q16.errors import Q16Error
from q16.experiments import comparison, plots, thresholds
from q16.fileio import atomic_csv, atomic_write_text
from q16.metrics import binary_metrics
from q16.models.backbone import Backbone, base_model_name
from q16.models.prompt_head import is_trainable
from q16.training.fit import EncodedData, fit_head
from q16.training.settings import Method
from q16.training.tuner import predict_proba

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = (
    "method",
    "train_fraction",
    "n_splits",
    "acc_mean",
    "acc_std",
    "balanced_acc_mean",
    "auroc_mean",
    "recall_appropriate_mean",
    "recall_inappropriate_mean",
)


@dataclass(frozen=True)
class Grid:
    """The protocol's shape: how many splits, which training fractions."""

    n_splits: int
    test_fraction: float
    fractions: tuple[float, ...]
    seed: int
    threshold_fraction: float

    def __post_init__(self) -> None:
        if self.n_splits < 1:
            raise Q16Error(f"cv.n_splits={self.n_splits} must be at least 1")
        if not 0 < self.test_fraction < 1:
            raise Q16Error(f"cv.test_fraction={self.test_fraction} must lie in (0, 1)")
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions):
            raise Q16Error(f"cv.fractions={list(self.fractions)} must be in (0, 1]")
        if not np.isclose(self.fractions, self.threshold_fraction).any():
            raise Q16Error(
                f"cv.threshold_fraction={self.threshold_fraction} is not one of cv.fractions"
            )


@dataclass
class SweepResult:
    """Per-split metrics and the pooled test scores used for thresholds and calibration."""

    per_split: pd.DataFrame
    pooled_probs: dict[str, list[np.ndarray]] = field(default_factory=dict)
    pooled_labels: dict[str, list[np.ndarray]] = field(default_factory=dict)


@dataclass(frozen=True)
class ProtocolSettings:
    """Everything the protocol needs besides the model, the data and the methods."""

    grid: Grid
    out_dir: Path
    threshold: float = 0.5
    target_precision: float = 0.9
    calibration_bins: int = 10
    paper_model: str = ""
    """Which of the paper's models ``comparison.md`` lines up against."""
    reference_csv: Path | None = None
    command: str = "python train.py experiment=smid_cv"


@dataclass
class ProtocolResult:
    """The summary table (also ``summary.csv``) and what ``run_info.json`` should record."""

    summary: pd.DataFrame
    out_dir: Path
    record: dict[str, Any]


def run_protocol(
    backbone: Backbone,
    encoded: EncodedData,
    methods: dict[str, Method],
    settings: ProtocolSettings,
) -> ProtocolResult:
    """Sweep every cell, then write every output of the module docstring but run_info."""
    grid, out = settings.grid, settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    result = sweep(methods, backbone, encoded, grid, settings.threshold)
    summary = summarize(result.per_split)
    atomic_csv(result.per_split, out / "per_split.csv", float_format="%.6g")
    atomic_csv(summary, out / "summary.csv", float_format="%.4f")

    caveats = comparison.run_caveats(backbone.spec, encoded.data.name)
    note = ("NOT A REPRODUCTION: " + "; ".join(caveats)) if caveats else None
    ctx = comparison.RunContext(
        model=backbone.spec.name,
        paper_model=base_model_name(settings.paper_model or backbone.spec.name),
        pretrained=backbone.spec.pretrained,
        data=encoded.data.name,
        command=settings.command,
        caveats=caveats,
    )
    reference = comparison.load_reference(settings.reference_csv)
    table = comparison.comparison_table(summary, reference, ctx.paper_model)
    atomic_write_text(
        out / "comparison.md", comparison.comparison_markdown(table, ctx, reference is not None)
    )
    title = f"SMID protocol: {ctx.model} on {ctx.data} ({grid.n_splits} splits)"
    plots.plot_accuracy_vs_fraction(
        summary, out / "accuracy_vs_fraction.png", title, paper=table, note=note
    )
    operating = thresholds.write_thresholds(
        {m: np.concatenate(chunks) for m, chunks in result.pooled_probs.items()},
        {m: np.concatenate(chunks) for m, chunks in result.pooled_labels.items()},
        out,
        settings.target_precision,
        settings.calibration_bins,
        title=f"{ctx.model} on {ctx.data}: test scores at fraction {grid.threshold_fraction:g}",
        note=note,
    )
    record = {
        "command": ctx.command,
        "model": ctx.model,
        "pretrained": ctx.pretrained,
        "random_weights": backbone.spec.random_weights,
        "data": encoded.data.name,
        "n_images": len(encoded.data),
        "n_inappropriate": int(encoded.data.labels.sum()),
        "n_duplicate_images": encoded.data.n_duplicates,
        "methods": list(methods),
        "operating_points": operating,
        "caveats": caveats,
    }
    log.info("SMID sweep for %s written to %s", ctx.model, out)
    return ProtocolResult(summary, out, record)


def sweep(
    methods: dict[str, Method],
    backbone: Backbone,
    encoded: EncodedData,
    grid: Grid,
    threshold: float,
) -> SweepResult:
    """Fit and evaluate every (split, method, fraction) cell on the cached features."""
    labels, ratings = encoded.data.labels, encoded.data.scores
    features = encoded.features
    rows: list[dict[str, Any]] = []
    result = SweepResult(pd.DataFrame())
    for split in range(grid.n_splits):
        tic = time.perf_counter()
        seed = grid.seed + split
        train_idx, test_idx = train_test_indices(  # copies of one image: one side
            labels, ratings, grid.test_fraction, seed, encoded.data.groups
        )
        x_test, y_test = features[test_idx], labels[test_idx]
        for name, method in methods.items():
            head = method.build_head(backbone)
            if not is_trainable(head):  # zero-shot: one evaluation serves all fractions
                probs = predict_proba(head, x_test).numpy()
                metrics = binary_metrics(torch.as_tensor(probs), torch.as_tensor(y_test), threshold)
                for fraction in grid.fractions:
                    rows.append(_row(name, fraction, split, 0, len(test_idx), metrics))
                _pool(result, name, probs, y_test)
                continue
            for fraction in grid.fractions:
                idx = subsample(train_idx, labels, fraction, seed)
                head = method.build_head(backbone)  # fresh start for every cell
                if method.fit is None:
                    raise Q16Error(f"cv.prompts.{name} has a trainable head but no optimizer")
                with quiet_lightning():
                    head = fit_head(head, features[idx], labels[idx], method.fit, quiet=True)
                probs = predict_proba(head, x_test).numpy()
                metrics = binary_metrics(torch.as_tensor(probs), torch.as_tensor(y_test), threshold)
                rows.append(_row(name, fraction, split, len(idx), len(test_idx), metrics))
                if np.isclose(fraction, grid.threshold_fraction):
                    _pool(result, name, probs, y_test)
        log.info("split %d/%d done in %.1f s", split + 1, grid.n_splits, time.perf_counter() - tic)
    result.per_split = pd.DataFrame(rows)
    return result


def _row(
    method: str, fraction: float, split: int, n_train: int, n_test: int, metrics: dict[str, float]
) -> dict[str, Any]:
    return {
        "method": method,
        "train_fraction": fraction,
        "split": split,
        "n_train": n_train,
        "n_test": n_test,
        **metrics,
    }


def _pool(result: SweepResult, method: str, probs: np.ndarray, labels: np.ndarray) -> None:
    result.pooled_probs.setdefault(method, []).append(probs)
    result.pooled_labels.setdefault(method, []).append(labels)


def summarize(per_split: pd.DataFrame) -> pd.DataFrame:
    """Mean over splits per (method, fraction), in the paper's units (see module docstring)."""
    grouped = per_split.groupby(["method", "train_fraction"], sort=False)
    summary = grouped.agg(
        n_splits=("split", "nunique"),
        acc_mean=("accuracy", "mean"),
        acc_std=("accuracy", lambda s: float(np.std(s, ddof=0))),
        balanced_acc_mean=("balanced_accuracy", "mean"),
        auroc_mean=("auroc", "mean"),
        recall_appropriate_mean=("recall_appropriate", "mean"),
        recall_inappropriate_mean=("recall_inappropriate", "mean"),
    ).reset_index()
    for column in ("acc_mean", "acc_std", "balanced_acc_mean"):
        summary[column] *= 100.0
    return summary[list(SUMMARY_COLUMNS)]


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Hundreds of small fits: silence Lightning's per-fit banners and warnings, and use one
    CPU thread — steps on (32, D) feature batches are latency-bound, and extra intra-op threads
    only add contention on a small or busy CPU."""
    names = ("lightning.pytorch", "lightning.fabric", "lightning")
    levels = {n: logging.getLogger(n).level for n in names}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="lightning")
            warnings.filterwarnings("ignore", message=".*(val_dataloader|LeafSpec|num_workers).*")
            yield
    finally:
        torch.set_num_threads(threads)
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)
