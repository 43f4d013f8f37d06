"""Every option of every config group, for each entry point, composes AND instantiates (tiny,
offline settings, no weights), so a broken ``_target_`` or a stale key fails here; and each
entry point offers only the options that fit it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.errors import MissingConfigException
from hydra.utils import instantiate
from omegaconf import DictConfig

from hydra_plugins.q16_config_roots import entry_roots
from q16.data.labeled import LabeledImages
from q16.models.backbone import BackboneSpec
from q16.models.prompts import PAPER_CLASS_PROMPTS
from q16.sources.base import InferenceSource

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "configs"

ENTRIES = ("train", "infer", "evaluate")
NOT_CHOSEN = {"hydra"}  # Hydra's own settings, not an option a user picks


def groups(entry: str) -> dict[str, list[str]]:
    """Every group the entry point composes from (its folder, then the roots.yaml ones)."""
    found: dict[str, list[str]] = {}
    for root in (CONFIG_DIR / entry, *entry_roots(CONFIG_DIR / entry)):
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if folder.name not in NOT_CHOSEN:
                found.setdefault(folder.name, []).extend(p.stem for p in folder.glob("*.yaml"))
    return found


CASES = [(e, g, o) for e in ENTRIES for g, opts in groups(e).items() for o in sorted(opts)]

# what makes an option buildable here: no GPU, no SMID, no downloads
RUNNABLE = {
    ("trainer", "gpu"): ["trainer.accelerator=cpu"],
    ("trainer", "ddp"): ["trainer.accelerator=cpu", "trainer.devices=1"],
    ("fabric", "gpu"): ["fabric.accelerator=cpu"],
    ("fabric", "ddp"): ["fabric.accelerator=cpu", "fabric.devices=1"],
    ("logger", "wandb"): ["logger.wandb.offline=true"],
}


def _overrides(entry: str, group: str, option: str, tmp_path: Path) -> list[str]:
    # evaluate composes prompt configs into prompts.<name> (a source may name them)
    chosen = (
        f"+prompt@prompts.x_{option}={option}"
        if (entry, group) == ("evaluate", "prompt")
        else f"{group}={option}"
    )
    extra = [chosen, *RUNNABLE.get((group, option), [])]
    if group in {"experiment", "debug"} or entry == "infer":
        extra.append("model=tiny")
    return extra


def _fill_missing(cfg: DictConfig, tmp_path: Path) -> None:
    """``???`` values (data.path, data.shards) as an empty folder: building must not read."""
    from omegaconf import OmegaConf

    for key in OmegaConf.missing_keys(cfg):
        OmegaConf.update(cfg, key, str(tmp_path / "given"), force_add=True)


def _targets(node: Any, where: str = "") -> list[tuple[str, DictConfig]]:
    """Every config node with a ``_target_`` (outermost only)."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            return [(where, node)]
        return [t for k, v in node.items() for t in _targets(v, f"{where}.{k}".strip("."))]
    return []


@pytest.mark.parametrize(("entry", "group", "option"), CASES)
def test_every_option_composes_and_instantiates(
    make_cfg, tiny_backbone, tmp_path, entry, group, option
) -> None:
    cfg = make_cfg(*_overrides(entry, group, option, tmp_path), config_name=entry)
    _fill_missing(cfg, tmp_path)
    (tmp_path / "given").mkdir()
    built = {where: instantiate(node) for where, node in _targets(cfg)}
    assert built, f"{entry}: {group}={option} builds nothing"
    assert isinstance(built["model"], BackboneSpec)
    assert (
        callable(built["task"]) if entry != "infer" else isinstance(built["data"], InferenceSource)
    )
    if entry != "infer":
        assert callable(getattr(built["data"], "load", None)), "a labelled set loads"
    if group in {"prompt", "experiment", "debug"} or entry == "evaluate":
        _build_heads(cfg, tiny_backbone)


def _build_heads(cfg: DictConfig, backbone: Any) -> None:
    """Every prompt config of the run builds a head on the tiny model (factory + its keys)."""
    prompts = dict(cfg.get("prompts") or {}) | dict(cfg.get("cv", {}).get("prompts") or {})
    if cfg.get("prompt"):
        prompts["prompt"] = cfg.prompt
    for name, prompt in prompts.items():
        head = instantiate(prompt.head)(backbone)
        assert isinstance(head, torch.nn.Module), name


@pytest.mark.parametrize(
    ("entry", "group", "option"),
    [
        ("infer", "data", "synthetic"),
        ("infer", "data", "smid"),
        ("infer", "experiment", "demo"),
        ("infer", "debug", "fast"),
        ("train", "data", "imagenet"),
        ("train", "data", "embeddings"),
        ("train", "fabric", "ddp"),
        ("evaluate", "data", "folder"),
    ],
)
def test_an_entry_point_offers_only_its_own_options(make_cfg, entry, group, option) -> None:
    """Hydra lists the options of the entry point's own group (its files), not the others'."""
    with pytest.raises(Exception) as caught:
        make_cfg(f"{group}={option}", config_name=entry)
    message = str(caught.value)
    assert isinstance(caught.value, MissingConfigException) or "Could not override" in message
    if isinstance(caught.value, MissingConfigException) and group == "data":
        listed = set(caught.value.options or [])
        assert listed == set(groups(entry)["data"]) and option not in listed


def test_groups_are_written_once() -> None:
    """No group or option lives in two of the folders one entry point composes from."""
    for entry in ENTRIES:
        seen: dict[str, Path] = {}
        for root in (CONFIG_DIR / entry, *entry_roots(CONFIG_DIR / entry)):
            for path in root.rglob("*.yaml"):
                name = str(path.relative_to(root))
                assert name not in seen, f"{entry}: {name} in {seen.get(name)} and {root}"
                seen[name] = root


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


def test_train_and_evaluate_share_one_split(make_cfg) -> None:
    """The same test_fraction and seed (one file), so evaluate.py scores train.py's test images."""
    train, evaluate = make_cfg(), make_cfg(config_name="evaluate")
    for key in ("test_fraction", "seed"):
        assert train.split[key] == evaluate.split[key]
    assert train.eval.threshold == evaluate.eval.threshold
    assert train.features == evaluate.features


def test_tasks_are_runners_with_their_own_results(make_cfg) -> None:
    from q16.evaluate import run_compare
    from q16.train import run_smid_protocol, run_split

    assert instantiate(make_cfg().task).func is run_split
    assert instantiate(make_cfg("experiment=smid_cv").task).func is run_smid_protocol
    assert instantiate(make_cfg(config_name="evaluate").task).func is run_compare


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


def test_labelled_sets_load_labelled_images(make_cfg, synthetic_root) -> None:
    cfg = make_cfg("data=synthetic", f"data.root={synthetic_root}")
    assert isinstance(instantiate(cfg.data).load(), LabeledImages)


def test_infer_says_what_its_prompt_is(make_cfg, tmp_path) -> None:
    """``python infer.py prompt=soft`` (train.py's words) is one line naming prompt.path."""
    from q16 import infer
    from q16.errors import Q16Error

    cfg = make_cfg("prompt=soft", "model=tiny", f"infer.out_dir={tmp_path}/o", config_name="infer")
    with pytest.raises(Q16Error, match=r"prompt\.path="):
        infer.run(cfg)
