"""The prompt head an inference run scores with, and the check that saved embeddings suit it."""

from __future__ import annotations

import logging
from pathlib import Path

from q16.errors import Q16Error
from q16.models.backbone import Backbone, base_model_name
from q16.models.paper_assets import PAPER, default_prompt_file, paper_prompt_file
from q16.models.prompt_head import PromptHead
from q16.models.prompt_io import load_prompt
from q16.models.prompts import class_embedding_prompt
from q16.sources.base import EmbeddingSource, InferenceSource

log = logging.getLogger(__name__)


def load_head(path: str | None, backbone: Backbone, warn: bool = True) -> tuple[PromptHead, str]:
    """The prompt to score with, and how the summary and fingerprint name it.

    Without ``prompt.path``: the paper's learned prompts where they exist for the model and the
    weights are OpenAI's; else the hand-written zero-shot prompts, with a warning.
    """
    spec = backbone.spec
    if not path:
        default = default_prompt_file(spec)
        if default is None:
            if warn:
                log.warning(
                    "no prompt.path given: scoring with the hand-written zero-shot prompts; "
                    "prompts tuned with train.py are far more accurate "
                    "(prompt.path=.../prompts.safetensors)"
                )
            return class_embedding_prompt(backbone, trainable=False), "zeroshot"
        if warn:
            log.info(
                "no prompt.path given: scoring with the paper's learned prompts for %s "
                "(ml-research/Q16, MIT license; learned on SMID with OpenAI's weights)",
                base_model_name(spec.name),
            )
        path = str(default)
    elif path == PAPER:
        path = str(paper_prompt_file(spec.name))
    head, _ = load_prompt(
        path,
        model=spec.name,
        pretrained=spec.pretrained,
        quick_gelu=spec.quick_gelu,
        embed_dim=backbone.embed_dim,
    )
    return head, str(Path(path).expanduser().resolve())


def check_embeddings(source: InferenceSource, backbone: Backbone) -> None:
    """Precomputed embeddings are scored only with the encoder that made them."""
    if not isinstance(source, EmbeddingSource):
        return
    space = source.embedding_space()
    if not space.matches(weights=backbone.spec.weights_id, embed_dim=backbone.embed_dim):
        raise Q16Error(
            f"saved embeddings come from model={space.model} "
            f"pretrained={space.pretrained}; pass the same model to re-score them"
        )
