"""CoOp (Zhou et al., 2022): learn context *token* embeddings fed through the frozen text tower.

The paper's soft prompt learns one vector per class in CLIP's output space. CoOp instead learns
``n_ctx`` word-embedding vectors that replace the words before each class name
(``[SOS] X X ... X positive. [EOS]``); the prompt stays a sentence the text encoder reads, which
tends to generalise better from few examples. Three small modules, as in CoOp's code:
``TextEncoder`` (the frozen tower, run on embeddings instead of token ids), ``PromptLearner``
(the only trainable parameter) and ``CoOpPrompt`` (composes them into a cosine classifier).

For inference the learned context is encoded once into per-class text embeddings, so a saved
CoOp prompt loads as a plain ``ClassEmbeddingHead`` and costs the same as ``prompt=soft``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from q16.errors import Q16Error
from q16.models.backbone import Backbone
from q16.models.text_encoder import TextEncoder

DEFAULT_CLASS_NAMES: tuple[str, str] = ("positive", "negative")
"""Matches the paper's prompts ("This image is about something positive/negative")."""

CTX_KEY = "coop.ctx"
"""Extra tensor in a saved prompt file: the raw learned context, for resuming training."""

_PLACEHOLDER = "X"

Tokenizer = Callable[[list[str]], torch.Tensor]


