"""The LightningModule that tunes a prompt head on cached frozen-CLIP image features."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from q16.models.prompt_head import PromptHead
from q16.training.settings import OptimizerFactory


class PromptTuner(L.LightningModule):
    """Cross-entropy on prompt logits; only the head's trainable parameters reach the optimizer.

    Args:
        head: any prompt head mapping image features (N, D) to logits (N, C).
        optimizer: a partial optimizer (Hydra ``_partial_: true``) that takes parameters.
    """

    def __init__(self, head: PromptHead, optimizer: OptimizerFactory) -> None:
        super().__init__()
        self.head = head
        self.optimizer_factory = optimizer

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.head.parameters() if p.requires_grad]

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        features, labels = batch
        logits = self(features)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(dim=-1) == labels).float().mean()
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=len(labels))
        self.log(f"{stage}/accuracy", accuracy, prog_bar=True, batch_size=len(labels))
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        return self._step(batch, "train")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.trainable_parameters())


@torch.inference_mode()
def predict_proba(head: PromptHead, features: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """p(inappropriate) for each row of ``features``, on whatever device the head lives."""
    was_training = head.training
    head.eval()
    device = next(head.parameters()).device
    probs = [
        head(chunk.to(device)).float().softmax(dim=-1)[:, 1].cpu()
        for chunk in features.split(batch_size)
    ]
    head.train(was_training)
    return torch.cat(probs) if probs else torch.empty(0)
