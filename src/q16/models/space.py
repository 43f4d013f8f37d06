"""A model as an embedding space only: its name, weights and width, with no tower built.

Scoring precomputed image embeddings needs the prompt head and nothing of CLIP but which space
the embeddings are in. The width comes from open_clip's model config (JSON), so such a run
never instantiates the image tower and never fetches weights.
"""

from __future__ import annotations

from typing import Any

import torch

from q16.errors import Q16Error
from q16.models.backbone import Backbone, BackboneSpec, open_clip_name, register_tiny_model


class _NoPreprocess:
    def __repr__(self) -> str:
        return "embeddings-only (no image preprocessing)"

    def __call__(self, image: Any) -> Any:
        raise Q16Error("this run reads precomputed embeddings; it decodes no images")


def _no_tokenizer(texts: Any) -> Any:
    raise Q16Error(
        "this run reads precomputed embeddings and builds no text tower: zero-shot prompts "
        "need it; pass prompt.path= a prompt file (or the paper's prompts, prompt.path=paper)"
    )


class EmbeddingsOnly(torch.nn.Module):
    """Stands in for CLIP: says its width and device; has no towers."""

    def __init__(self, embed_dim: int, device: torch.device) -> None:
        super().__init__()
        self.visual = torch.nn.Module()
        self.visual.output_dim = embed_dim  # type: ignore[assignment]
        self.anchor = torch.nn.Parameter(torch.zeros(0, device=device), requires_grad=False)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        raise Q16Error("this run reads precomputed embeddings; it has no image tower")

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return _no_tokenizer(tokens)  # type: ignore[no-any-return]


def model_embed_dim(spec: BackboneSpec) -> int:
    """The embedding width from open_clip's model config, without building the model."""
    import open_clip

    register_tiny_model()
    name = open_clip_name(spec)
    config = open_clip.get_model_config(name)
    if not config or "embed_dim" not in config:
        raise Q16Error(
            f"model={spec.name}: no open_clip model config says its embedding width; "
            "an embeddings run needs a known open_clip architecture"
        )
    return int(config["embed_dim"])


def embedding_space_backbone(spec: BackboneSpec, device: torch.device | str = "cpu") -> Backbone:
    """A ``Backbone`` for scoring precomputed embeddings: spec and width, no weights."""
    model = EmbeddingsOnly(model_embed_dim(spec), torch.device(device))
    return Backbone(spec=spec, model=model, preprocess=_NoPreprocess(), tokenizer=_no_tokenizer)
