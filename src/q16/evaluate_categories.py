"""``python evaluate.py task=categories data.path=<labelled set>``: per-category precision,
recall, F1 and AUROC of every source (and the nudity head) with bootstrap intervals, split by
source; the only code that reads that task's config (``configs/evaluate/task/categories.yaml``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from q16 import train_config
from q16.data.categorized import CategorizedSet
from q16.detectors.nudenet import check_labels
from q16.entry import command, require_values
from q16.errors import Q16Error
from q16.experiments.bootstrap_metrics import BootstrapSettings
from q16.experiments.category_task import (
    CategoryRun,
    NudityHeadSpec,
    PromptHeadSpec,
    benchmark_categories,
)
from q16.experiments.prompt_sources import PromptSource, load_sources, parse_sources
from q16.models.prompt_io import load_prompt
from q16.runinfo import write_run_info

log = logging.getLogger(__name__)


def run_categories(cfg: DictConfig) -> pd.DataFrame:
    """Cheap checks first (settings, sources, the labelled set's columns and labels), then the
    model, every head, and one pass over the images."""
    started = time.perf_counter()
    require_values(cfg, "evaluate.py", {"data.path": "unsafebench/"})
    real, integer = train_config.real, train_config.integer
    integer(cfg, "seed")
    node = cfg.categories
    run = CategoryRun(
        out_dir=Path(str(node.out_dir)).expanduser(),
        bootstrap=BootstrapSettings(
            n_resamples=integer(cfg, "bootstrap.n_resamples", 2),
            confidence=real(cfg, "bootstrap.confidence", 0, 1, open_low=True, open_high=True),
            method=str(cfg.bootstrap.method),
            seed=integer(cfg, "bootstrap.seed"),
        ),
        target_precision=real(cfg, "categories.target_precision", 0, 1, open_low=True),
        batch_size=integer(cfg, "categories.batch_size", 1),
        note=str(node.note or ""),
    )
    given = OmegaConf.select(cfg, "categories.threshold")
    threshold = None if given is None else real(cfg, "categories.threshold", 0, 1)
    fallback = real(cfg, "eval.flag_threshold", 0, 1)
    with_nudity = node.nudity
    if not isinstance(with_nudity, bool):
        raise Q16Error(f"categories.nudity={with_nudity!r} must be true or false")
    labels = check_labels([str(x) for x in cfg.nudity.labels]) if with_nudity else ()
    nudity_threshold = real(cfg, "nudity.threshold", 0, 1)
    configs = dict(cfg.get("prompts") or {})
    raw = cfg.sources
    specs = parse_sources([raw] if isinstance(raw, str) else [str(s) for s in raw], configs)
    source: CategorizedSet = instantiate(cfg.data)
    data = source.load()
    train_config.seed_everything(cfg)
    backbone = train_config.build_backbone(cfg)
    heads = train_config.zero_shot_heads(cfg, {s.target for s in specs} & set(configs))
    sources = load_sources(specs, backbone, heads)
    prompt_heads = [_head(s, threshold, fallback) for s in sources]
    nudity = (
        NudityHeadSpec(
            train_config.nudity_detector(cfg, str(backbone.device)),
            labels=labels,
            threshold=nudity_threshold,
        )
        if with_nudity
        else None
    )
    if backbone.spec.random_weights:
        run = replace(run, note=train_config.with_random_note(run.note))
    metrics = benchmark_categories(data, backbone, prompt_heads, nudity, run)
    write_run_info(
        run.out_dir,
        cfg,
        command=command("evaluate.py"),
        total_seconds=round(time.perf_counter() - started, 2),
    )
    return metrics


def _head(source: PromptSource, given: float | None, fallback: float) -> PromptHeadSpec:
    """A source's threshold: ``categories.threshold``, else its prompt file's stored one, else
    ``eval.flag_threshold`` (where infer.py flags by default)."""
    record: dict[str, Any] = source.describe()
    if given is not None:
        return PromptHeadSpec(source.label, source.head, given, "categories.threshold", record)
    if source.kind == "file" and source.origin.endswith(".safetensors"):
        _, meta = load_prompt(source.origin)
        if meta.threshold is not None:
            note = f"the prompt file ({meta.threshold_from or 'stored'})"
            return PromptHeadSpec(source.label, source.head, meta.threshold, note, record)
    return PromptHeadSpec(source.label, source.head, fallback, "eval.flag_threshold", record)
