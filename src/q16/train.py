"""``python train.py``: tune a prompt on one stratified split and compare with zero-shot."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import lightning as L
import numpy as np
from omegaconf import DictConfig

from q16 import pipeline
from q16.data.splits import subsample, train_test_indices
from q16.models.prompt_io import PromptMetadata, save_prompt
from q16.runinfo import config_hash, write_run_info

log = logging.getLogger(__name__)

PROMPT_FILE = "prompts.safetensors"


def allow_deterministic_cublas(cfg: DictConfig) -> None:
    """cuBLAS reads CUBLAS_WORKSPACE_CONFIG once, at the first CUDA matmul, which encoding the
    features does before Lightning sets it for ``trainer.deterministic``: set it first."""
    if cfg.get("trainer", {}).get("deterministic"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and evaluate; returns ``{"zeroshot": {...}, "tuned": {...}}`` (also metrics.json)."""
    pipeline.require_values(cfg)
    allow_deterministic_cublas(cfg)
    if cfg.get("protocol", "single") == "smid_cv":
        from q16.experiments.smid_cv import run as run_cv

        return run_cv(cfg)
    L.seed_everything(int(cfg.seed), workers=True)
    out = pipeline.output_dir(cfg)
    backbone = pipeline.build_backbone(cfg)
    encoded = pipeline.encode(cfg, backbone, pipeline.load_labeled(cfg))
    labels, scores = encoded.data.labels, encoded.data.scores
    train_idx, test_idx = train_test_indices(
        labels, scores, cfg.split.test_fraction, int(cfg.split.seed)
    )
    train_idx = subsample(train_idx, labels, cfg.split.train_fraction, int(cfg.split.seed))
    log.info("split: %d train, %d test images", len(train_idx), len(test_idx))

    head = pipeline.build_head(cfg, backbone)
    x_test, y_test = encoded.features[test_idx], labels[test_idx]
    threshold = float(cfg.eval.threshold)
    metrics = {"zeroshot": pipeline.evaluate(head, x_test, y_test, threshold)}
    if pipeline.is_trainable(head):
        head = pipeline.fit_head(
            cfg,
            head,
            encoded.features[train_idx],
            labels[train_idx],
            loggers=pipeline.build_loggers(cfg),
            callbacks=pipeline.build_callbacks(cfg),
        )
    metrics["tuned"] = pipeline.evaluate(head, x_test, y_test, threshold)

    meta = PromptMetadata(
        kind=head.kind,
        embed_dim=head.embed_dim,
        model=backbone.spec.name,
        pretrained=backbone.spec.pretrained,
        class_names=list(cfg.class_names),
        logit_scale=float(getattr(head, "logit_scale", 1.0)),
        config_hash=config_hash(cfg),
        extra={
            "prompt": str(cfg.prompt.name),
            "data": encoded.data.name,
            **getattr(head, "export_extra", dict)(),  # head-specific, e.g. CoOp's n_ctx
        },
    )
    save_prompt(out / PROMPT_FILE, head, meta)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_run_info(
        out,
        cfg,
        feature_cache_hit=encoded.cache.cache_hit,
        feature_cache=str(encoded.cache.cache_path),
        n_train=len(train_idx),
        n_test=len(test_idx),
        n_unreadable=int((~encoded.cache.valid).sum()),
        random_weights=backbone.spec.random_weights,
        data=encoded.data.name,
    )
    _log_table(metrics, backbone.spec.random_weights, encoded.data.name)
    return metrics


def _log_table(metrics: dict[str, dict[str, float]], random_weights: bool, data: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"zero-shot vs tuned ({data} test split)")
    table.add_column("metric")
    table.add_column("zero-shot", justify="right")
    table.add_column("tuned", justify="right")
    for name, before in metrics["zeroshot"].items():
        after = metrics["tuned"][name]
        table.add_row(name, _fmt(before), _fmt(after))
    console = Console(stderr=False)
    console.print(table)
    if random_weights:
        console.print(
            "[bold yellow]note:[/] the model has RANDOM weights; these figures demonstrate the "
            "machinery, not the paper's result."
        )


def _fmt(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"
