"""The prompt-head contract: every head keeps it, the two simple heads behave as documented,
and prompt files load through the {kind: loader} table."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from q16.errors import Q16Error
from q16.models.backbone import Backbone
from q16.models.coop import coop_prompt
from q16.models.prompt_head import PromptHead, is_trainable
from q16.models.prompt_io import HEAD_LOADERS, PromptMetadata, load_prompt, save_prompt
from q16.models.prompts import (
    PAPER_CLASS_PROMPTS,
    ClassEmbeddingHead,
    LinearProbe,
    class_embedding_prompt,
    encode_class_prompts,
    linear_probe,
)


def heads(backbone: Backbone) -> list[PromptHead]:
    return [
        class_embedding_prompt(backbone, trainable=False),
        class_embedding_prompt(backbone),
        linear_probe(backbone),
        coop_prompt(backbone, n_ctx=2),
    ]


def test_every_head_keeps_the_contract(tiny_backbone: Backbone) -> None:
    features = torch.randn(5, tiny_backbone.embed_dim)
    for head in heads(tiny_backbone):
        assert isinstance(head, PromptHead)
        assert head.kind in HEAD_LOADERS  # what it saves as can be read back
        assert head.embed_dim == tiny_backbone.embed_dim
        assert head(features).shape == (5, 2)
        tensors = head.export_tensors()
        assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors.values())
        assert all(isinstance(v, str) for v in head.export_metadata().values())


def test_class_embedding_head_is_scaled_cosine(tiny_backbone: Backbone) -> None:
    vectors = torch.tensor([[3.0, 0.0], [0.0, 0.5]])
    head = ClassEmbeddingHead(vectors, logit_scale=10.0, trainable=False)
    logits = head(torch.tensor([[2.0, 2.0], [0.0, -4.0]]))
    # scale-free in the features and in the class vectors: only directions count
    expected = 10.0 * torch.tensor([[2**-0.5, 2**-0.5], [0.0, -1.0]])
    torch.testing.assert_close(logits, expected)
    assert not is_trainable(head) and head.embed_dim == 2


def test_zeroshot_and_soft_differ_only_in_trainable(tiny_backbone: Backbone) -> None:
    frozen = class_embedding_prompt(tiny_backbone, trainable=False)
    soft = class_embedding_prompt(tiny_backbone)
    torch.testing.assert_close(frozen.class_embeddings, soft.class_embeddings)
    torch.testing.assert_close(
        frozen.class_embeddings, encode_class_prompts(tiny_backbone, PAPER_CLASS_PROMPTS)
    )
    assert is_trainable(soft) and not is_trainable(frozen)


def test_linear_probe_normalises_its_input_and_is_seeded(tiny_backbone: Backbone) -> None:
    probe = linear_probe(tiny_backbone, seed=3)
    features = torch.randn(4, tiny_backbone.embed_dim)
    torch.testing.assert_close(probe(features), probe(7.0 * features))
    expected = F.normalize(features, dim=-1) @ probe.linear.weight.t() + probe.linear.bias
    torch.testing.assert_close(probe(features), expected)
    again = linear_probe(tiny_backbone, seed=3)
    torch.testing.assert_close(probe.linear.weight, again.linear.weight)
    assert not torch.equal(probe.linear.weight, linear_probe(tiny_backbone, seed=4).linear.weight)
    assert is_trainable(probe) and probe.logit_scale == 1.0


@pytest.mark.parametrize("make", [class_embedding_prompt, linear_probe])
def test_loaded_head_is_frozen_and_scores_the_same(tmp_path, tiny_backbone: Backbone, make) -> None:
    head = make(tiny_backbone)
    meta = PromptMetadata(kind=head.kind, embed_dim=head.embed_dim, logit_scale=head.logit_scale)
    loaded, _ = load_prompt(save_prompt(tmp_path / "p.safetensors", head, meta))
    features = torch.randn(6, tiny_backbone.embed_dim)
    torch.testing.assert_close(loaded(features), head(features))
    assert type(loaded) is type(head) and not is_trainable(loaded)


def test_unknown_kind_and_missing_tensors_are_one_line_errors(tmp_path) -> None:
    meta = PromptMetadata(kind="mystery", embed_dim=4)
    save_file({"x": torch.zeros(2, 4)}, str(tmp_path / "a.safetensors"), meta.to_strings())
    with pytest.raises(Q16Error, match="unknown prompt kind 'mystery'"):
        load_prompt(tmp_path / "a.safetensors")
    meta = PromptMetadata(kind=LinearProbe.kind, embed_dim=4)
    save_file({"weight": torch.zeros(2, 4)}, str(tmp_path / "b.safetensors"), meta.to_strings())
    with pytest.raises(Q16Error, match="missing or bad tensors"):
        load_prompt(tmp_path / "b.safetensors")
