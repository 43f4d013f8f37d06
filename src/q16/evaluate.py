"""``python evaluate.py``: several prompt sets scored on the same labelled test split(s), with
one pass of the image encoder; the only code that reads the evaluate config."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from q16 import train_config
from q16.data.labeled import mark_duplicates
from q16.entry import command, require_values, run_task
from q16.experiments.bootstrap_metrics import BootstrapSettings, MetricSettings
from q16.experiments.compare_prompts import CompareResult, CompareSettings, compare_prompts
from q16.experiments.prompt_sources import for_model, load_sources, parse_sources
from q16.runinfo import write_run_info
from q16.training.fit import encode, require_both_classes

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> Any:
    """What ``cfg.task``'s runner returns (``CompareResult`` for ``task=compare``)."""
    return run_task(cfg, "evaluate.py")


def run_compare(cfg: DictConfig) -> CompareResult:
    """Cheap checks first (settings, sources, the labelled data), then the model and every
    prompt against it, and only then the one pass of the image encoder."""
    started = time.perf_counter()
    require_values(cfg, "evaluate.py")
    settings = compare_settings(cfg)
    configs = dict(cfg.get("prompts") or {})
    raw = cfg.sources
    specs = parse_sources([raw] if isinstance(raw, str) else [str(s) for s in raw], configs)
    specs = for_model(specs, str(cfg.model.name))  # paper: only where the paper has prompts
    # as train.py: exact duplicates grouped, so a split keeps copies on one side
    data = require_both_classes(mark_duplicates(train_config.load_labeled(cfg)))
    train_config.seed_everything(cfg)  # the same random model as train.py for pretrained=null
    backbone = train_config.build_backbone(cfg)
    named = {spec.target for spec in specs}
    sources = load_sources(specs, backbone, train_config.zero_shot_heads(cfg, named & set(configs)))
    encoded = encode(backbone, data, train_config.feature_settings(cfg))
    encode_s = time.perf_counter() - started
    result = compare_prompts(encoded, sources, backbone.spec, settings)
    write_run_info(
        result.out_dir,
        cfg,
        **result.record,
        feature_cache=str(encoded.cache.cache_path),
        feature_cache_hit=encoded.cache.cache_hit,
        n_unreadable=int((~encoded.cache.valid).sum()),
        n_duplicate_images=data.n_duplicates,
        encode_seconds=round(encode_s, 2),
        total_seconds=round(time.perf_counter() - started, 2),
    )
    return result


def compare_settings(cfg: DictConfig) -> CompareSettings:
    """The evaluate config as typed settings; a value out of range is a one-line error."""
    integer, real = train_config.integer, train_config.real
    integer(cfg, "seed")
    integer(cfg, "features.batch_size", 1)
    integer(cfg, "features.num_workers", 0)
    seed = integer(cfg, "split.seed")
    return CompareSettings(
        out_dir=Path(str(cfg.compare.out_dir)).expanduser(),
        split_seeds=tuple(seed + k for k in range(integer(cfg, "split.n_splits", 1))),
        test_fraction=real(cfg, "split.test_fraction", 0, 1, open_low=True, open_high=True),
        metrics=MetricSettings(
            threshold=real(cfg, "eval.threshold", 0, 1),
            flag_threshold=real(cfg, "eval.flag_threshold", 0, 1),
            calibration_bins=integer(cfg, "eval.calibration_bins", 1),
        ),
        bootstrap=BootstrapSettings(
            n_resamples=integer(cfg, "bootstrap.n_resamples", 2),
            confidence=real(cfg, "bootstrap.confidence", 0, 1, open_low=True, open_high=True),
            method=str(cfg.bootstrap.method),
            seed=integer(cfg, "bootstrap.seed"),
        ),
        command=command("evaluate.py"),
    )
