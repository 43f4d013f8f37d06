"""Mapper stage: uint8 batches -> p(inappropriate), batched, on the device.

Normalisation runs on the device (batches travel as uint8); the frozen image tower and the
prompt head run under ``torch.inference_mode()`` with autocast on GPUs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from q16.errors import Q16Error
from q16.inference.cosines import CosineBank
from q16.models.backbone import Backbone
from q16.models.prompt_head import PromptHead

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
FEATURE_CHUNK = 2048
"""Rows of features converted to float32 and scored at a time: 6 MB at 768-d, in cache, with
the (K, D) x (D, N) product of ``cosines`` (``scripts/bench_embeddings.py``,
``scoring_kernel_embeddings_per_s``: ``W_at_xT_chunk_2048`` against ``_512``, one thread)."""


def resolve_autocast(setting: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA, off on CPU (CPU autocast is slower on most CPUs)."""
    if setting == "auto":
        return "bf16" if device.type == "cuda" else "off"
    if setting not in ("off", *AUTOCAST_DTYPES):
        raise Q16Error(f"infer.autocast must be auto, off, bf16 or fp16, not {setting!r}")
    return setting


def inappropriate_probability(logits: torch.Tensor) -> torch.Tensor:
    """softmax(logits)[:, 1]; for two classes as sigmoid(l1 - l0), the same number computed
    about 30x faster on CPUs (torch's softmax over a dimension of 2 is not vectorised)."""
    if logits.shape[1] == 2:
        return torch.sigmoid(logits[:, 1] - logits[:, 0])
    return logits.softmax(dim=-1)[:, 1]


@dataclass
class Scores:
    """Per-image outputs of one batch, on the CPU."""

    p_inappropriate: torch.Tensor
    label: torch.Tensor
    embeddings: torch.Tensor | None = None
    heads: dict[str, torch.Tensor] = field(default_factory=dict)
    """``heads:`` name -> p(inappropriate) of that head (empty without ``heads:``)."""


class Scorer:
    """Image tower + prompt head as one batched function.

    Args:
        backbone: the frozen CLIP (already on its device).
        head: a prompt head mapping unnormalised features (N, D) to logits (N, 2).
        mean, std: the normalisation from the backbone's preprocessing.
        autocast: ``off``, ``bf16`` or ``fp16``.
        heads: ``heads:`` name -> head, scored on the same features (``head`` is one of them,
            the primary, and is not run twice).
    """

    def __init__(
        self,
        backbone: Backbone,
        head: PromptHead,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        autocast: str = "off",
        heads: Mapping[str, PromptHead] | None = None,
    ) -> None:
        self.backbone = backbone
        self.device = backbone.device
        self.head = head.to(self.device).eval().requires_grad_(False)
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1)
        self.autocast = autocast
        self.heads = {
            name: h if h is head else h.to(self.device).eval().requires_grad_(False)
            for name, h in (heads or {}).items()
        }
        self._bank = CosineBank.of(self._order())

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> float32 normalised, exactly as ToTensor + Normalize."""
        x = images.to(self.device, non_blocking=True).float().div_(255.0)
        return x.sub_(self.mean).div_(self.std)

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images)
        if self.autocast == "off":
            return self.backbone.encode_image(x)
        with torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[self.autocast]):
            return self.backbone.encode_image(x)

    @torch.inference_mode()
    def score_features(
        self, features: torch.Tensor, keep: bool = False, norms: torch.Tensor | None = None
    ) -> Scores:
        """Features of any float dtype (a block of float16 embeddings, say): converted to
        float32 ``FEATURE_CHUNK`` rows at a time, so the copy stays in cache, and every head
        scores the chunk while it is there (cosine heads in one product: ``CosineBank``).
        ``norms``: the rows' L2 norms, when the reader computed them for its checks."""
        order = self._order()
        # float16 rows are converted into one reused buffer: a fresh float32 tensor per chunk
        # costs a page fault per 4 kB (measured 3x slower than the conversion itself)
        convert = features.dtype != torch.float32 and not keep and len(features) > 0
        buffer = (
            torch.empty((FEATURE_CHUNK, features.shape[1]), device=self.device) if convert else None
        )
        parts = [
            self._score_chunk(
                features[i : i + FEATURE_CHUNK],
                order,
                buffer,
                None if norms is None else norms[i : i + FEATURE_CHUNK],
            )
            for i in range(0, len(features), FEATURE_CHUNK)
        ] or [self._score_chunk(features, order, None)]
        logits = [torch.cat([p[0][h] for p in parts]) for h in range(len(order))]
        probs = [inappropriate_probability(lg) for lg in logits]
        return Scores(
            p_inappropriate=probs[0].cpu(),
            label=logits[0].argmax(dim=-1).to(torch.int8).cpu(),
            embeddings=torch.cat([p[1] for p in parts]).cpu() if keep else None,
            heads={name: probs[order.index(h)].cpu() for name, h in self.heads.items()},
        )

    def _order(self) -> list[PromptHead]:
        """The primary head first, then every other head once."""
        return [self.head, *(h for h in self.heads.values() if h is not self.head)]

    def _score_chunk(
        self,
        features: torch.Tensor,
        order: list[PromptHead],
        buffer: torch.Tensor | None,
        norms: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every head's logits (in ``order``) and the float32 features of one chunk."""
        if buffer is not None:
            features = buffer[: len(features)].copy_(features)
        else:
            features = features.to(self.device).float()
        if self._bank is not None:
            return self._bank.logits(features, norms), features
        return [head(features).float() for head in order], features

    def score_images(self, images: torch.Tensor, keep: bool = False) -> Scores:
        return self.score_features(self.encode(images), keep=keep)