class PromptLearner(nn.Module):
    """Owns the context vectors; builds ``[prefix][ctx][class name . EOS pad]`` embeddings.

    Args:
        text_encoder: gives the frozen word embeddings of prefix and class-name tokens.
        tokenizer: the backbone's open_clip tokenizer.
        class_names: one name per label (row 0 = appropriate, row 1 = inappropriate).
        n_ctx: number of context vectors (ignored when ``ctx_init`` is given).
        ctx_init: words to start from ("this image is about something"); sets ``n_ctx``.
        class_specific: one context per class instead of one shared by all classes.
        generator: seeds the random initialisation (std 0.02, as CoOp).
    """

    tokens: torch.Tensor
    prefix: torch.Tensor
    suffix: torch.Tensor

    def __init__(
        self,
        text_encoder: TextEncoder,
        tokenizer: Tokenizer,
        class_names: Sequence[str],
        n_ctx: int = 16,
        ctx_init: str | None = None,
        class_specific: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        n_cls = len(class_names)
        if ctx_init:
            init_tokens = _word_tokens(tokenizer, ctx_init)
            n_ctx = len(init_tokens)
        if n_ctx < 1:
            raise Q16Error(f"prompt.head.n_ctx={n_ctx}: need at least one context vector")
        placeholder = " ".join([_PLACEHOLDER] * n_ctx)
        tokens = tokenizer([f"{placeholder} {name}." for name in class_names])
        start = _context_start(tokenizer, tokens, n_ctx, class_names)
        with torch.no_grad():
            embedded = text_encoder.embed(tokens).float().cpu()
            if ctx_init:
                init = text_encoder.embed(torch.tensor(init_tokens)[None]).float().cpu()[0]
                ctx = init.expand(n_cls, -1, -1).clone() if class_specific else init.clone()
            else:
                width = text_encoder.width
                shape = (n_cls, n_ctx, width) if class_specific else (n_ctx, width)
                ctx = torch.randn(shape, generator=generator) * 0.02
        self.ctx = nn.Parameter(ctx)
        # derived from frozen weights + class names: rebuilt on construction, never saved
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("prefix", embedded[:, :start], persistent=False)
        self.register_buffer("suffix", embedded[:, start + n_ctx :], persistent=False)
        self.n_ctx = n_ctx
        self.class_specific = class_specific
        self.class_names = list(class_names)

    def forward(self) -> torch.Tensor:
        """Prompt embeddings (C, L, W) with the context spliced in."""
        ctx = self.ctx if self.class_specific else self.ctx.expand(len(self.class_names), -1, -1)
        return torch.cat([self.prefix, ctx, self.suffix], dim=1)


def _word_tokens(tokenizer: Tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without the tokenizer's start/end/padding tokens."""
    with_text = tokenizer([text])[0].tolist()
    empty = tokenizer([""])[0].tolist()
    start = next(i for i, (a, b) in enumerate(zip(with_text, empty, strict=True)) if a != b)
    n_special = sum(1 for t in empty if t != 0) - start  # end-of-text (and anything after)
    words = [t for t in with_text[start:] if t != 0]
    return words[: len(words) - n_special]


def _context_start(
    tokenizer: Tokenizer, tokens: torch.Tensor, n_ctx: int, class_names: Sequence[str]
) -> int:
    """Where the placeholder run begins (1 after CLIP's [SOS]); refuses prompts that get cut."""
    (x_id,) = _word_tokens(tokenizer, _PLACEHOLDER)
    start = tokens[0].tolist().index(x_id)
    longest = max(len(_word_tokens(tokenizer, f"{name}.")) for name in class_names)
    if start + n_ctx + longest + 1 > tokens.shape[1]:
        raise Q16Error(
            f"prompt.head.n_ctx={n_ctx} plus the class names does not fit the text context "
            f"({tokens.shape[1]} tokens); use fewer context vectors or shorter class names"
        )
    return start


class CoOpPrompt(nn.Module):
    """Cosine classifier whose class vectors are the encoded learned prompts.

    Takes unnormalised image features (N, D), returns ``logit_scale * cos`` logits (N, C), like
    the heads in :mod:`q16.models.prompts`. In eval mode under no-grad the text features are
    encoded once and reused until the context changes.
    """

    kind = "class_embeddings"  # what it saves as: inference needs no text encoder

    def __init__(
        self, text_encoder: TextEncoder, prompt_learner: PromptLearner, logit_scale: float = 100.0
    ) -> None:
        super().__init__()
        self.text_encoder = text_encoder
        self.prompt_learner = prompt_learner
        self.logit_scale = float(logit_scale)
        self._cache: tuple[tuple, torch.Tensor] | None = None
        # checkpoints hold the context only; the frozen tower is rebuilt from the backbone
        self.register_state_dict_post_hook(_drop_frozen_state)
        self.register_load_state_dict_pre_hook(_keep_frozen_state)

    @property
    def embed_dim(self) -> int:
        return self.text_encoder.output_dim

    @property
    def class_names(self) -> list[str]:
        return self.prompt_learner.class_names

    def train(self, mode: bool = True) -> CoOpPrompt:
        """Lightning calls ``.train()``; the frozen tower must stay in eval mode regardless."""
        super().train(mode)
        self.text_encoder.eval()
        self._cache = None
        return self

    def text_features(self) -> torch.Tensor:
        """L2-normalised class embeddings (C, D)."""
        ctx = self.prompt_learner.ctx
        cacheable = not self.training and not torch.is_grad_enabled()
        key = (ctx._version, ctx.device, ctx.dtype, ctx.data_ptr())
        if cacheable and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        tokens = self.prompt_learner.tokens
        features = F.normalize(self.text_encoder(self.prompt_learner(), tokens), dim=-1)
        self._cache = (key, features) if cacheable else None
        return features

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        image = F.normalize(image_features.float(), dim=-1)
        return self.logit_scale * image @ self.text_features().t()

    @torch.no_grad()
    def export_tensors(self) -> dict[str, torch.Tensor]:
        """Encoded class embeddings (what inference needs) plus the raw context (to resume)."""
        was_training = self.training
        self.eval()
        embeddings = self.text_features().float().cpu().contiguous()
        self.train(was_training)
        ctx = self.prompt_learner.ctx.detach().float().cpu().contiguous()
        return {"class_embeddings": embeddings, CTX_KEY: ctx}

    def export_metadata(self) -> dict[str, str]:
        """String metadata for the prompt file, so a reader knows how the context was built."""
        learner = self.prompt_learner
        return {
            "coop_n_ctx": str(learner.n_ctx),
            "coop_class_specific": str(learner.class_specific).lower(),
            "coop_class_names": ",".join(learner.class_names),
        }


def _drop_frozen_state(
    module: CoOpPrompt, state_dict: dict[str, Any], prefix: str, _metadata: Any
) -> None:
    for key in [k for k in state_dict if k.startswith(f"{prefix}text_encoder.")]:
        del state_dict[key]


def _keep_frozen_state(
    module: CoOpPrompt, state_dict: dict[str, Any], prefix: str, *_: Any
) -> None:
    """Let a context-only state dict load strictly: the tower keeps its current weights."""
    frozen = module.text_encoder.state_dict(prefix=f"{prefix}text_encoder.", keep_vars=True)
    for key, value in frozen.items():
        state_dict.setdefault(key, value)


def load_context(path: str) -> torch.Tensor:
    """The raw CoOp context saved in a prompt file (to resume or fine-tune further)."""
    with safe_open(str(path), framework="pt") as handle:
        if CTX_KEY not in handle.keys():  # noqa: SIM118 - safe_open has no __contains__
            raise Q16Error(f"{path}: no CoOp context in this prompt file (was it prompt=coop?)")
        return handle.get_tensor(CTX_KEY)


def coop_prompt(
    backbone: Backbone,
    class_names: Sequence[str] = DEFAULT_CLASS_NAMES,
    n_ctx: int = 16,
    ctx_init: str | None = None,
    class_specific: bool = False,
    logit_scale: float = 100.0,
    seed: int = 0,
    init_from: str | None = None,
) -> CoOpPrompt:
    """Build a CoOp head from a loaded backbone (the factory ``prompt=coop`` instantiates).

    Args:
        init_from: a prompt file from an earlier ``prompt=coop`` run; its context replaces the
            initialisation (``n_ctx``/``class_specific`` must match it).
    """
    encoder = TextEncoder(backbone.model)
    generator = torch.Generator().manual_seed(int(seed))
    learner = PromptLearner(
        encoder, backbone.tokenizer, class_names, n_ctx, ctx_init, class_specific, generator
    )
    if init_from:
        ctx = load_context(init_from)
        if ctx.shape != learner.ctx.shape:
            raise Q16Error(
                f"{init_from}: saved context has shape {tuple(ctx.shape)}, this prompt needs "
                f"{tuple(learner.ctx.shape)}; match prompt.head.n_ctx/class_specific/class_names"
            )
        learner.ctx.data.copy_(ctx)
    head = CoOpPrompt(encoder, learner, logit_scale)
    return head.to(backbone.device)
