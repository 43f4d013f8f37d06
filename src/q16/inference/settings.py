"""``infer:`` of configs/infer.yaml as a typed, frozen object: what the code below
``q16.infer.run`` reads, so that no helper needs the config tree. Every value is checked
when the object is made, before anything expensive: a bad one is one line (Q16Error)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from q16.errors import Q16Error, check_bool, check_float, check_int
from q16.imageload import DEFAULT_MAX_PIXELS
from q16.pixels import DECODE_MODES, DEFAULT_DECODE

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
    decode: str = DEFAULT_DECODE
    """``pil``, ``fast`` or ``gpu`` (``q16.pixels.DECODE_MODES``)."""
    heads: tuple[HeadSpec, ...] | None = None
    """``heads:`` (top level of configs/infer.yaml; a raw list is parsed by
    :func:`parse_heads`); None = one head from ``prompt.path``."""

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
            "heads": parse_heads(self.heads),
        }
        if self.decode not in DECODE_MODES:
            choices = " | ".join(DECODE_MODES)
            raise Q16Error(f"infer.decode must be {choices}, not {self.decode!r}")
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


HEAD_KEYS = ("name", "prompt", "threshold", "category")
HEAD_NAME = re.compile(r"[a-z0-9_]{1,64}")


@dataclass(frozen=True)
class HeadSpec:
    """One ``heads:`` entry: a named prompt source with its own threshold.

    ``prompt``: what ``prompt.path`` takes (a file, ``paper``, None = the default) or
    ``zeroshot`` or a concept-set ``.yaml``; ``category``: the concept-set category (None = the
    head's name when the prompt is a concept set); ``threshold``: None = the prompt file's own,
    else ``infer.threshold``.
    """

    name: str
    prompt: str | None = None
    threshold: float | None = None
    category: str | None = None


def parse_heads(value: object) -> tuple[HeadSpec, ...] | None:
    """``heads:`` as checked specs (None: today's single head from ``prompt.path``)."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not value:
        raise Q16Error(
            "heads must be null or a non-empty list such as "
            "'heads=[{name: q16, prompt: paper}, {name: violence, prompt: concepts.yaml}]'"
        )
    specs: list[HeadSpec] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise Q16Error(f"heads[{i}] must be a mapping with name: and prompt:, not {entry!r}")
        unknown = sorted(str(k) for k in entry if k not in HEAD_KEYS)
        if unknown:
            raise Q16Error(
                f"heads[{i}]: unknown key(s) {', '.join(unknown)}; a head takes "
                f"{', '.join(HEAD_KEYS)}"
            )
        name = entry.get("name")
        if not isinstance(name, str) or not HEAD_NAME.fullmatch(name) or name == "inappropriate":
            raise Q16Error(
                f"heads[{i}].name={name!r}: a head needs a name of 1-64 of a-z, 0-9 and _ "
                "(not 'inappropriate'); it names the p_<name>/flagged_<name> columns"
            )
        if name in {s.name for s in specs}:
            raise Q16Error(f"heads: the name {name!r} is used twice; head names must be unique")
        prompt, category = entry.get("prompt"), entry.get("category")
        for key, text in (("prompt", prompt), ("category", category)):
            if text is not None and (not isinstance(text, str) or not text.strip()):
                raise Q16Error(f"heads[{i}].{key} must be text or null, not {text!r}")
        threshold = entry.get("threshold")
        if threshold is not None:
            threshold = check_float(f"heads[{i}].threshold ({name})", threshold, 0.0, 1.0)
        specs.append(HeadSpec(name, prompt, threshold, category))
    return tuple(specs)
