"""Every cosine head of a run in one matrix product.

A class-embedding or concept head sees an image only through its cosines with a few fixed unit
vectors. Stacking the vectors of all heads gives one (N, D) x (D, K) product and one norm per
chunk of features, where each head on its own would normalise the chunk and multiply again:
at LAION scale (billions of saved embeddings) that repeated work, not reading, was the cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from q16.models.prompt_head import CosineHead, PromptHead

NORM_EPS = 1e-12
"""As ``torch.nn.functional.normalize``: a zero row gives zero cosines, not NaN."""
NARROW = 16
"""Up to this many vectors the product is taken as (K, D) x (D, N): BLAS runs a (N, D) x (D, K)
product with small K several times slower, the two about equal by K = 32 (one thread of this
AVX512 CPU: ``scripts/bench_embeddings.py``, ``scoring_kernel_embeddings_per_s``)."""


@dataclass(frozen=True)
class CosineBank:
    """The stacked unit vectors of some heads, and which columns belong to which head."""

    heads: tuple[CosineHead, ...]
    vectors: torch.Tensor
    """(K, D) float32, contiguous: the unit vectors of every head, stacked."""
    vectors_t: torch.Tensor
    """(D, K) float32, contiguous: the right-hand side of the one product when K is large."""
    columns: tuple[slice, ...]

    @classmethod
    def of(cls, heads: Sequence[PromptHead]) -> CosineBank | None:
        """The bank of ``heads``, or None when one of them is not a cosine head (a linear
        probe, CoOp): those are scored head by head."""
        if not heads or not all(isinstance(h, CosineHead) for h in heads):
            return None
        cosine_heads = tuple(h for h in heads if isinstance(h, CosineHead))
        with torch.no_grad():
            vectors = [h.unit_vectors().detach().float() for h in cosine_heads]
        columns, start = [], 0
        for v in vectors:
            columns.append(slice(start, start + len(v)))
            start += len(v)
        stacked = torch.cat(vectors).contiguous()
        return cls(cosine_heads, stacked, stacked.t().contiguous(), tuple(columns))

    def logits(
        self, features: torch.Tensor, norms: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """float32 (N, D) unnormalised features -> each head's (N, C) logits, in order.

        ``norms``: the rows' L2 norms (N,) when the reader has them already (its row checks
        compute them), so that they are not computed twice."""
        if norms is None:
            norms = features.norm(dim=1)
        norms = norms.to(features.device).view(-1, 1).clamp_min(NORM_EPS)
        if len(self.vectors) <= NARROW:
            products = (self.vectors @ features.t()).t()
        else:
            products = features @ self.vectors_t
        cosines = products.div(norms)
        return [
            h.logits_from_cosines(cosines[:, c])
            for h, c in zip(self.heads, self.columns, strict=True)
        ]
