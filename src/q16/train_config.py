"""The train config turned into the typed objects below ``run()``; with ``q16.train`` the only
code that reads a DictConfig on the training side."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from q16.data.labeled import LabeledImages, LabelledSet
from q16.data.review import ReviewDecisions, ReviewedFeatures
from q16.detectors.nudenet import NudeNetDetector, NudeNetSettings
from q16.entry import require_values
from q16.errors import Q16Error
from q16.experiments.single_split import SplitSettings
from q16.models.backbone import Backbone, BackboneSpec, load_backbone, pick_device
from q16.training.prompt_init import check_init, with_init
from q16.training.settings import FeatureSettings, FitSettings, HeadFactory, Method


def real(
    cfg: DictConfig,
    key: str,
    low: float,
    high: float,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """``cfg.<key>`` as a number inside its bounds (NaN never is), or a one-line error."""
    raw = OmegaConf.select(cfg, key)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise Q16Error(f"{key}={raw!r} is not a number") from None
    above = low < value if open_low else low <= value
    below = value < high if open_high else value <= high
    if isinstance(raw, bool) or not (above and below):
        interval = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise Q16Error(f"{key}={raw} must lie in {interval}")
    return value


def integer(cfg: DictConfig, key: str, low: int = 0) -> int:
    """``cfg.<key>`` as a whole number of at least ``low``, or a one-line error."""
    raw = OmegaConf.select(cfg, key)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < low:
        raise Q16Error(f"{key}={raw!r} must be a whole number >= {low}")
    return raw


def split_settings(cfg: DictConfig) -> SplitSettings:
    return SplitSettings(
        test_fraction=real(cfg, "split.test_fraction", 0, 1, open_low=True, open_high=True),
        train_fraction=real(cfg, "split.train_fraction", 0, 1, open_low=True),
        seed=integer(cfg, "split.seed"),
    )


def check_values(cfg: DictConfig) -> None:
    """Everything both tasks read, checked before any data or weights are touched."""
    require_values(cfg, "train.py")
    integer(cfg, "seed")
    real(cfg, "eval.threshold", 0, 1)
    integer(cfg, "features.batch_size", 1)
    integer(cfg, "features.num_workers", 0)


def build_backbone(cfg: DictConfig) -> Backbone:
    spec: BackboneSpec = instantiate(cfg.model)
    return load_backbone(spec, pick_device(str(cfg.device)))


def load_labeled(cfg: DictConfig) -> LabeledImages:
    source: LabelledSet = instantiate(cfg.data)
    return source.load()


def load_reviewed(cfg: DictConfig) -> ReviewedFeatures | None:
    """``data=review``: the decided images with the run's saved embeddings; else ``None``."""
    source = instantiate(cfg.data)
    if not isinstance(source, ReviewDecisions):
        return None
    reviewed = source.load_features()
    reviewed.check_model(str(cfg.model.name))
    return reviewed


def feature_settings(cfg: DictConfig) -> FeatureSettings:
    cache_dir = cfg.features.cache_dir
    return FeatureSettings(
        cache_dir=Path(cache_dir) if cache_dir else None,
        batch_size=int(cfg.features.batch_size),
        num_workers=int(cfg.features.num_workers),
    )


def method(cfg: DictConfig, prompt: DictConfig, name: str | None = None) -> Method:
    """A prompt config (``configs/labelled/prompt/<name>.yaml``) with the run's Trainer and
    seed; its batch size and optimizer are checked here, before any weights load or image is
    encoded."""
    where = "prompt" if name is None else f"cv.prompts.{name}"
    fit = None
    if prompt.get("optimizer"):
        batch_size = prompt.get("batch_size")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise Q16Error(f"{where}.batch_size={batch_size!r} must be a whole number >= 1")
        optimizer = instantiate(prompt.optimizer)
        try:  # AdamW & co. check lr, betas, eps when built: build once on a stand-in
            optimizer([torch.nn.Parameter(torch.zeros(1))])
        except (TypeError, ValueError) as err:
            raise Q16Error(f"{where}.optimizer: {err}") from None
        fit = FitSettings(
            optimizer=optimizer,
            batch_size=batch_size,
            trainer=instantiate(cfg.trainer, _partial_=True),
            seed=int(cfg.seed),
        )
    build, init = instantiate(prompt.head), prompt.get("init")
    if init:
        check_init(str(init), str(prompt.name))
        build = with_init(build, str(init))
    return Method(name or str(prompt.name), build, fit, init=str(init) if init else None)


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


def zero_shot_heads(cfg: DictConfig, names: set[str]) -> dict[str, HeadFactory]:
    """evaluate.py: the hand-written prompt configs (``prompts.<name>``) a source names, as head
    factories; a trainable one is refused (nothing is trained there)."""
    heads = {}
    for name in sorted(names):
        prompt = cfg.prompts[name]
        if prompt.get("optimizer"):
            raise Q16Error(
                f"sources: prompt config {name!r} is trained, not hand-written; train it with "
                f"python train.py prompt={name} and list its prompts.safetensors instead"
            )
        heads[name] = method(cfg, prompt, name).build_head
    return heads


def nudity_detector(cfg: DictConfig, device: str) -> NudeNetDetector:
    """evaluate.py's ``nudity:`` as NudeNet on the run's ``device``."""
    node = cfg.nudity
    if str(node.detector) != "nudenet":
        raise Q16Error(f"nudity.detector={node.detector!r}: the nudity head's detector is nudenet")
    labels = node.labels
    settings = NudeNetSettings(
        labels=(str(labels),) if isinstance(labels, str) else tuple(str(x) for x in labels),
        threshold=real(cfg, "nudity.threshold", 0, 1),
        channel_order=str(node.channel_order),
        input_size=integer(cfg, "nudity.input_size", 32),
        batch_size=integer(cfg, "nudity.batch_size", 1),
        threads=integer(cfg, "nudity.threads", 0),
        model_path=None if node.model_path is None else str(node.model_path),
    )
    return NudeNetDetector(settings, device)


RANDOM_NOTE = (
    "model.pretrained=null: the CLIP behind the prompt heads has random weights, so their side "
    "of these numbers says nothing about the images"
)


def with_random_note(note: str) -> str:
    """``note`` with :data:`RANDOM_NOTE` added once (runs on a random-weight CLIP)."""
    return note if RANDOM_NOTE in note else "; ".join(x for x in (note, RANDOM_NOTE) if x)
