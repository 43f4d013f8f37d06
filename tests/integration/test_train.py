"""train.run end to end on the tiny random-weight CLIP and synthetic SMID."""

from __future__ import annotations

import json

import pytest
import torch

from q16 import train_config
from q16.data import features as features_module
from q16.errors import Q16Error
from q16.experiments.single_split import SplitResult
from q16.models.prompt_io import load_prompt
from q16.train import run, run_split

FAST = ("model=tiny", "data=synthetic", "device=cpu", "trainer=cpu", "callbacks=none")


@pytest.fixture
def train_cfg(make_cfg, synthetic_root):
    def _cfg(*overrides: str, root=None):
        return make_cfg(*FAST, f"data.root={synthetic_root}", *overrides, root=root)

    return _cfg


def test_soft_prompt_beats_zeroshot_and_writes_outputs(train_cfg, tmp_path) -> None:
    cfg = train_cfg("prompt=soft")
    result = run(cfg)  # the task dispatcher; the default task is one split
    assert isinstance(result, SplitResult)
    metrics = result.metrics()
    out = tmp_path / "out"
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert set(metrics) == {"zeroshot", "tuned"}
    assert set(metrics["tuned"]) == {
        "accuracy", "balanced_accuracy", "auroc", "average_precision", "f1",
        "recall_appropriate", "recall_inappropriate",
    }  # fmt: skip
    assert all(0.0 <= v <= 1.0 for v in metrics["tuned"].values())
    assert metrics["tuned"]["accuracy"] >= 0.9
    assert metrics["tuned"]["accuracy"] >= metrics["zeroshot"]["accuracy"] + 0.2
    _, meta = load_prompt(out / "prompts.safetensors", model="q16-tiny", embed_dim=64)
    assert meta.model == "q16-tiny" and meta.pretrained is None and meta.config_hash
    assert (out / "config.yaml").is_file()
    info = json.loads((out / "run_info.json").read_text())
    assert info["random_weights"] is True and info["n_test"] > 0


def test_linear_probe_learns_too(train_cfg) -> None:
    metrics = run_split(train_cfg("prompt=linear")).metrics()
    assert metrics["tuned"]["accuracy"] >= 0.9


def test_zeroshot_does_not_train(train_cfg) -> None:
    metrics = run_split(train_cfg("prompt=zeroshot")).metrics()
    assert metrics["tuned"] == metrics["zeroshot"]


def test_only_prompt_parameters_reach_the_optimizer(tiny_backbone, make_cfg) -> None:
    from hydra.utils import instantiate

    from q16.training.tuner import PromptTuner

    cfg = make_cfg("model=tiny", "prompt=soft")
    head = train_config.method(cfg, cfg.prompt).build_head(tiny_backbone)
    module = PromptTuner(head, instantiate(cfg.prompt.optimizer))
    optimizer = module.configure_optimizers()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert params == [head.class_embeddings]
    backbone_params = {id(p) for p in tiny_backbone.model.parameters()}
    assert not backbone_params & {id(p) for p in params}


def test_second_run_reuses_feature_cache(train_cfg, tmp_path, monkeypatch) -> None:
    run_split(train_cfg("trainer.max_epochs=1", root=tmp_path / "a"))

    def must_not_encode(*args, **kwargs):
        raise AssertionError("images were encoded again despite a cache entry")

    monkeypatch.setattr(features_module, "encode_images", must_not_encode)
    cfg = train_cfg("trainer.max_epochs=1", root=tmp_path / "b")
    cfg.paths.cache_dir = str(tmp_path / "a" / "cache")
    cfg.features.cache_dir = str(tmp_path / "a" / "cache" / "features")
    run_split(cfg)
    info = json.loads((tmp_path / "b" / "out" / "run_info.json").read_text())
    assert info["feature_cache_hit"] is True


def test_seeded_runs_are_reproducible(train_cfg, tmp_path) -> None:
    first = run_split(train_cfg("trainer.max_epochs=3", root=tmp_path / "a")).metrics()
    second = run_split(train_cfg("trainer.max_epochs=3", root=tmp_path / "b")).metrics()
    assert first == second
    a, _ = load_prompt(tmp_path / "a" / "out" / "prompts.safetensors")
    b, _ = load_prompt(tmp_path / "b" / "out" / "prompts.safetensors")
    torch.testing.assert_close(a.class_embeddings, b.class_embeddings)


def test_unreadable_training_image_is_skipped(train_cfg, tmp_path, synthetic_root) -> None:
    import shutil

    root = tmp_path / "smid"
    shutil.copytree(synthetic_root, root)
    next((root / "img").glob("*.jpg")).write_bytes(b"not a jpeg")
    cfg = train_cfg("trainer.max_epochs=1", f"data.root={root}")
    run_split(cfg)
    info = json.loads((tmp_path / "out" / "run_info.json").read_text())
    assert info["n_unreadable"] == 1


@pytest.mark.slow
def test_wandb_logger_runs_offline(train_cfg, tmp_path) -> None:
    pytest.importorskip("wandb")
    run_split(train_cfg("logger=wandb", "trainer.max_epochs=1"))
    assert list((tmp_path / "out").rglob("wandb/offline-run-*"))


def test_a_task_is_a_runner(train_cfg) -> None:
    """``task`` names a runner (configs/train/task/); anything else is one line."""
    cfg = train_cfg()
    cfg.task = "nope"
    with pytest.raises(Q16Error, match="task='nope' names no runner"):
        run(cfg)
    cfg.task = {"_target_": "q16.train.no_such_runner", "_partial_": True}
    with pytest.raises(Q16Error, match="no_such_runner cannot be built"):
        run(cfg)
