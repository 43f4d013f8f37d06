"""The prompt heads an inference run scores with, and the check that saved embeddings suit
them. One head (``prompt.path``) or several (``heads:``), all applied to the same features."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from q16.errors import Q16Error
from q16.inference.settings import HeadSpec
from q16.models.backbone import Backbone, BackboneSpec, base_model_name
from q16.models.concepts import ConceptHead, encode_concept_set, read_concept_set
from q16.models.paper_assets import default_prompt_file
from q16.models.prompt_head import PromptHead
from q16.models.prompt_io import PromptMetadata, load_prompt_for, prompt_file
from q16.models.prompts import class_embedding_prompt
from q16.sources.base import EmbeddingSource, InferenceSource

ZEROSHOT = "zeroshot"
CONCEPT_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedHead:
    """A ``heads:`` entry ready to score: its head, and how the summary names it."""

    name: str
    head: PromptHead
    source: str
    """The prompt file's resolved path, or ``zeroshot``."""
    threshold: float
    threshold_from: str
    """``heads`` (the entry's own), ``prompt file`` (its stored threshold) or
    ``infer.threshold``."""
    category: str | None = None
    """The concept-set category it scores (None: not a concept set, or all its categories)."""


def is_concept_file(prompt: str | None) -> bool:
    return bool(prompt) and str(prompt).lower().endswith(CONCEPT_SUFFIXES)


def needs_text_tower(prompt: str | None, spec: BackboneSpec) -> bool:
    """Zero-shot prompts and concept-set YAMLs are encoded at start-up; prompt files are not."""
    if prompt == ZEROSHOT or is_concept_file(prompt):
        return True
    return not prompt and default_prompt_file(spec) is None


def load_heads(
    specs: Sequence[HeadSpec], backbone: Backbone, default_threshold: float, warn: bool = True
) -> list[LoadedHead]:
    """Every ``heads:`` entry, in order (the first is the primary head)."""
    loaded = []
    for spec in specs:
        head, source, meta = _load(spec.prompt, backbone, warn)
        category = spec.category
        if isinstance(head, ConceptHead):
            if category is None and spec.name in head.names:
                category = spec.name
            if category is not None:
                head = head.category(category)
        elif category is not None:
            raise Q16Error(
                f"heads: {spec.name} has category={category!r} but its prompt "
                "is not a concept set (a .yaml or a file from encode_concepts.py)"
            )
        if spec.threshold is not None:
            threshold, origin = spec.threshold, "heads"
        elif meta is not None and meta.threshold is not None:
            threshold, origin = float(meta.threshold), "prompt file"
            if meta.threshold_from:
                origin += f" ({meta.threshold_from})"
        else:
            threshold, origin = default_threshold, "infer.threshold"
        loaded.append(LoadedHead(spec.name, head, source, threshold, origin, category))
    return loaded


log = logging.getLogger(__name__)


def load_head(path: str | None, backbone: Backbone, warn: bool = True) -> tuple[PromptHead, str]:
    """The prompt to score with, and how the summary and fingerprint name it.

    Without ``prompt.path``: the paper's learned prompts where they exist for the model and the
    weights are OpenAI's; else the hand-written zero-shot prompts, with a warning.
    """
    head, source, _ = _load(path, backbone, warn)
    return head, source


def _load(
    path: str | None, backbone: Backbone, warn: bool
) -> tuple[PromptHead, str, PromptMetadata | None]:
    spec = backbone.spec
    if path == ZEROSHOT:
        return class_embedding_prompt(backbone, trainable=False), ZEROSHOT, None
    if is_concept_file(path):
        assert path is not None
        resolved = Path(path).expanduser().resolve()
        concepts = encode_concept_set(backbone, read_concept_set(resolved))
        return concepts, str(resolved), None
    if not path:
        default = default_prompt_file(spec)
        if default is None:
            if warn:
                log.warning(
                    "no prompt.path given: scoring with the hand-written zero-shot prompts; "
                    "prompts tuned with train.py are far more accurate "
                    "(prompt.path=.../prompts.safetensors)"
                )
            return class_embedding_prompt(backbone, trainable=False), ZEROSHOT, None
        if warn:
            log.info(
                "no prompt.path given: scoring with the paper's learned prompts for %s "
                "(ml-research/Q16, MIT license; learned on SMID with OpenAI's weights)",
                base_model_name(spec.name),
            )
        path = str(default)
    head, meta = load_prompt_for(path, backbone)
    return head, str(prompt_file(path, spec.name).resolve()), meta


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


@dataclass(frozen=True)
class RunHeads:
    """What a run scores with: the primary head (``p_inappropriate``/``flagged``) and, with
    ``heads:``, every entry (the first is the primary)."""

    head: PromptHead
    source: str
    threshold: float
    heads: tuple[LoadedHead, ...] | None = None

    @classmethod
    def load(
        cls,
        specs: Sequence[HeadSpec] | None,
        prompt_path: str | None,
        backbone: Backbone,
        threshold: float,
        warn: bool = True,
    ) -> RunHeads:
        """Without ``heads:`` exactly today's single head from ``prompt.path``."""
        if specs is None:
            head, source = load_head(prompt_path, backbone, warn=warn)
            return cls(head, source, threshold)
        loaded = tuple(load_heads(specs, backbone, threshold, warn=warn))
        return cls(loaded[0].head, loaded[0].source, loaded[0].threshold, loaded)

    def named(self) -> dict[str, PromptHead] | None:
        return {h.name: h.head for h in self.heads} if self.heads else None

    def thresholds(self) -> tuple[tuple[str, float], ...]:
        return tuple((h.name, h.threshold) for h in self.heads or ())

    def fingerprint(self) -> list[tuple[str, str, str | None, float]] | None:
        if self.heads is None:
            return None
        return [(h.name, h.source, h.category, h.threshold) for h in self.heads]

    def summary(self) -> tuple[dict[str, object], ...] | None:
        if self.heads is None:
            return None
        return tuple(
            {
                "name": h.name,
                "prompt_source": h.source,
                "category": h.category,
                "threshold": h.threshold,
                "threshold_from": h.threshold_from,
            }
            for h in self.heads
        )
