"""``infer:`` of configs/infer.yaml as a typed, frozen object: what the code below
``q16.infer.run`` reads, so that no helper needs the config tree. Every value is checked
when the object is made, before anything expensive: a bad one is one line (Q16Error)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from q16.errors import Q16Error, check_bool, check_float, check_int
from q16.imageload import DEFAULT_MAX_PIXELS

AUTOCAST_SETTINGS = ("auto", "off", "bf16", "fp16")


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

    def __post_init__(self) -> None:
        checked = {
            "threshold": check_float("infer.threshold", self.threshold, 0.0, 1.0),
            "batch_size": check_int("infer.batch_size", self.batch_size, 1, optional=True),
            "num_workers": check_int("infer.num_workers", self.num_workers, 0, optional=True),
            "max_pixels": check_int("infer.max_pixels", self.max_pixels, 1),
            "save_embeddings": check_bool("infer.save_embeddings", self.save_embeddings),
            "progress": check_bool("infer.progress", self.progress),
            "report": check_bool("infer.report", self.report),
            "rank_wait_timeout_s": check_float(
                "infer.rank_wait_timeout_s", self.rank_wait_timeout_s, 0.0
            ),
        }
        if self.autocast not in AUTOCAST_SETTINGS:
            raise Q16Error(f"infer.autocast must be auto, off, bf16 or fp16, not {self.autocast!r}")
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise Q16Error(f"infer.out_dir={str(self.out_dir)!r} is a file, not a directory")
        for name, value in checked.items():
            object.__setattr__(self, name, value)


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
