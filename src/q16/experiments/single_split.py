"""``python train.py``: tune one prompt on one stratified split and compare it with zero-shot."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger

from q16 import CLASS_NAMES
from q16.data.splits import subsample, train_test_indices
from q16.errors import Q16Error
from q16.fileio import atomic_write_text
from q16.models.backbone import Backbone
from q16.models.prompt_head import is_trainable
from q16.models.prompt_io import PromptMetadata, save_prompt
from q16.training.fit import EncodedData, evaluate, fit_head
from q16.training.settings import Method

log = logging.getLogger(__name__)

PROMPT_FILE = "prompts.safetensors"
METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class SplitSettings:
    """One stratified split: the test share, and how much of the rest is used for training."""

    test_fraction: float = 0.1
    train_fraction: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1:
            raise Q16Error(f"split.test_fraction={self.test_fraction} must lie in (0, 1)")
        if not 0 < self.train_fraction <= 1:
            raise Q16Error(f"split.train_fraction={self.train_fraction} must lie in (0, 1]")


@dataclass(frozen=True)
class Lineage:
    """What a new prompt was trained from: the init prompt file and the review (if any)."""

    parent: dict[str, str] | None = None
    review: dict[str, Any] | None = None


@dataclass
class SplitResult:
    """Metrics before and after tuning on the same test images, and where the prompt went."""

    zeroshot: dict[str, float]
    tuned: dict[str, float]
    prompt_file: Path
    n_train: int
    n_test: int

    def metrics(self) -> dict[str, dict[str, float]]:
        """What ``metrics.json`` holds."""
        return {"zeroshot": self.zeroshot, "tuned": self.tuned}


def run_single_split(
    backbone: Backbone,
    encoded: EncodedData,
    method: Method,
    split: SplitSettings,
    out_dir: Path,
    *,
    threshold: float = 0.5,
    config_hash: str | None = None,
    loggers: list[Logger] | bool = False,
    callbacks: list[Callback] | None = None,
    lineage: Lineage | None = None,
) -> SplitResult:
    """Evaluate the untuned head, tune it, evaluate again; write the prompt and metrics.

    With ``prompt.init`` the untuned head is the init file's prompt, so the two columns are
    "before" and "after" learning from the data (e.g. a curator's review); ``lineage`` says
    where the new prompt came from and is saved in its metadata.
    """
    labels, scores, groups = encoded.data.labels, encoded.data.scores, encoded.data.groups
    # copies of one image (same bytes) stay on one side: a test image is never also trained on
    train_idx, test_idx = train_test_indices(
        labels, scores, split.test_fraction, split.seed, groups
    )
    train_idx = subsample(train_idx, labels, split.train_fraction, split.seed)
    log.info("split: %d train, %d test images", len(train_idx), len(test_idx))

    head = method.build_head(backbone)
    x_test, y_test = encoded.features[test_idx], labels[test_idx]
    zeroshot = evaluate(head, x_test, y_test, threshold)
    if is_trainable(head):
        if method.fit is None:
            raise Q16Error(f"prompt={method.name} has a trainable head but no prompt.optimizer")
        head = fit_head(
            head,
            encoded.features[train_idx],
            labels[train_idx],
            method.fit,
            loggers=loggers,
            callbacks=callbacks,
        )
    result = SplitResult(
        zeroshot=zeroshot,
        tuned=evaluate(head, x_test, y_test, threshold),
        prompt_file=out_dir / PROMPT_FILE,
        n_train=len(train_idx),
        n_test=len(test_idx),
    )
    meta = PromptMetadata(
        kind=head.kind,
        embed_dim=head.embed_dim,
        model=backbone.spec.name,
        pretrained=backbone.spec.pretrained,
        class_names=list(CLASS_NAMES),
        logit_scale=float(head.logit_scale),
        config_hash=config_hash,
        extra={"prompt": method.name, "data": encoded.data.name, **head.export_metadata()},
        parent=lineage.parent if lineage else None,
        review=lineage.review if lineage else None,
    )
    save_prompt(result.prompt_file, head, meta)
    atomic_write_text(out_dir / METRICS_FILE, json.dumps(result.metrics(), indent=2))
    return result


def log_table(
    result: SplitResult, random_weights: bool, data: str, started_from: str | None = None
) -> None:
    """The before/after table; with ``prompt.init`` "before" is that file's prompt."""
    from rich.console import Console
    from rich.table import Table

    before, after = ("before (prompt.init)", "after") if started_from else ("zero-shot", "tuned")
    table = Table(title=f"{before} vs {after} ({data} test split)")
    table.add_column("metric")
    table.add_column(before, justify="right")
    table.add_column(after, justify="right")
    for name, value in result.zeroshot.items():
        table.add_row(name, _fmt(value), _fmt(result.tuned[name]))
    console = Console(stderr=False)
    console.print(table)
    if random_weights:
        console.print(
            "[bold yellow]note:[/] the model has RANDOM weights; these figures demonstrate the "
            "machinery, not the paper's result."
        )


def _fmt(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"
