"""CoOp's ``TextEncoder``: open_clip's text tower run on token *embeddings* instead of ids,
so that learned context vectors can be spliced into a prompt (:mod:`q16.models.coop`)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from open_clip.transformer import text_global_pool
from torch import nn

from q16.errors import Q16Error


class TextEncoder(nn.Module):
    """open_clip's ``encode_text`` from token *embeddings*, on a frozen float32 copy of the tower.

    A copy (not a reference) keeps moving the head between devices from moving the backbone's
    text tower under other users of the backbone.
    """

    attn_mask: torch.Tensor | None
    positional_embedding: nn.Parameter
    text_projection: nn.Parameter | nn.Linear | None

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        tower, pool_type, eos_id = _text_tower(clip_model)
        self.token_embedding: nn.Embedding = copy.deepcopy(tower.token_embedding)
        self.positional_embedding = copy.deepcopy(tower.positional_embedding)
        self.transformer: nn.Module = copy.deepcopy(tower.transformer)
        self.ln_final: nn.Module = copy.deepcopy(tower.ln_final)
        self.text_projection = copy.deepcopy(tower.text_projection)
        mask = tower.attn_mask
        self.register_buffer("attn_mask", None if mask is None else mask.clone(), persistent=False)
        self.pool_type = pool_type
        self.eos_id = eos_id
        self.float().eval().requires_grad_(False)

    @property
    def width(self) -> int:
        return int(self.token_embedding.embedding_dim)

    @property
    def output_dim(self) -> int:
        proj = self.text_projection
        if proj is None:
            return self.width
        return int(proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1])

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Word embeddings of token ids, (C, L) -> (C, L, W)."""
        return self.token_embedding(tokens.to(self.positional_embedding.device))

    def forward(self, embeddings: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Unnormalised text features (C, D); ``tokens`` only locate the pooled (EOT) position."""
        x = embeddings + self.positional_embedding
        mask = self.attn_mask
        if mask is not None and self.pool_type in ("argmax", "eos"):
            # causal: positions after the last pooled token cannot change it, so skip them
            # (about 4x less work for short prompts; the result is the same)
            length = int(_pooled_index(tokens, self.pool_type, self.eos_id).max()) + 1
            x, tokens, mask = x[:, :length], tokens[:, :length], mask[:length, :length]
        x = self.transformer(x, attn_mask=mask)  # open_clip 3.x: batch-first in and out
        x = self.ln_final(x)
        x = text_global_pool(x, tokens, self.pool_type, eos_token_id=self.eos_id)
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x if self.text_projection is None else x @ self.text_projection


def _pooled_index(tokens: torch.Tensor, pool_type: str, eos_id: int | None) -> torch.Tensor:
    """The position ``text_global_pool`` reads for each row."""
    if pool_type == "eos" and eos_id is not None:
        return tokens.eq(eos_id).int().argmax(dim=-1)
    return tokens.argmax(dim=-1)


def _text_tower(clip_model: nn.Module) -> tuple[Any, str, int | None]:
    """The text tower's pieces, pooling type and EOS id, as ``encode_text`` uses them.

    ``open_clip.CLIP`` keeps the pieces at top level; ``CustomTextCLIP`` in ``.text``.
    """
    model: Any = clip_model  # open_clip's towers are duck-typed; check what we use below
    if hasattr(model, "text_pool_type"):
        tower, pool_type, eos_id = model, model.text_pool_type, getattr(model, "text_eos_id", None)
    else:
        tower = getattr(model, "text", model)
        pool_type, eos_id = getattr(tower, "pool_type", ""), getattr(tower, "eos_id", None)
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask")
    extras = getattr(tower, "cls_emb", None) is not None or getattr(tower, "use_pad_mask", False)
    if extras or not pool_type or not all(hasattr(tower, name) for name in needed):
        raise Q16Error(
            "prompt=coop needs an open_clip CLIP-style text transformer; "
            f"{type(clip_model).__name__} has another text tower; use prompt=soft instead"
        )
    return tower, str(pool_type), eos_id
