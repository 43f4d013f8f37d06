"""Concept sets: named categories of phrases, scored as prompt heads.

A concept-set YAML file names phrases that describe ordinary images (``neutral``) and, per
category, phrases that describe what is to be found (``categories``)::

    neutral: ["a photo of an everyday scene", "a photo of people at work"]
    categories:
      violence: ["a photo of a gun pointed at a person", "a photo of a fist fight"]

An image's score on a category is ``softmax(logit_scale * [max cos(image, neutral phrase),
max cos(image, category phrase)])[1]``: the nearest phrase decides each side (a category is as
present as its best-matching phrase, as in CLIP's zero-shot ensembles read per phrase), and the
two-way softmax at CLIP's own logit scale (100) puts it on the same footing as the paper's
two-prompt heads, so one threshold reads the same way. It is uncalibrated until checked on
labelled data (``evaluate.py``): the phrases are a prior, not a measurement.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from q16.errors import Q16Error
from q16.models.backbone import Backbone
from q16.userfiles import load_yaml, read_user_text

NAME = re.compile(r"[a-z0-9_]{1,64}")
"""Category (and head) names: they become parquet and CSV column names."""
MAX_PHRASES = 1000
MAX_PHRASE_CHARS = 1000
MAX_FILE_BYTES = 10_000_000
MAX_CATEGORIES = 256
"""Categories of one concept set (each is a head's worth of phrases)."""
MAX_TOTAL_PHRASES = 10_000
"""Phrases of one concept set, neutral included: what the text tower encodes at start-up."""
CONCEPT_LOGIT_SCALE = 100.0
CATEGORY_PREFIX = "category."
"""Exported tensors: ``neutral`` and ``category.<000>.<name>`` (one row per phrase)."""


@dataclass(frozen=True)
class ConceptSet:
    """A parsed concept-set file: neutral phrases and phrases per category (in file order)."""

    neutral: tuple[str, ...]
    categories: dict[str, tuple[str, ...]]


def _phrases(path: Path, where: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise Q16Error(f"{path}: {where} must be a non-empty list of phrases")
    if len(value) > MAX_PHRASES:
        raise Q16Error(f"{path}: {where} has {len(value)} phrases; at most {MAX_PHRASES}")
    for phrase in value:
        if not isinstance(phrase, str) or not phrase.strip():
            raise Q16Error(f"{path}: {where} holds {phrase!r}; every phrase must be text")
        if len(phrase) > MAX_PHRASE_CHARS:
            raise Q16Error(f"{path}: a phrase of {where} is over {MAX_PHRASE_CHARS} characters")
    return tuple(" ".join(p.split()) for p in value)


def read_concept_set(path: str | Path) -> ConceptSet:
    """Parse and check a concept-set YAML (hostile input: every problem is one Q16Error)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise Q16Error(f"concept set {str(path)!r} does not exist")
    text = read_user_text(path, "concept set", MAX_FILE_BYTES)
    data = load_yaml(text, str(path), "concept set")
    if not isinstance(data, dict):
        raise Q16Error(f"{path}: a concept set is a mapping with neutral: and categories:")
    unknown = sorted(str(k) for k in data if k not in ("neutral", "categories", "note"))
    if unknown:
        raise Q16Error(f"{path}: unknown key(s) {', '.join(unknown)}; use neutral, categories")
    categories = data.get("categories")
    if not isinstance(categories, dict) or not categories:
        raise Q16Error(f"{path}: categories: must map category names to lists of phrases")
    if len(categories) > MAX_CATEGORIES:
        raise Q16Error(f"{path}: {len(categories):,} categories; at most {MAX_CATEGORIES}")
    parsed = {}
    for name, phrases in categories.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise Q16Error(
                f"{path}: category name {name!r} must be 1-64 of a-z, 0-9 and _ (it names "
                "the p_<name>/flagged_<name> columns)"
            )
        parsed[name] = _phrases(path, f"category {name}", phrases)
    neutral = _phrases(path, "neutral", data.get("neutral"))
    total = len(neutral) + sum(map(len, parsed.values()))
    if total > MAX_TOTAL_PHRASES:
        raise Q16Error(f"{path}: {total:,} phrases in all; at most {MAX_TOTAL_PHRASES:,}")
    return ConceptSet(neutral, parsed)


def _max_cos(image: torch.Tensor, phrases: torch.Tensor) -> torch.Tensor:
    return (image @ F.normalize(phrases, dim=-1).t()).amax(dim=-1)


class ConceptHead(nn.Module):
    """One or more categories of a concept set against its neutral phrases (frozen).

    With several categories an image scores by its best category ("any of these"); a heads
    entry picks one with :meth:`category`.
    """

    kind = "concepts"
    neutral: torch.Tensor

    def __init__(
        self,
        neutral: torch.Tensor,
        categories: Mapping[str, torch.Tensor],
        logit_scale: float = CONCEPT_LOGIT_SCALE,
    ) -> None:
        super().__init__()
        if not categories:
            raise ValueError("a concept head needs at least one category")
        self.register_buffer("neutral", neutral.detach().float().clone())
        self.names = list(categories)
        for i, name in enumerate(self.names):
            self.register_buffer(f"_category_{i}", categories[name].detach().float().clone())
        self.logit_scale = float(logit_scale)

    @property
    def embed_dim(self) -> int:
        return int(self.neutral.shape[-1])

    def phrases(self, name: str) -> torch.Tensor:
        tensor: torch.Tensor = getattr(self, f"_category_{self.names.index(name)}")
        return tensor

    def category(self, name: str) -> ConceptHead:
        """The head of one category (same neutral phrases and scale)."""
        if name not in self.names:
            raise Q16Error(f"concept set has no category {name!r} (it has {', '.join(self.names)})")
        return ConceptHead(self.neutral, {name: self.phrases(name)}, self.logit_scale)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        image = F.normalize(image_features.float(), dim=-1)
        found = torch.stack([_max_cos(image, self.phrases(n)) for n in self.names]).amax(dim=0)
        return self.logit_scale * torch.stack([_max_cos(image, self.neutral), found], dim=-1)

    def unit_vectors(self) -> torch.Tensor:
        groups = [self.neutral, *(self.phrases(n) for n in self.names)]
        return F.normalize(torch.cat(groups), dim=-1)

    def logits_from_cosines(self, cosines: torch.Tensor) -> torch.Tensor:
        sizes = [len(self.neutral), *(len(self.phrases(n)) for n in self.names)]
        neutral, *categories = (c.amax(dim=-1) for c in cosines.split(sizes, dim=-1))
        found = torch.stack(categories).amax(dim=0)
        return self.logit_scale * torch.stack([neutral, found], dim=-1)

    def export_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {"neutral": self.neutral.cpu().contiguous()}
        for i, name in enumerate(self.names):  # numbered: safetensors sorts its keys
            tensors[f"{CATEGORY_PREFIX}{i:03d}.{name}"] = self.phrases(name).cpu().contiguous()
        return tensors

    def export_metadata(self) -> dict[str, str]:
        return {"categories": ",".join(self.names)}

    @classmethod
    def from_export(cls, tensors: dict[str, torch.Tensor], logit_scale: float) -> ConceptHead:
        """Back from ``export_tensors()`` (categories in file order)."""
        categories = {}
        for key in sorted(k for k in tensors if k.startswith(CATEGORY_PREFIX)):
            name = key[len(CATEGORY_PREFIX) :].partition(".")[2]
            if not NAME.fullmatch(name) or name in categories:
                raise ValueError(f"bad category tensor {key!r}")
            categories[name] = tensors[key]
        if tensors["neutral"].ndim != 2 or any(t.ndim != 2 for t in categories.values()):
            raise ValueError("concept tensors must be (phrases, D)")
        return cls(tensors["neutral"], categories, logit_scale)


def encode_concept_set(
    backbone: Backbone, concepts: ConceptSet, logit_scale: float = CONCEPT_LOGIT_SCALE
) -> ConceptHead:
    """Every phrase through the text tower once (normalised rows, on the CPU)."""

    def encode(phrases: tuple[str, ...]) -> torch.Tensor:
        with torch.no_grad():
            return F.normalize(backbone.encode_text(list(phrases)).float(), dim=-1).cpu()

    categories = {name: encode(phrases) for name, phrases in concepts.categories.items()}
    return ConceptHead(encode(concepts.neutral), categories, logit_scale)
