"""The per-category benchmark of a labelled set: every image through the prompt heads and, when
asked, NudeNet, once; then :mod:`q16.experiments.category_bench` on the images that decoded.

Writes to ``out_dir``: ``category_metrics.csv``/``.md``, ``operating_points.json``,
``benchmark.json`` (the settings, heads, data and counts behind the numbers), ``scores.csv``
(per image: category, source, label and every head's p) and ``errors.jsonl`` (rows whose image
is missing or undecodable: not in the metrics, counted in ``benchmark.json``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from q16.data.categorized import CategorizedImages
from q16.detectors.base import Detections, PixelDetector
from q16.detectors.nudenet import I2P_EXPOSED_LABELS, I2P_MIN_SCORE, nudity_score
from q16.errors import Q16Error
from q16.experiments.bootstrap_metrics import BootstrapSettings
from q16.experiments.category_bench import (
    HeadScores,
    benchmark,
    operating_points,
    parse_labels,
    write_benchmark,
)
from q16.experiments.image_scoring import score_images
from q16.fileio import atomic_write_text
from q16.models.backbone import Backbone
from q16.models.prompt_head import PromptHead
from q16.spreadsheet import write_text_csv

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptHeadSpec:
    """A CLIP prompt head in the benchmark, its threshold and where that came from."""

    name: str
    head: PromptHead
    threshold: float
    threshold_from: str
    record: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NudityHeadSpec:
    """NudeNet as a head: p = the highest score among ``labels``."""

    detector: PixelDetector
    name: str = "nudity"
    labels: tuple[str, ...] = I2P_EXPOSED_LABELS
    threshold: float = I2P_MIN_SCORE


@dataclass(frozen=True)
class CategoryRun:
    out_dir: Path
    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)
    target_precision: float = 0.9
    batch_size: int = 32
    note: str = ""


def benchmark_categories(
    data: CategorizedImages,
    backbone: Backbone | None,
    prompt_heads: Sequence[PromptHeadSpec],
    nudity: NudityHeadSpec | None,
    run: CategoryRun,
) -> pd.DataFrame:
    """Score, benchmark, write; returns the metrics table (also ``category_metrics.csv``)."""
    names = [h.name for h in prompt_heads] + ([nudity.name] if nudity else [])
    if not names:
        raise Q16Error("the benchmark needs at least one head (a prompt source or nudity)")
    if len(set(names)) != len(names):
        raise Q16Error(f"two heads are both called {names[0]!r}; give them distinct names")
    labels = parse_labels(data.table["label"].tolist())  # bad labels stop before any scoring
    scores = score_images(
        data.items,
        backbone,
        {h.name: h.head for h in prompt_heads},
        nudity.detector if nudity else None,
        batch_size=run.batch_size,
    )
    valid = scores.valid
    if valid.sum() == 0:
        raise Q16Error(f"{data.name}: none of the {len(valid)} images could be decoded")
    table = data.table[valid].reset_index(drop=True).assign(label=labels[valid])
    heads = [
        HeadScores(h.name, scores.p[h.name][valid], h.threshold, h.threshold_from)
        for h in prompt_heads
    ]
    if nudity is not None:
        found = [
            d or Detections.empty() for d, ok in zip(scores.detections, valid, strict=True) if ok
        ]
        p = np.array([nudity_score(d, nudity.labels) for d in found])
        heads.append(HeadScores(nudity.name, p, nudity.threshold, "nudity head setting"))
    metrics = benchmark(table, heads, run.bootstrap)
    points = operating_points(table, heads, run.target_precision)
    record = {
        "data": data.record,
        "n_images": len(valid),
        "n_scored": int(valid.sum()),
        "n_unreadable": int((~valid).sum()),
        "heads": [
            {
                "name": h.name,
                "threshold": h.threshold,
                "threshold_from": h.threshold_from,
                **h.record,
            }
            for h in prompt_heads
        ]
        + (
            [
                {
                    "name": nudity.name,
                    "threshold": nudity.threshold,
                    "labels": list(nudity.labels),
                    "detector": nudity.detector.settings(),
                }
            ]
            if nudity
            else []
        ),
        "argmax": "p > 0.5",
        "bootstrap": asdict(run.bootstrap),
        "target_precision": run.target_precision,
        "note": run.note,
    }
    out = run.out_dir
    write_benchmark(out, metrics, points, record)
    per_image = table.assign(**{f"p_{h.name}": h.p for h in heads})
    write_text_csv(per_image, out / "scores.csv", float_format="%.6g")
    atomic_write_text(
        out / "errors.jsonl",
        "".join(
            json.dumps({"image": e["name"], "reason": e["error"]}) + "\n" for e in scores.errors
        ),
    )
    log.info("benchmark of %d heads on %d images: wrote %s", len(heads), int(valid.sum()), out)
    return metrics
