"""What every prompt file must hold, whatever its format: finite float tensors, and a head that
keeps the contract (features of the metadata's width in, two finite logits per image out).

Checked at load, before any image is read: a malformed file is a one-line error then, not a
traceback or a run of NaN scores that reads as "nothing flagged".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import torch

from q16 import CLASS_NAMES
from q16.errors import Q16Error
from q16.models.prompt_head import PromptHead


class _HasWidth(Protocol):
    embed_dim: int


def check_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """Every value finite: one NaN makes every score NaN, which must never read as "0 flagged"."""
    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            raise Q16Error(f"{path}: tensor {name!r} has dtype {tensor.dtype}, expected floats")
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise Q16Error(
                f"{path}: tensor {name!r} holds {bad} non-finite value(s) (NaN or Inf); "
                "every score would be NaN. Use a prompt file from a successful train.py run"
            )
        if name == "class_embeddings" and tensor.ndim == 2 and (tensor.norm(dim=-1) == 0).any():
            raise Q16Error(f"{path}: a class embedding is all zeros; it cannot score anything")


def check_head(path: Path, head: PromptHead, meta: _HasWidth) -> None:
    """The head keeps the contract: (N, metadata's width) features in, (N, 2) finite logits out."""
    if head.embed_dim != meta.embed_dim or meta.embed_dim < 1:
        raise Q16Error(
            f"{path}: tensors are {head.embed_dim} wide but the metadata says embed_dim="
            f"{meta.embed_dim}; the file is damaged or was edited"
        )
    try:
        with torch.no_grad():
            logits = head(torch.ones(3, meta.embed_dim))
    except (RuntimeError, ValueError, IndexError) as err:
        raise Q16Error(f"{path}: prompt does not apply to features ({one_line(err)})") from err
    if tuple(logits.shape) != (3, len(CLASS_NAMES)):
        raise Q16Error(
            f"{path}: prompt gives {logits.shape[-1] if logits.ndim else 0} class score(s) per "
            f"image, expected {len(CLASS_NAMES)} ({', '.join(CLASS_NAMES)})"
        )
    if not torch.isfinite(logits).all():
        raise Q16Error(f"{path}: prompt gives non-finite scores; the file is damaged")


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]
