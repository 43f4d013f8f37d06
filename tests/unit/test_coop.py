"""CoOp head: shapes, frozen-tower discipline, ctx_init, caching, save/load, inference parity."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from q16.errors import Q16Error
from q16.models.backbone import Backbone
from q16.models.coop import CTX_KEY, CoOpPrompt, coop_prompt, load_context
from q16.models.prompt_io import PromptMetadata, load_prompt, save_prompt
from q16.models.prompts import ClassEmbeddingHead
from q16.models.text_encoder import TextEncoder
from q16.training.tuner import PromptTuner, predict_proba

PAPER_CONTEXT = "this image is about something"


def test_text_encoder_matches_open_clip_encode_text(tiny_backbone: Backbone) -> None:
    encoder = TextEncoder(tiny_backbone.model)
    tokens = tiny_backbone.tokenizer(["This image is about something negative", "a dog."])
    ours = encoder(encoder.embed(tokens), tokens)
    torch.testing.assert_close(
        ours, tiny_backbone.encode_text(["This image is about something negative", "a dog."])
    )


@pytest.mark.parametrize("class_specific", [False, True])
def test_forward_backward_only_context_gets_gradients(
    tiny_backbone: Backbone, class_specific: bool
) -> None:
    head = coop_prompt(tiny_backbone, n_ctx=4, class_specific=class_specific)
    head.train()
    features = torch.randn(5, tiny_backbone.embed_dim)
    logits = head(features)
    assert logits.shape == (5, 2)
    F.cross_entropy(logits, torch.tensor([0, 1, 0, 1, 1])).backward()

    ctx = head.prompt_learner.ctx
    assert ctx.shape == ((2, 4, 64) if class_specific else (4, 64))
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0
    assert [name for name, p in head.named_parameters() if p.requires_grad] == [
        "prompt_learner.ctx"
    ]
    assert all(p.grad is None for p in head.text_encoder.parameters())
    assert not head.text_encoder.training
    assert not any(m.training for m in head.text_encoder.modules())


def test_optimizer_sees_context_only_and_tower_stays_frozen(tiny_backbone: Backbone) -> None:
    head = coop_prompt(tiny_backbone, n_ctx=4)
    tuner = PromptTuner(head, partial(torch.optim.AdamW, lr=0.1))
    tuner.train()  # what Lightning does at the start of fitting
    assert not head.text_encoder.training
    optimizer = tuner.configure_optimizers()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(params) == 1 and params[0] is head.prompt_learner.ctx

    tower_before = {k: v.clone() for k, v in head.text_encoder.state_dict().items()}
    backbone_before = tiny_backbone.model.token_embedding.weight.clone()
    before = head.prompt_learner.ctx.detach().clone()
    loss = F.cross_entropy(head(torch.randn(8, 64)), torch.randint(0, 2, (8,)))
    loss.backward()
    optimizer.step()
    assert not torch.equal(head.prompt_learner.ctx, before)
    for key, value in head.text_encoder.state_dict().items():
        assert torch.equal(value, tower_before[key]), key
    assert torch.equal(tiny_backbone.model.token_embedding.weight, backbone_before)


def test_head_owns_a_copy_of_the_tower(tiny_backbone: Backbone) -> None:
    """Moving the head (Lightning: .to(cuda) then .cpu()) must not move the shared backbone."""
    head = coop_prompt(tiny_backbone, n_ctx=2).double()
    assert head.text_encoder.positional_embedding.dtype == torch.float64
    assert tiny_backbone.model.positional_embedding.dtype == torch.float32
    assert head.text_encoder.token_embedding is not tiny_backbone.model.token_embedding


def test_ctx_init_sets_n_ctx_and_starts_at_the_paper_prompt(tiny_backbone: Backbone) -> None:
    head = coop_prompt(tiny_backbone, ctx_init=PAPER_CONTEXT, n_ctx=16).eval()
    assert head.prompt_learner.n_ctx == 5
    assert head.prompt_learner.ctx.shape == (5, 64)
    expected = F.normalize(
        tiny_backbone.encode_text([f"{PAPER_CONTEXT} positive.", f"{PAPER_CONTEXT} negative."]),
        dim=-1,
    )
    with torch.no_grad():
        torch.testing.assert_close(head.text_features(), expected)

    specific = coop_prompt(tiny_backbone, ctx_init=PAPER_CONTEXT, class_specific=True)
    assert specific.prompt_learner.ctx.shape == (2, 5, 64)
    torch.testing.assert_close(
        specific.prompt_learner.ctx[1], head.prompt_learner.ctx, rtol=0, atol=0
    )


def test_class_names_are_configurable(tiny_backbone: Backbone) -> None:
    head = coop_prompt(
        tiny_backbone, class_names=["appropriate", "offensive content"], ctx_init="a photo of"
    ).eval()
    expected = F.normalize(
        tiny_backbone.encode_text(["a photo of appropriate.", "a photo of offensive content."]),
        dim=-1,
    )
    with torch.no_grad():
        torch.testing.assert_close(head.text_features(), expected)


def test_seed_makes_random_context_reproducible(tiny_backbone: Backbone) -> None:
    a, b = coop_prompt(tiny_backbone, seed=1), coop_prompt(tiny_backbone, seed=1)
    c = coop_prompt(tiny_backbone, seed=2)
    assert a.prompt_learner.ctx.shape == (16, 64)
    assert torch.equal(a.prompt_learner.ctx, b.prompt_learner.ctx)
    assert not torch.equal(a.prompt_learner.ctx, c.prompt_learner.ctx)


def test_context_that_does_not_fit_is_refused(tiny_backbone: Backbone) -> None:
    with pytest.raises(Q16Error, match="does not fit"):
        coop_prompt(tiny_backbone, n_ctx=75)


def test_eval_text_features_are_cached_until_the_context_changes(
    tiny_backbone: Backbone,
) -> None:
    head = coop_prompt(tiny_backbone, n_ctx=4).eval()
    with torch.no_grad():
        first = head.text_features()
        assert head.text_features() is first
        head.prompt_learner.ctx.add_(1.0)
        changed = head.text_features()
    assert not torch.allclose(changed, first)
    head.train()
    assert head.text_features().requires_grad  # training never reuses a cached tensor


def test_state_dict_holds_the_context_only(tiny_backbone: Backbone) -> None:
    head = coop_prompt(tiny_backbone, n_ctx=4, seed=1)
    tuner = PromptTuner(head, partial(torch.optim.AdamW, lr=0.1))
    assert list(tuner.state_dict()) == ["head.prompt_learner.ctx"]
    other = PromptTuner(coop_prompt(tiny_backbone, n_ctx=4, seed=2), tuner.optimizer_factory)
    other.load_state_dict(tuner.state_dict())  # strict: the frozen tower is not "missing"
    assert torch.equal(other.head.prompt_learner.ctx, head.prompt_learner.ctx)


def _save(head: CoOpPrompt, path: Path) -> Path:
    meta = PromptMetadata(
        kind=head.kind,
        embed_dim=head.embed_dim,
        model="q16-tiny",
        logit_scale=head.logit_scale,
        extra=head.export_metadata(),
    )
    return save_prompt(path, head, meta)


@pytest.mark.parametrize("class_specific", [False, True])
def test_saved_prompt_scores_like_the_trained_head(
    tiny_backbone: Backbone, tmp_path: Path, class_specific: bool
) -> None:
    head = coop_prompt(tiny_backbone, n_ctx=4, class_specific=class_specific, seed=3)
    with torch.no_grad():
        head.prompt_learner.ctx.normal_(0, 0.5)  # a "trained" context, far from init
    path = _save(head, tmp_path / "prompts.safetensors")

    loaded, meta = load_prompt(path, model="q16-tiny", embed_dim=64)
    assert isinstance(loaded, ClassEmbeddingHead)
    assert meta.extra["coop_n_ctx"] == "4"
    assert meta.extra["coop_class_specific"] == str(class_specific).lower()
    features = torch.randn(50, 64) * 3
    torch.testing.assert_close(predict_proba(loaded, features), predict_proba(head, features))
    torch.testing.assert_close(loaded(features), head.eval()(features), rtol=1e-5, atol=1e-4)

    assert torch.equal(load_context(str(path)), head.prompt_learner.ctx.detach())
    resumed = coop_prompt(
        tiny_backbone, n_ctx=4, class_specific=class_specific, init_from=str(path)
    )
    assert torch.equal(resumed.prompt_learner.ctx, head.prompt_learner.ctx)


def test_resume_checks_the_context_shape(tiny_backbone: Backbone, tmp_path: Path) -> None:
    path = _save(coop_prompt(tiny_backbone, n_ctx=4), tmp_path / "prompts.safetensors")
    with pytest.raises(Q16Error, match="shape"):
        coop_prompt(tiny_backbone, n_ctx=8, init_from=str(path))
    soft = ClassEmbeddingHead(torch.randn(2, 64))
    soft_path = tmp_path / "soft.safetensors"
    save_prompt(soft_path, soft, PromptMetadata(kind=soft.kind, embed_dim=64))
    with pytest.raises(Q16Error, match="no CoOp context"):
        load_context(str(soft_path))


def test_export_keys(tiny_backbone: Backbone) -> None:
    state = coop_prompt(tiny_backbone, n_ctx=3).export_tensors()
    assert set(state) == {"class_embeddings", CTX_KEY}
    assert state["class_embeddings"].shape == (2, 64)
    torch.testing.assert_close(state["class_embeddings"].norm(dim=-1), torch.ones(2))


@pytest.mark.gpu
def test_head_follows_the_backbone_device_and_leaves_it_there() -> None:
    from q16.models.backbone import BackboneSpec, load_backbone

    backbone = load_backbone(BackboneSpec("q16-tiny", pretrained=None), "cuda")
    head = coop_prompt(backbone, n_ctx=4)
    assert head.prompt_learner.ctx.device.type == "cuda"
    head(torch.randn(3, 64, device="cuda")).sum().backward()
    head.cpu()  # what training.fit.fit_head does after training
    assert backbone.model.token_embedding.weight.device.type == "cuda"
    assert head(torch.randn(3, 64)).shape == (3, 2)
