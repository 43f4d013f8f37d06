"""Encode a labelled set once, tune a head on the features, evaluate it: the steps that the
single-split run and the SMID protocol share."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger

from q16.data.features import FeatureSet, cached_features
from q16.data.labeled import LabeledImages
from q16.errors import Q16Error
from q16.metrics import binary_metrics
from q16.models.backbone import Backbone
from q16.models.prompt_head import PromptHead
from q16.training.settings import FeatureSettings, FitSettings
from q16.training.tuner import PromptTuner, predict_proba

log = logging.getLogger(__name__)

HeadT = TypeVar("HeadT", bound=PromptHead)


@dataclass
class EncodedData:
    """A labelled dataset with its cached image features, unreadable images removed."""

    data: LabeledImages
    features: torch.Tensor
    cache: FeatureSet


def require_both_classes(data: LabeledImages) -> LabeledImages:
    if len(np.unique(data.labels)) < 2:
        raise Q16Error(f"{data.name}: training needs both classes, found only one")
    return data


def encode(backbone: Backbone, data: LabeledImages, settings: FeatureSettings) -> EncodedData:
    """Features of every image (from the cache when it holds them); unreadable ones dropped."""
    cache = cached_features(
        backbone,
        data.paths,
        settings.cache_dir,
        batch_size=settings.batch_size,
        num_workers=settings.num_workers,
    )
    valid = cache.valid.numpy()
    if not valid.all():
        log.warning("%d unreadable images left out of training and evaluation", (~valid).sum())
    return EncodedData(data.subset(valid), cache.features[cache.valid], cache)


def precomputed(data: LabeledImages, features: torch.Tensor) -> EncodedData:
    """Features that need no encoding (a run's saved embeddings) in the form training takes."""
    valid = torch.ones(len(data), dtype=torch.bool)
    return EncodedData(data, features, FeatureSet(features, valid, None, cache_hit=False))


def evaluate(
    head: PromptHead, features: torch.Tensor, labels: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    probs = predict_proba(head, features)
    return binary_metrics(probs, torch.as_tensor(labels), threshold)


def fit_head(
    head: HeadT,
    features: torch.Tensor,
    labels: np.ndarray,
    settings: FitSettings,
    *,
    loggers: list[Logger] | bool = False,
    callbacks: list[Callback] | None = None,
    quiet: bool = False,
) -> HeadT:
    """Train ``head`` on (features, labels); only its trainable parameters change."""
    dataset = torch.utils.data.TensorDataset(features, torch.as_tensor(labels))
    generator = torch.Generator().manual_seed(settings.seed)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=settings.batch_size, shuffle=True, generator=generator
    )
    module = PromptTuner(head, settings.optimizer)
    overrides = {"enable_progress_bar": False, "enable_model_summary": False} if quiet else {}
    trainer = settings.trainer(logger=loggers, callbacks=callbacks or [], **overrides)
    trainer.fit(module, train_dataloaders=loader)
    head.cpu()
    return head
