"""The train config turned into the typed objects below ``run()``; with ``q16.train`` the only
code that reads a DictConfig on the training side."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from q16.data.labeled import LabeledImages
from q16.errors import Q16Error
from q16.models.backbone import Backbone, BackboneSpec, load_backbone, pick_device
from q16.training.settings import FeatureSettings, FitSettings, Method


def require_values(cfg: DictConfig) -> None:
    """Hydra's ``???`` values, reported as one line instead of a traceback."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        hint = " ".join(f"{key}=..." for key in missing)
        raise Q16Error(f"{', '.join(missing)} must be set, e.g. python train.py ... {hint}")


def build_backbone(cfg: DictConfig) -> Backbone:
    spec: BackboneSpec = instantiate(cfg.model)
    return load_backbone(spec, pick_device(str(cfg.device)))


def load_labeled(cfg: DictConfig) -> LabeledImages:
    source = instantiate(cfg.data)
    if not hasattr(source, "load"):
        raise Q16Error(
            f"data={cfg.data.get('name', '?')} is an inference input; train.py needs "
            "data=smid, data=synthetic or data=csv"
        )
    data: LabeledImages = source.load()
    return data


def feature_settings(cfg: DictConfig) -> FeatureSettings:
    cache_dir = cfg.features.cache_dir
    return FeatureSettings(
        cache_dir=Path(cache_dir) if cache_dir else None,
        batch_size=int(cfg.features.batch_size),
        num_workers=int(cfg.features.num_workers),
    )


def method(cfg: DictConfig, prompt: DictConfig, name: str | None = None) -> Method:
    """A prompt config (``configs/prompt/<name>.yaml``) with the run's Trainer and seed."""
    fit = None
    if prompt.get("optimizer"):
        fit = FitSettings(
            optimizer=instantiate(prompt.optimizer),
            batch_size=int(prompt.batch_size),
            trainer=instantiate(cfg.trainer, _partial_=True),
            seed=int(cfg.seed),
        )
    return Method(name or str(prompt.name), instantiate(prompt.head), fit)


def build_loggers(cfg: DictConfig) -> list[Logger] | bool:
    if not cfg.get("logger"):
        return False
    return [instantiate(conf) for conf in cfg.logger.values() if conf and "_target_" in conf]


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    if not cfg.get("callbacks"):
        return []
    return [instantiate(conf) for conf in cfg.callbacks.values() if conf and "_target_" in conf]


def seed_everything(cfg: DictConfig) -> None:
    L.seed_everything(int(cfg.seed), workers=True)
