"""Every option of every config group composes, and the leaf objects instantiate."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate

from q16.models.backbone import BackboneSpec
from q16.models.prompts import PAPER_CLASS_PROMPTS

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
TRAIN_GROUPS = ("model", "prompt", "data", "trainer", "logger", "callbacks", "experiment", "debug")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in TRAIN_GROUPS for o in _options(g)])
def test_every_option_composes(make_cfg, group: str, option: str) -> None:
    cfg = make_cfg(f"{group}={option}")
    # the SMID protocol composes one prompt config per method instead of the prompt group
    prompts = [cfg.prompt] if "prompt" in cfg else list(cfg.cv.prompts.values())
    assert cfg.model.name and prompts and all(p.name and p.head for p in prompts)


def test_defaults_are_the_papers_setup(make_cfg) -> None:
    cfg = make_cfg()
    assert cfg.model.name == "ViT-L-14" and cfg.model.pretrained == "openai"
    assert cfg.prompt.name == "soft" and cfg.prompt.head.trainable
    assert cfg.prompt.head.class_prompts is None  # the paper's pair, kept in one place:
    assert PAPER_CLASS_PROMPTS == (
        ("This image is about something positive",),
        ("This image is about something negative",),
    )
    assert (cfg.data.t_low, cfg.data.t_high) == (2.5, 3.5)


@pytest.mark.parametrize("option", _options("model"))
def test_model_configs_instantiate_backbone_specs(make_cfg, option: str) -> None:
    spec = instantiate(make_cfg(f"model={option}").model)
    assert isinstance(spec, BackboneSpec)
    assert spec.precision in {"fp32", "bf16", "fp16"}


@pytest.mark.parametrize("option", ["csv", "none"])
def test_logger_and_callbacks_instantiate(make_cfg, option: str) -> None:
    from q16 import train_config

    cfg = make_cfg(f"logger={option}", f"callbacks={'default' if option == 'csv' else 'none'}")
    loggers = train_config.build_loggers(cfg)
    assert (loggers is False) == (option == "none")
    assert isinstance(train_config.build_callbacks(cfg), list)


def test_trainer_instantiates(make_cfg) -> None:
    trainer = instantiate(make_cfg("trainer=cpu").trainer, logger=False)
    assert trainer.max_epochs > 0


def test_config_hash_names_the_experiment_not_where_it_ran(tmp_path) -> None:
    from conftest import compose_config
    from q16.runinfo import config_hash

    overrides = ["experiment=smid_cv", "model=tiny", "data=synthetic"]
    here = config_hash(compose_config("train", overrides, tmp_path / "a"))
    there = config_hash(compose_config("train", overrides, tmp_path / "b"))
    other = config_hash(compose_config("train", [*overrides, "seed=1"], tmp_path / "a"))
    assert here == there and here != other


def test_missing_value_is_reported_before_any_work(make_cfg) -> None:
    from q16.errors import Q16Error
    from q16.train import run

    with pytest.raises(Q16Error, match=r"data\.path must be set"):
        run(make_cfg("experiment=smid_cv", "model=tiny", "data=csv"))
