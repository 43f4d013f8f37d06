"""``python evaluate.py``: prompt sets head to head on the same labelled test split(s).

Every source scores the cached features of the same images (one pass of the image encoder);
each split is train.py's stratified test split for its seed, so a prompt file trained with
train.py on that seed never saw its test images. Outputs in ``out_dir``:

- ``table.csv``: one row per (split, source): each metric of
  :data:`~q16.experiments.bootstrap_metrics.METRICS` with ``_low``/``_high`` bootstrap bounds,
  the best-F1 threshold and the thresholds used;
- ``differences.csv``: each source minus the first one, per metric, on the same resamples;
- ``scores.csv``: p(inappropriate) of every test image under every source;
- ``table.md``, ``roc.png``, ``precision_recall.png`` (:mod:`q16.experiments.compare_report`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from q16.data.splits import train_test_indices
from q16.experiments import compare_report
from q16.experiments.bootstrap_metrics import (
    METRICS,
    BootstrapSettings,
    MetricSettings,
    SplitComparison,
    estimate,
)
from q16.experiments.comparison import run_caveats
from q16.experiments.prompt_sources import PromptSource
from q16.fileio import atomic_csv
from q16.models.backbone import BackboneSpec
from q16.training.fit import EncodedData
from q16.training.tuner import predict_proba

log = logging.getLogger(__name__)

TABLE_FILE = "table.csv"
DIFFERENCES_FILE = "differences.csv"
SCORES_FILE = "scores.csv"


@dataclass(frozen=True)
class CompareSettings:
    """Which test split(s), which thresholds, which bootstrap, and where the files go."""

    out_dir: Path
    split_seeds: tuple[int, ...] = (0,)
    test_fraction: float = 0.1
    metrics: MetricSettings = field(default_factory=MetricSettings)
    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)
    command: str = "python evaluate.py"


@dataclass
class CompareResult:
    """``table.csv`` and ``differences.csv`` as frames, the scores behind them, and what
    ``run_info.json`` should record."""

    table: pd.DataFrame
    differences: pd.DataFrame
    splits: list[SplitComparison]
    out_dir: Path
    record: dict[str, Any]


def compare_prompts(
    encoded: EncodedData,
    sources: list[PromptSource],
    spec: BackboneSpec,
    settings: CompareSettings,
) -> CompareResult:
    """Score, estimate with intervals, and write every output of the module docstring."""
    labels, ratings = encoded.data.labels, encoded.data.scores
    probs = np.stack([predict_proba(s.head, encoded.features).double().numpy() for s in sources])
    _warn_if_trained_on_other_splits(sources, encoded.data.name, settings.split_seeds)
    splits = []
    for seed in settings.split_seeds:
        _, test = train_test_indices(  # train.py's split: the same test images
            labels, ratings, settings.test_fraction, seed, encoded.data.groups
        )
        est = estimate(probs[:, test], labels[test], settings.metrics, settings.bootstrap)
        splits.append(SplitComparison(seed, test, labels[test], probs[:, test], est))
        log.info(
            "split seed %d: %d test images scored by %d sources", seed, len(test), len(sources)
        )
    names = [s.label for s in sources]
    table = metrics_table(splits, names, settings.metrics)
    differences = differences_table(splits, names)
    out = settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_csv(table, out / TABLE_FILE, float_format="%.4f")
    atomic_csv(differences, out / DIFFERENCES_FILE, float_format="%.4f")
    atomic_csv(scores_table(splits, names, encoded.data.paths), out / SCORES_FILE, "%.6g")
    context = compare_report.ReportContext(
        model=spec.name,
        pretrained=spec.pretrained,
        data=encoded.data.name,
        n_images=len(encoded.data),
        command=settings.command,
        test_fraction=settings.test_fraction,
        metrics=settings.metrics,
        bootstrap=settings.bootstrap,
        caveats=run_caveats(spec, encoded.data.name),
    )
    compare_report.write_report(out, context, sources, splits, table, differences)
    record = {
        "command": settings.command,
        "model": spec.name,
        "pretrained": spec.pretrained,
        "random_weights": spec.random_weights,
        "data": encoded.data.name,
        "n_images": len(encoded.data),
        "split_seeds": list(settings.split_seeds),
        "test_fraction": settings.test_fraction,
        "n_test": [len(s.test_idx) for s in splits],
        "sources": [s.describe() for s in sources],
        "metrics": asdict(settings.metrics),
        "bootstrap": {**asdict(settings.bootstrap), "library": "scipy.stats.bootstrap"},
        "caveats": context.caveats,
    }
    log.info("prompt comparison written to %s", out)
    return CompareResult(table, differences, splits, out, record)


def metrics_table(
    splits: list[SplitComparison], names: list[str], metrics: MetricSettings
) -> pd.DataFrame:
    """``table.csv``: one row per (split, source), each metric beside its bounds."""
    rows = []
    for split in splits:
        est = split.estimates
        for i, name in enumerate(names):
            row: dict[str, Any] = {
                "split_seed": split.seed,
                "source": name,
                "n_test": len(split.labels),
                "n_inappropriate": int(split.labels.sum()),
            }
            for j, metric in enumerate(METRICS):
                row[metric] = est.point[i, j]
                row[f"{metric}_low"] = est.low[i, j]
                row[f"{metric}_high"] = est.high[i, j]
            row["best_f1_threshold"] = est.best_f1_threshold[i]
            row["threshold"] = metrics.threshold
            row["flag_threshold"] = metrics.flag_threshold
            rows.append(row)
    return pd.DataFrame(rows)


def differences_table(splits: list[SplitComparison], names: list[str]) -> pd.DataFrame:
    """``differences.csv``: source minus the first source, per metric, paired resamples."""
    rows = []
    for split in splits:
        est = split.estimates
        for i, name in enumerate(names[1:], start=1):
            for j, metric in enumerate(METRICS):
                low, high = est.delta_low[i, j], est.delta_high[i, j]
                rows.append(
                    {
                        "split_seed": split.seed,
                        "source": name,
                        "reference": names[0],
                        "metric": metric,
                        "difference": est.delta_point[i, j],
                        "difference_low": low,
                        "difference_high": high,
                        "excludes_zero": bool(low > 0 or high < 0),
                    }
                )
    return pd.DataFrame(
        rows,
        columns=[
            "split_seed",
            "source",
            "reference",
            "metric",
            "difference",
            "difference_low",
            "difference_high",
            "excludes_zero",
        ],
    )


def scores_table(
    splits: list[SplitComparison], names: list[str], paths: list[Path]
) -> pd.DataFrame:
    """``scores.csv``: one row per (split, test image), one column per source."""
    frames = []
    for split in splits:
        frame = pd.DataFrame(
            {
                "split_seed": split.seed,
                "image": [paths[i].name for i in split.test_idx],
                "label": split.labels,
            }
        )
        for name, probs in zip(names, split.probs, strict=True):
            frame[name] = probs
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _warn_if_trained_on_other_splits(
    sources: list[PromptSource], data: str, seeds: tuple[int, ...]
) -> None:
    """A prompt trained on this data saw the test images of every split but its own."""
    trained_here = [s.label for s in sources if s.trained_on == data]
    if trained_here and len(seeds) > 1:
        log.warning(
            "%s trained on %s: with several splits, their training part overlaps the other "
            "splits' test images, so their scores there are inflated",
            ", ".join(trained_here),
            data,
        )
