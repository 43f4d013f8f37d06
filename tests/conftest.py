"""Shared fixtures: offline, tiny random CLIP, synthetic SMID, composed real configs."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never touch the network
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic Trainers on CUDA

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from q16.data.synthetic import make_synthetic_smid
from q16.models.backbone import Backbone, BackboneSpec, load_backbone

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
SHARED_REFERENCE = REPO_ROOT.parent / "shared" / "reference"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_gpu = pytest.mark.skip(reason="needs a CUDA device")
    no_weights = pytest.mark.skip(reason="needs real CLIP weights: set Q16_WEIGHTS_DIR")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_gpu)
        if "weights" in item.keywords and not os.environ.get("Q16_WEIGHTS_DIR"):
            item.add_marker(no_weights)


@pytest.fixture(autouse=True)
def _no_deterministic_leak() -> Iterator[None]:
    """Trainer(deterministic=True) switches torch's global flag on; one test must not change
    which algorithms the next one may use."""
    yield
    torch.use_deterministic_algorithms(False)


def _launch_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return {**env, "HF_HUB_OFFLINE": "1", **extra}


@pytest.fixture
def launch_env() -> Callable[..., dict[str, str]]:
    """Environment for a launched infer.py/train.py: offline, and without a surrounding SLURM
    job's variables (Lightning would take ranks from SLURM, not from NODE_RANK or itself)."""
    return _launch_env


@pytest.fixture(scope="session")
def tiny_backbone() -> Backbone:
    return load_backbone(BackboneSpec("q16-tiny", pretrained=None), "cpu")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_smid(tmp_path_factory.mktemp("synthetic_smid"), n_images=400)


@pytest.fixture
def reference_dir() -> Path:
    if not SHARED_REFERENCE.is_dir():
        pytest.skip(f"paper reference data not found at {SHARED_REFERENCE}")
    return SHARED_REFERENCE


def compose_config(config_name: str, overrides: Sequence[str], tmp_path: Path) -> DictConfig:
    """Compose the real configs as the CLI would, with outputs and caches under tmp_path."""
    GlobalHydra.instance().clear()
    base = [
        f"paths.root_dir={tmp_path}",
        f"paths.output_dir={tmp_path / 'out'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    # each entry point composes from its own folder (configs/<name>/) and those roots.yaml names
    with initialize_config_dir(config_dir=str(CONFIG_DIR / config_name), version_base="1.3"):
        cfg = compose(config_name, overrides=[*base, *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg


def infer_overrides(out: Path, *extra: str, num_workers: int = 0) -> list[str]:
    """A small, fast infer.py run: tiny model on the CPU, small batches, no progress bar."""
    return [
        "model=tiny",
        "fabric.accelerator=cpu",
        "infer.batch_size=4",
        f"infer.num_workers={num_workers}",
        "infer.progress=false",
        f"infer.out_dir={out}",
        *extra,
    ]


@pytest.fixture
def make_cfg(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    def _make(*overrides: str, config_name: str = "train", root: Path | None = None) -> DictConfig:
        return compose_config(config_name, overrides, root or tmp_path)

    yield _make
    GlobalHydra.instance().clear()
