"""The contract every prompt head keeps, so training, prompt files and inference need no
knowledge of a particular head.

A head maps *unnormalised* frozen-CLIP image features (N, D) to class logits (N, C), row 0 =
appropriate, row 1 = inappropriate. Heads are ``torch.nn.Module``s; their CLIP towers (if any)
stay frozen, so only what ``parameters()`` yields with ``requires_grad`` is ever trained.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class PromptHead(Protocol):
    """What a prompt head owes everyone who trains, saves, loads or scores with it.

    Attributes:
        kind: how its exported tensors are read back (a key of ``prompt_io.HEAD_LOADERS``).
            A head may save as another kind: CoOp exports plain class embeddings.
        logit_scale: the factor on cosine similarities (1.0 where logits are not cosines).
    """

    kind: str
    logit_scale: float
    training: bool

    @property
    def embed_dim(self) -> int:
        """Width of the image features it takes (CLIP's joint space)."""
        ...

    def __call__(self, image_features: torch.Tensor) -> torch.Tensor: ...

    # the torch.nn.Module methods that training and scoring call
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...

    def cpu(self) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...

    def requires_grad_(self, requires_grad: bool = True) -> Any: ...

    def export_tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to score with it again (never CLIP's weights), on the CPU."""
        ...

    def export_metadata(self) -> dict[str, str]:
        """Head-specific strings for the prompt file (e.g. how CoOp's context was built)."""
        ...


@runtime_checkable
class CosineHead(Protocol):
    """A head whose logits see an image only through its cosines with fixed unit vectors
    (class embeddings, concept phrases): the scorer then computes the cosines of every such
    head in one matrix product over each chunk of features, instead of one normalise and one
    product per head (at LAION scale that product, not reading, is the cost)."""

    def unit_vectors(self) -> torch.Tensor:
        """(K, D): the unit vectors the head compares an image with."""
        ...

    def logits_from_cosines(self, cosines: torch.Tensor) -> torch.Tensor:
        """(N, K) cosines with :meth:`unit_vectors` -> (N, C) logits, equal to ``head(x)``."""
        ...


def is_trainable(head: PromptHead) -> bool:
    """Whether tuning could change it (zero-shot heads are frozen)."""
    return any(p.requires_grad for p in head.parameters())
