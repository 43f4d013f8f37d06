"""prompt=coop and prompt=zeroshot_ensemble: standalone configs that build working heads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from q16 import train_config
from q16.errors import Q16Error
from q16.models.backbone import Backbone
from q16.models.coop import CoOpPrompt
from q16.models.prompt_head import is_trainable
from q16.models.prompts import PAPER_CLASS_PROMPTS, ClassEmbeddingHead

PROMPT_DIR = Path(__file__).resolve().parents[2] / "configs" / "labelled" / "prompt"


def test_coop_config_needs_nothing_from_train_yaml_but_seed() -> None:
    """The SMID sweep composes each method from its prompt config; coop must stand alone."""
    text = (PROMPT_DIR / "coop.yaml").read_text()
    assert set(re.findall(r"\$\{([^}]*)\}", text)) == {"seed"}
    cfg = OmegaConf.load(PROMPT_DIR / "coop.yaml")
    assert cfg.name == "coop" and cfg.optimizer._partial_ and cfg.batch_size > 0


def test_coop_config_builds_the_head(make_cfg, tiny_backbone: Backbone) -> None:
    cfg = make_cfg("prompt=coop", "model=tiny", "seed=7")
    assert cfg.prompt.head.seed == 7 and cfg.prompt.head.n_ctx == 16
    head = train_config.method(cfg, cfg.prompt).build_head(tiny_backbone)
    assert isinstance(head, CoOpPrompt) and is_trainable(head)
    assert head.class_names == ["positive", "negative"]
    assert head(torch.randn(3, 64)).shape == (3, 2)


def test_coop_config_overrides(make_cfg, tiny_backbone: Backbone) -> None:
    cfg = make_cfg(
        "prompt=coop",
        "model=tiny",
        "prompt.head.ctx_init='this image is about something'",
        "prompt.head.class_specific=true",
        "prompt.head.class_names=[appropriate,offensive]",
    )
    head = train_config.method(cfg, cfg.prompt).build_head(tiny_backbone)
    assert head.prompt_learner.ctx.shape == (2, 5, 64)
    assert head.class_names == ["appropriate", "offensive"]


def test_ensemble_embedding_is_the_normalised_mean_of_its_templates(
    make_cfg, tiny_backbone: Backbone
) -> None:
    cfg = make_cfg("prompt=zeroshot_ensemble", "model=tiny")
    class_prompts = [list(templates) for templates in cfg.prompt.head.class_prompts]
    assert [row[0] for row in class_prompts] == [row[0] for row in PAPER_CLASS_PROMPTS]
    assert all(len(row) >= 5 for row in class_prompts)
    head = train_config.method(cfg, cfg.prompt).build_head(tiny_backbone)
    assert isinstance(head, ClassEmbeddingHead) and not is_trainable(head)
    for row, templates in enumerate(class_prompts):
        per_template = torch.stack(
            [F.normalize(tiny_backbone.encode_text([t])[0], dim=-1) for t in templates]
        )
        expected = F.normalize(per_template.mean(dim=0), dim=-1)
        torch.testing.assert_close(head.class_embeddings[row], expected)
        single = F.normalize(tiny_backbone.encode_text(templates[:1])[0], dim=-1)
        assert not torch.allclose(head.class_embeddings[row], single)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("prompt.batch_size=0", "prompt.batch_size=0 must be a whole number >= 1"),
        ("prompt.batch_size=abc", "prompt.batch_size='abc' must be a whole number"),
        ("prompt.optimizer.lr=-1", "prompt.optimizer: Invalid learning rate"),
    ],
)
def test_bad_fit_values_are_one_line_before_anything_loads(
    make_cfg, override: str, message: str
) -> None:
    cfg = make_cfg("prompt=soft", "model=tiny", override)
    with pytest.raises(Q16Error, match=re.escape(message)):
        train_config.method(cfg, cfg.prompt)
