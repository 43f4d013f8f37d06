"""What training needs to know, as plain typed values built from the config in ``run()``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch import nn

from q16.models.backbone import Backbone
from q16.models.prompt_head import PromptHead

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
TrainerFactory = Callable[..., L.Trainer]
"""``lightning.Trainer`` with the configured arguments bound; callers add loggers/callbacks."""
HeadFactory = Callable[[Backbone], PromptHead]


@dataclass(frozen=True)
class FitSettings:
    """How to tune a head: optimizer, batches, Trainer, and the seed for batch order."""

    optimizer: OptimizerFactory
    batch_size: int
    trainer: TrainerFactory
    seed: int = 0


@dataclass(frozen=True)
class Method:
    """One prompt type as configured (``configs/labelled/prompt/<name>.yaml``)."""

    name: str
    build_head: HeadFactory
    fit: FitSettings | None
    """``None`` for heads that are never tuned (zero-shot)."""
    init: str | None = None
    """``prompt.init``: the prompt file the head starts from (``build_head`` loads it)."""


@dataclass(frozen=True)
class FeatureSettings:
    """Where and how the frozen image encoder's features are computed and cached."""

    cache_dir: Path | None
    batch_size: int = 64
    num_workers: int = 2
