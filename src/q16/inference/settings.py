"""``infer:`` of configs/infer.yaml as a typed, frozen object: what the code below
``q16.infer.run`` reads, so that no helper needs the config tree."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from q16.inference.reader import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class InferSettings:
    """One run's settings (see configs/infer.yaml for what each one does).

    ``batch_size`` and ``num_workers`` are ``None`` for "from the device / the CPU count".
    """

    out_dir: Path
    threshold: float = 0.9
    batch_size: int | None = None
    num_workers: int | None = None
    autocast: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS
    save_embeddings: bool = False
    progress: bool = True
    rank_wait_timeout_s: float = 3600.0
    report: bool = False


def auto_workers(setting: int | None, local_processes: int) -> int:
    """Workers per rank: the machine's cores shared between ranks, one left for the model."""
    if setting is not None:
        return int(setting)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, (cores or 2) // max(1, local_processes) - 1))


def auto_batch_size(setting: int | None, device: torch.device) -> int:
    """256 on GPUs; 32 on CPUs, where larger batches fall out of cache and run slower."""
    if setting is not None:
        return int(setting)
    return 256 if device.type == "cuda" else 32
