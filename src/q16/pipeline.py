"""Config-level building blocks shared by ``train.run`` and the SMID protocol sweep.

This is the only layer besides the ``run`` functions that reads a DictConfig: it turns config
groups into the plain objects below it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from q16.data.features import FeatureSet, cached_features
from q16.data.labeled import LabeledImages
from q16.errors import Q16Error
from q16.metrics import binary_metrics
from q16.models.backbone import Backbone, BackboneSpec, load_backbone
from q16.models.module import PromptTuner, predict_proba
from q16.models.prompts import PromptHead

log = logging.getLogger(__name__)

HeadT = TypeVar("HeadT", bound=torch.nn.Module)


@dataclass
class EncodedData:
    """A labelled dataset with its cached image features, unreadable images removed."""

    data: LabeledImages
    features: torch.Tensor
    cache: FeatureSet


def require_values(cfg: DictConfig) -> None:
    """Hydra's ``???`` values, reported as one line instead of a traceback."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        hint = " ".join(f"{key}=..." for key in missing)
        raise Q16Error(f"{', '.join(missing)} must be set, e.g. python train.py ... {hint}")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise Q16Error(f"device={name} requested but CUDA is not available; use device=cpu")
    return torch.device(name)


def build_backbone(cfg: DictConfig) -> Backbone:
    spec: BackboneSpec = instantiate(cfg.model)
    return load_backbone(spec, pick_device(cfg.device))


def load_labeled(cfg: DictConfig) -> LabeledImages:
    source = instantiate(cfg.data)
    if not hasattr(source, "load"):
        raise Q16Error(
            f"data={cfg.data.get('name', '?')} is an inference input; train.py needs "
            "data=smid, data=synthetic or data=csv"
        )
    data = source.load()
    if len(np.unique(data.labels)) < 2:
        raise Q16Error(f"{data.name}: training needs both classes, found only one")
    return data


def encode(cfg: DictConfig, backbone: Backbone, data: LabeledImages) -> EncodedData:
    cache = cached_features(
        backbone,
        data.paths,
        cfg.features.cache_dir,
        batch_size=cfg.features.batch_size,
        num_workers=cfg.features.num_workers,
    )
    valid = cache.valid.numpy()
    if not valid.all():
        log.warning("%d unreadable images left out of training and evaluation", (~valid).sum())
    return EncodedData(data.subset(valid), cache.features[cache.valid], cache)


def build_head(cfg: DictConfig, backbone: Backbone) -> PromptHead:
    return instantiate(cfg.prompt.head)(backbone=backbone)


def is_trainable(head: torch.nn.Module) -> bool:
    return any(p.requires_grad for p in head.parameters())


def evaluate(
    head: torch.nn.Module, features: torch.Tensor, labels: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    probs = predict_proba(head, features)
    return binary_metrics(probs, torch.as_tensor(labels), threshold)


def fit_head(
    cfg: DictConfig,
    head: HeadT,
    features: torch.Tensor,
    labels: np.ndarray,
    *,
    loggers: list | bool = False,
    callbacks: list | None = None,
    quiet: bool = False,
) -> HeadT:
    """Train ``head`` on (features, labels) with the configured optimizer and Trainer."""
    dataset = torch.utils.data.TensorDataset(features, torch.as_tensor(labels))
    generator = torch.Generator().manual_seed(int(cfg.seed))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=int(cfg.prompt.batch_size), shuffle=True, generator=generator
    )
    module = PromptTuner(head, instantiate(cfg.prompt.optimizer))
    overrides = {"enable_progress_bar": False, "enable_model_summary": False} if quiet else {}
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=loggers, callbacks=callbacks or [], **overrides
    )
    trainer.fit(module, train_dataloaders=loader)
    return head.cpu()


def build_loggers(cfg: DictConfig) -> list | bool:
    if not cfg.get("logger"):
        return False
    return [instantiate(conf) for conf in cfg.logger.values() if conf and "_target_" in conf]


def build_callbacks(cfg: DictConfig) -> list:
    if not cfg.get("callbacks"):
        return []
    return [instantiate(conf) for conf in cfg.callbacks.values() if conf and "_target_" in conf]


def output_dir(cfg: DictConfig) -> Path:
    path = Path(cfg.paths.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path
