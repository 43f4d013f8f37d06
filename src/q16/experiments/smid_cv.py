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

import lightning as L
import numpy as np
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from q16 import pipeline
from q16.data.splits import subsample, train_test_indices
from q16.errors import Q16Error
from q16.experiments import comparison, plots, thresholds
from q16.metrics import binary_metrics
from q16.models.module import predict_proba
from q16.runinfo import write_run_info

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


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the sweep for ``cfg.model`` and write every output; returns the summary rows."""
    started = time.perf_counter()
    L.seed_everything(int(cfg.seed), workers=True)
    grid = Grid(
        n_splits=int(cfg.cv.n_splits),
        test_fraction=float(cfg.cv.test_fraction),
        fractions=tuple(float(f) for f in cfg.cv.fractions),
        seed=int(cfg.cv.seed),
        threshold_fraction=float(cfg.cv.threshold_fraction),
    )
    methods = {name: method_config(cfg, str(name)) for name in cfg.cv.methods}
    out = Path(cfg.cv.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    backbone = pipeline.build_backbone(cfg)
    encoded = pipeline.encode(cfg, backbone, pipeline.load_labeled(cfg))
    encode_s = time.perf_counter() - started
    log.info(
        "features of %d images ready in %.1f s (cache %s); sweeping %s",
        len(encoded.data),
        encode_s,
        "hit" if encoded.cache.cache_hit else "miss",
        list(methods),
    )

    result = sweep(methods, backbone, encoded, grid, float(cfg.eval.threshold))
    summary = summarize(result.per_split)
    result.per_split.to_csv(out / "per_split.csv", index=False, float_format="%.6g")
    summary.to_csv(out / "summary.csv", index=False, float_format="%.4f")

    pretrained = backbone.spec.pretrained
    caveats = comparison.run_caveats(backbone.spec, encoded.data.name)
    note = ("NOT A REPRODUCTION: " + "; ".join(caveats)) if caveats else None
    ctx = comparison.RunContext(
        model=backbone.spec.name,
        paper_model=comparison.paper_model_name(str(cfg.cv.paper_model)),
        pretrained=pretrained,
        data=encoded.data.name,
        command=_command(),
        caveats=caveats,
    )
    reference = comparison.load_reference(cfg.cv.get("reference_csv"))
    table = comparison.comparison_table(summary, reference, ctx.paper_model)
    (out / "comparison.md").write_text(
        comparison.comparison_markdown(table, ctx, reference is not None)
    )
    title = f"SMID protocol: {ctx.model} on {ctx.data} ({grid.n_splits} splits)"
    plots.plot_accuracy_vs_fraction(
        summary, out / "accuracy_vs_fraction.png", title, paper=table, note=note
    )
    operating = thresholds.write_thresholds(
        {m: np.concatenate(chunks) for m, chunks in result.pooled_probs.items()},
        {m: np.concatenate(chunks) for m, chunks in result.pooled_labels.items()},
        out,
        float(cfg.eval.target_precision),
        int(cfg.cv.calibration_bins),
        title=f"{ctx.model} on {ctx.data}: test scores at fraction {grid.threshold_fraction:g}",
        note=note,
    )
    write_run_info(
        out,
        cfg,
        command=ctx.command,
        model=ctx.model,
        pretrained=pretrained,
        random_weights=backbone.spec.random_weights,
        data=encoded.data.name,
        n_images=len(encoded.data),
        n_inappropriate=int(encoded.data.labels.sum()),
        methods=list(methods),
        feature_cache=str(encoded.cache.cache_path),
        feature_cache_hit=encoded.cache.cache_hit,
        encode_seconds=round(encode_s, 2),
        total_seconds=round(time.perf_counter() - started, 2),
        operating_points=operating,
        caveats=caveats,
    )
    log.info("SMID sweep for %s written to %s", ctx.model, out)
    return {"summary": summary.to_dict(orient="records"), "out_dir": str(out)}


def method_config(cfg: DictConfig, name: str) -> DictConfig:
    """``cfg`` with ``prompt`` replaced by ``configs/prompt/<name>.yaml``.

    The prompt group chosen on the command line keeps its overrides (``prompt.optimizer.lr=...``
    applies to that method); every other method is read from its file as committed.
    """
    if name == cfg.prompt.get("name"):
        prompt = cfg.prompt
    else:
        path = _find_prompt_file(cfg, name)
        prompt = OmegaConf.load(path)
        if not isinstance(prompt, DictConfig):
            raise Q16Error(f"{path}: a prompt config must be a mapping")
        defaults = prompt.pop("defaults", None)
        if defaults not in (None, ["_self_"]):
            raise Q16Error(f"{path}: smid_cv reads prompt configs without a defaults list")
    method_cfg = cfg.copy()
    with open_dict(method_cfg):
        method_cfg.prompt = prompt
    return method_cfg


def _find_prompt_file(cfg: DictConfig, name: str) -> Path:
    dirs = []
    if HydraConfig.initialized():
        sources = HydraConfig.get().runtime.config_sources
        dirs = [Path(s.path) for s in sources if s.schema == "file" and s.path]
    dirs.append(Path(__file__).resolve().parents[3] / "configs")
    for directory in dirs:
        path = directory / "prompt" / f"{name}.yaml"
        if path.is_file():
            return path
    known = sorted({p.stem for d in dirs for p in (d / "prompt").glob("*.yaml")})
    raise Q16Error(f"cv.methods: no prompt config {name!r} (known: {', '.join(known)})")


def _command() -> str:
    if not HydraConfig.initialized():
        return "python train.py experiment=smid_cv"
    return " ".join(["python train.py", *HydraConfig.get().overrides.task])


def sweep(
    methods: dict[str, DictConfig],
    backbone: Any,
    encoded: pipeline.EncodedData,
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
        train_idx, test_idx = train_test_indices(labels, ratings, grid.test_fraction, seed)
        x_test, y_test = features[test_idx], labels[test_idx]
        for name, method_cfg in methods.items():
            head = pipeline.build_head(method_cfg, backbone)
            if not pipeline.is_trainable(head):  # zero-shot: one evaluation serves all fractions
                probs = predict_proba(head, x_test).numpy()
                metrics = binary_metrics(torch.as_tensor(probs), torch.as_tensor(y_test), threshold)
                for fraction in grid.fractions:
                    rows.append(_row(name, fraction, split, 0, len(test_idx), metrics))
                _pool(result, name, probs, y_test)
                continue
            for fraction in grid.fractions:
                idx = subsample(train_idx, labels, fraction, seed)
                head = pipeline.build_head(method_cfg, backbone)  # fresh start for every cell
                with quiet_lightning():
                    head = pipeline.fit_head(
                        method_cfg, head, features[idx], labels[idx], quiet=True
                    )
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
    made them 5x slower on a busy 2-core machine."""
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
