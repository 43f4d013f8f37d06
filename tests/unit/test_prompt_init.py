"""``prompt.init``: a head starts from a saved prompt file's tensors, or a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from q16.errors import Q16Error
from q16.models.prompt_io import PromptMetadata, save_prompt
from q16.models.prompts import class_embedding_prompt, linear_probe
from q16.training.prompt_init import parent_lineage, with_init


def _save(path: Path, head, model: str = "q16-tiny") -> Path:
    meta = PromptMetadata(
        kind=head.kind,
        embed_dim=head.embed_dim,
        model=model,
        pretrained=None,
        logit_scale=float(head.logit_scale),
    )
    return save_prompt(path, head, meta)


def test_soft_and_linear_heads_start_from_the_file(tmp_path: Path, tiny_backbone) -> None:
    soft = class_embedding_prompt(tiny_backbone, trainable=False)
    with torch.no_grad():
        soft.class_embeddings.mul_(-1.0)
    soft.logit_scale = 42.0
    started = with_init(class_embedding_prompt, str(_save(tmp_path / "s.safetensors", soft)))
    head = started(tiny_backbone)
    assert torch.equal(head.class_embeddings, soft.class_embeddings)
    assert head.class_embeddings.requires_grad and head.logit_scale == 42.0

    probe = linear_probe(tiny_backbone, seed=5)
    head = with_init(linear_probe, str(_save(tmp_path / "l.safetensors", probe)))(tiny_backbone)
    assert torch.equal(head.linear.weight, probe.linear.weight)
    assert head.linear.weight.requires_grad


def test_another_kind_or_model_is_one_line(tmp_path: Path, tiny_backbone) -> None:
    probe = _save(tmp_path / "l.safetensors", linear_probe(tiny_backbone))
    with pytest.raises(Q16Error, match="cannot start a class_embeddings head"):
        with_init(class_embedding_prompt, str(probe))(tiny_backbone)
    other = _save(tmp_path / "o.safetensors", class_embedding_prompt(tiny_backbone), model="RN50")
    with pytest.raises(Q16Error, match=r"^prompt\.init: .*RN50") as err:
        with_init(class_embedding_prompt, str(other))(tiny_backbone)
    assert "\n" not in str(err.value)


def test_parent_lineage_names_the_file(tmp_path: Path, tiny_backbone) -> None:
    path = _save(tmp_path / "s.safetensors", class_embedding_prompt(tiny_backbone))
    lineage = parent_lineage(str(path), tiny_backbone)
    assert lineage["path"] == str(path.resolve()) and len(lineage["sha256"]) == 64
