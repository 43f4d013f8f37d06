"""Mapper stage: uint8 batches -> p(inappropriate), batched, on the device.

Normalisation runs on the device (batches travel as uint8); the frozen image tower and the
prompt head run under ``torch.inference_mode()`` with autocast on GPUs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from q16.errors import Q16Error
from q16.models.backbone import Backbone
from q16.models.prompt_head import PromptHead

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
FEATURE_CHUNK = 2048
"""Rows of features converted to float32 and scored at a time (6 MB at 768-d: in cache)."""


def resolve_autocast(setting: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA, off on CPU (CPU autocast is slower on most CPUs)."""
    if setting == "auto":
        return "bf16" if device.type == "cuda" else "off"
    if setting not in ("off", *AUTOCAST_DTYPES):
        raise Q16Error(f"infer.autocast must be auto, off, bf16 or fp16, not {setting!r}")
    return setting


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
    def score_features(self, features: torch.Tensor, keep: bool = False) -> Scores:
        """Features of any float dtype (a block of float16 embeddings, say): converted to
        float32 ``FEATURE_CHUNK`` rows at a time, so the copy stays in cache, and every head
        scores the chunk while it is there."""
        parts = [
            self._score_chunk(features[i : i + FEATURE_CHUNK], keep)
            for i in range(0, len(features), FEATURE_CHUNK)
        ] or [self._score_chunk(features, keep)]
        logits = torch.cat([p[0] for p in parts])
        probs = logits.softmax(dim=-1)[:, 1]
        heads = {
            name: probs if head is self.head else torch.cat([p[1][name] for p in parts])
            for name, head in self.heads.items()
        }
        return Scores(
            p_inappropriate=probs.cpu(),
            label=logits.argmax(dim=-1).to(torch.int8).cpu(),
            embeddings=torch.cat([p[2] for p in parts]).cpu() if keep else None,
            heads={name: p.cpu() for name, p in heads.items()},
        )

    def _score_chunk(
        self, features: torch.Tensor, keep: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Primary logits, the other heads' p(inappropriate), and the float32 features."""
        features = features.to(self.device).float()
        heads = {
            name: head(features).float().softmax(dim=-1)[:, 1]
            for name, head in self.heads.items()
            if head is not self.head
        }
        return self.head(features).float(), heads, features

    def score_images(self, images: torch.Tensor, keep: bool = False) -> Scores:
        return self.score_features(self.encode(images), keep=keep)
