"""``python train.py``: the training tasks, each a runner with its own typed result
(:func:`run_split`, :func:`run_smid_protocol`); the ``task`` group (``configs/train/task/``,
set by ``experiment=smid_cv``) names the one ``run`` calls."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from q16 import train_config
from q16.data.labeled import LabeledImages, mark_duplicates
from q16.entry import command, run_task
from q16.errors import Q16Error
from q16.experiments.single_split import Lineage, SplitResult, log_table, run_single_split
from q16.experiments.smid_cv import Grid, ProtocolResult, ProtocolSettings, run_protocol
from q16.models import paper_assets
from q16.models.paper_assets import PAPER
from q16.runinfo import config_hash, write_run_info
from q16.training.fit import encode, precomputed, require_both_classes
from q16.training.prompt_init import parent_lineage

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> Any:
    """What ``cfg.task``'s runner returns (``SplitResult`` for ``task=single_split``)."""
    return run_task(cfg, "train.py")


def run_split(cfg: DictConfig) -> SplitResult:
    """Tune ``cfg.prompt`` on one stratified split; writes prompts.safetensors, metrics.json.

    Cheap checks first: settings, then the labelled data (listed and hashed, not decoded),
    and only then the weights, which may be a download of gigabytes.
    """
    train_config.check_values(cfg)
    split = train_config.split_settings(cfg)
    method = train_config.method(cfg, cfg.prompt)
    reviewed = train_config.load_reviewed(cfg)
    data = reviewed.data if reviewed else load_training_data(cfg)
    allow_deterministic_cublas(cfg)
    train_config.seed_everything(cfg)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    backbone = train_config.build_backbone(cfg)
    if reviewed:  # a curator's review: the run's saved embeddings, no image encoded
        reviewed.check_backbone(backbone.spec.weights_id, backbone.embed_dim)
        encoded = precomputed(reviewed.data, reviewed.features)
    else:
        encoded = encode(backbone, data, train_config.feature_settings(cfg))
    lineage = Lineage(
        parent=parent_lineage(method.init, backbone) if method.init else None,
        review=reviewed.lineage if reviewed else None,
    )
    result = run_single_split(
        backbone,
        encoded,
        method,
        split,
        out,
        threshold=float(cfg.eval.threshold),
        config_hash=config_hash(cfg),
        loggers=train_config.build_loggers(cfg),
        callbacks=train_config.build_callbacks(cfg),
        lineage=lineage,
    )
    write_run_info(
        out,
        cfg,
        feature_cache_hit=encoded.cache.cache_hit,
        feature_cache=str(encoded.cache.cache_path),
        n_train=result.n_train,
        n_test=result.n_test,
        n_unreadable=int((~encoded.cache.valid).sum()),
        random_weights=backbone.spec.random_weights,
        data=encoded.data.name,
        n_duplicate_images=data.n_duplicates,
        dropped=data.dropped,
        **({"prompt_init": lineage.parent} if lineage.parent else {}),
        **({"review": lineage.review} if lineage.review else {}),
    )
    log_table(result, backbone.spec.random_weights, encoded.data.name, method.init)
    return result


def run_smid_protocol(cfg: DictConfig) -> ProtocolResult:
    """The paper's SMID protocol for ``cfg.model`` (``experiment=smid_cv``); checks settings
    and data before loading the weights, as :func:`run_split` does."""
    train_config.check_values(cfg)
    started = time.perf_counter()
    cv = cfg.cv
    settings = ProtocolSettings(
        grid=Grid(
            n_splits=train_config.integer(cfg, "cv.n_splits", 1),
            test_fraction=train_config.real(
                cfg, "cv.test_fraction", 0, 1, open_low=True, open_high=True
            ),
            fractions=_fractions(cv.fractions),
            seed=train_config.integer(cfg, "cv.seed"),
            threshold_fraction=train_config.real(cfg, "cv.threshold_fraction", 0, 1),
        ),
        out_dir=Path(cv.out_dir),
        threshold=float(cfg.eval.threshold),
        target_precision=train_config.real(cfg, "eval.target_precision", 0, 1, open_low=True),
        calibration_bins=train_config.integer(cfg, "cv.calibration_bins", 1),
        paper_model=str(cv.paper_model),
        reference_csv=_reference_csv(cv.get("reference_csv")),
        command=command("train.py"),
    )
    methods = {name: train_config.method(cfg, prompt, name) for name, prompt in _methods(cfg)}
    data = load_training_data(cfg)
    allow_deterministic_cublas(cfg)
    train_config.seed_everything(cfg)
    backbone = train_config.build_backbone(cfg)
    encoded = encode(backbone, data, train_config.feature_settings(cfg))
    encode_s = time.perf_counter() - started
    log.info(
        "features of %d images ready in %.1f s (cache %s); sweeping %s",
        len(encoded.data),
        encode_s,
        "hit" if encoded.cache.cache_hit else "miss",
        list(methods),
    )
    result = run_protocol(backbone, encoded, methods, settings)
    write_run_info(
        result.out_dir,
        cfg,
        **result.record,
        feature_cache=str(encoded.cache.cache_path),
        feature_cache_hit=encoded.cache.cache_hit,
        encode_seconds=round(encode_s, 2),
        total_seconds=round(time.perf_counter() - started, 2),
    )
    return result


def load_training_data(cfg: DictConfig) -> LabeledImages:
    """The labelled images, both classes present, exact duplicates grouped (and reported)."""
    return require_both_classes(mark_duplicates(train_config.load_labeled(cfg)))


def _fractions(values: object) -> tuple[float, ...]:
    try:
        return tuple(float(f) for f in values)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise Q16Error(f"cv.fractions={values!r} must be a list of numbers in (0, 1]") from None


def _methods(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """``cv.methods`` in order, each with its composed prompt config from ``cv.prompts``."""
    prompts = cfg.cv.get("prompts") or {}
    found = []
    for name in map(str, cfg.cv.methods):
        if name not in prompts:
            raise Q16Error(
                f"cv.methods: no prompt config {name!r} in cv.prompts "
                f"(composed: {', '.join(prompts)}); add one with +prompt@cv.prompts.{name}={name}"
            )
        found.append((name, prompts[name]))
    return found


def _reference_csv(setting: str | None) -> Path | None:
    if not setting:
        return None
    return paper_assets.reference_csv() if setting == PAPER else Path(setting).expanduser()


def allow_deterministic_cublas(cfg: DictConfig) -> None:
    """cuBLAS reads CUBLAS_WORKSPACE_CONFIG once, at the first CUDA matmul, which encoding the
    features does before Lightning sets it for ``trainer.deterministic``: set it first."""
    if cfg.get("trainer", {}).get("deterministic"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
