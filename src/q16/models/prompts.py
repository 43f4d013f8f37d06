"""The two simple prompt heads (class embeddings, linear probe) and their factories.

Both keep the contract in :mod:`q16.models.prompt_head`; CoOp lives in :mod:`q16.models.coop`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from q16.models.backbone import Backbone

PAPER_CLASS_PROMPTS: tuple[tuple[str, ...], ...] = (
    ("This image is about something positive",),
    ("This image is about something negative",),
)
"""The paper's hand-written prompts; row 0 = appropriate, row 1 = inappropriate."""


class ClassEmbeddingHead(nn.Module):
    """Cosine classifier in CLIP's joint space: logits = scale * cos(image, class vector).

    With ``trainable=False`` this is zero-shot CLIP; with ``trainable=True`` it is the paper's
    soft prompt (one learnable vector per class, initialised from the encoded text prompts).
    """

    kind = "class_embeddings"

    def __init__(
        self, class_embeddings: torch.Tensor, logit_scale: float = 100.0, trainable: bool = True
    ) -> None:
        super().__init__()
        self.class_embeddings = nn.Parameter(
            class_embeddings.detach().clone().float(), requires_grad=trainable
        )
        self.logit_scale = float(logit_scale)

    @property
    def embed_dim(self) -> int:
        return int(self.class_embeddings.shape[-1])

    def normalized_class_embeddings(self) -> torch.Tensor:
        return F.normalize(self.class_embeddings, dim=-1)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        image = F.normalize(image_features.float(), dim=-1)
        return self.logit_scale * image @ self.normalized_class_embeddings().t()

    def unit_vectors(self) -> torch.Tensor:
        return self.normalized_class_embeddings()

    def logits_from_cosines(self, cosines: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * cosines

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return {"class_embeddings": self.class_embeddings.detach().float().cpu().contiguous()}

    def export_metadata(self) -> dict[str, str]:
        return {}

    @classmethod
    def from_export(
        cls, tensors: dict[str, torch.Tensor], logit_scale: float
    ) -> ClassEmbeddingHead:
        """A frozen head from ``export_tensors()`` output (CoOp's files load this way too)."""
        return cls(tensors["class_embeddings"], logit_scale, trainable=False)


class LinearProbe(nn.Module):
    """The paper's baseline: a linear layer on L2-normalised frozen image features."""

    kind = "linear"
    logit_scale = 1.0  # its logits are the layer's own, not scaled cosines

    def __init__(self, embed_dim: int, num_classes: int = 2) -> None:
        super().__init__()
        self.linear = nn.Linear(embed_dim, num_classes)

    @property
    def embed_dim(self) -> int:
        return int(self.linear.in_features)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.linear(F.normalize(image_features.float(), dim=-1))

    def export_tensors(self) -> dict[str, torch.Tensor]:
        return {
            "weight": self.linear.weight.detach().float().cpu().contiguous(),
            "bias": self.linear.bias.detach().float().cpu().contiguous(),
        }

    def export_metadata(self) -> dict[str, str]:
        return {}

    @classmethod
    def from_export(cls, tensors: dict[str, torch.Tensor], logit_scale: float) -> LinearProbe:
        """A frozen probe from ``export_tensors()`` output (``logit_scale`` is not used)."""
        weight = tensors["weight"]
        head = cls(weight.shape[1], weight.shape[0])
        head.linear.load_state_dict({"weight": weight, "bias": tensors["bias"]})
        return head.requires_grad_(False)


def encode_class_prompts(
    backbone: Backbone, class_prompts: Sequence[Sequence[str]]
) -> torch.Tensor:
    """One embedding per class; several templates for a class are averaged (an ensemble)."""
    rows = []
    for templates in class_prompts:
        if isinstance(templates, str):
            templates = [templates]
        embeddings = F.normalize(backbone.encode_text(list(templates)), dim=-1)
        rows.append(F.normalize(embeddings.mean(dim=0), dim=-1))
    return torch.stack(rows).cpu()


def class_embedding_prompt(
    backbone: Backbone,
    class_prompts: Sequence[Sequence[str]] | None = None,
    logit_scale: float = 100.0,
    trainable: bool = True,
) -> ClassEmbeddingHead:
    """Class vectors from encoded text prompts: zero-shot CLIP when frozen, the paper's soft
    prompt when trainable (``prompt=zeroshot`` / ``prompt=soft``).

    Args:
        class_prompts: templates per class (averaged); ``None`` = the paper's pair.
    """
    embeddings = encode_class_prompts(backbone, class_prompts or PAPER_CLASS_PROMPTS)
    return ClassEmbeddingHead(embeddings, logit_scale=logit_scale, trainable=trainable)


def linear_probe(backbone: Backbone, num_classes: int = 2, seed: int = 0) -> LinearProbe:
    """A freshly initialised probe (seeded, so 'before tuning' is reproducible)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LinearProbe(backbone.embed_dim, num_classes)
