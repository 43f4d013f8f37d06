"""``infer:`` of configs/infer/infer.yaml as a typed, frozen object: what the code below
``q16.infer.run`` reads, so that no helper needs the config tree. Every value is checked
when the object is made, before anything expensive: a bad one is one line (Q16Error)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from q16.detectors.registry import detector_kind
from q16.errors import Q16Error, check_bool, check_float, check_int
from q16.imageload import DEFAULT_MAX_PIXELS
from q16.pixels import DECODE_MODES, DEFAULT_DECODE

AUTOCAST_SETTINGS = ("auto", "off", "bf16", "fp16")


@dataclass(frozen=True)
class InferSettings:
    """One run's settings (see configs/infer/infer.yaml for what each one does).

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
    hashes: bool = False
    """Store ``sha256`` (of the bytes) and ``pdq`` (perceptual hash) per image, for removal
    requests (``q16.privacy.removal``); computed in the reader workers."""
    heads: tuple[HeadSpec, ...] | None = None
    """``heads:`` (top level of configs/infer/infer.yaml; a raw list is parsed by
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
            "hashes": check_bool("infer.hashes", self.hashes),
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
        try:
            is_file = self.out_dir.exists() and not self.out_dir.is_dir()
        except (OSError, ValueError) as err:  # a name too long, a NUL byte, a loop of links
            raise Q16Error(f"infer.out_dir={str(self.out_dir)[:200]!r}: {err}"[:400]) from None
        if is_file:
            raise Q16Error(f"infer.out_dir={str(self.out_dir)!r} is a file, not a directory")
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @property
    def prompt_heads(self) -> tuple[HeadSpec, ...] | None:
        """The ``heads:`` entries scored on CLIP features (None without ``heads:``)."""
        return None if self.heads is None else tuple(h for h in self.heads if h.detector is None)

    @property
    def detector_heads(self) -> tuple[HeadSpec, ...]:
        """The ``heads:`` entries that run a detector on the pixels."""
        return tuple(h for h in self.heads or () if h.detector is not None)


def usable_cores() -> int:
    """Cores this process may run on (its affinity, as a container or ``taskset`` sets it)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


def auto_workers(setting: int | None, local_processes: int) -> int:
    """Workers per rank: the machine's cores shared between ranks, one left for the model."""
    if setting is not None:
        return int(setting)
    return max(1, min(8, usable_cores() // max(1, local_processes) - 1))


def cpu_threads(local_processes: int, num_workers: int) -> int:
    """Torch threads of a rank scoring on the CPU: its share of the cores less one per
    DataLoader worker (each decodes on a core of its own), at least one, so that threads and
    workers never ask for more cores than there are (unless the workers alone do).
    scripts/bench_threads.py measures why: a forward pass with more threads than free cores
    waits for the busy ones (results/bench/threads-cpu.json)."""
    return max(1, usable_cores() // max(1, local_processes) - num_workers)


def auto_batch_size(setting: int | None, device: torch.device) -> int:
    """256 on GPUs; 32 on CPUs, where larger batches fall out of cache and run slower."""
    if setting is not None:
        return int(setting)
    return 256 if device.type == "cuda" else 32


HEAD_KEYS = ("name", "prompt", "threshold", "category")
DETECTOR_HEAD_KEYS = ("name", "detector")
"""A detector head takes these and its detector's own options (``q16.detectors.registry``)."""
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
    detector: str | None = None
    """A pixel head (``{name: faces, detector: centerface}``): runs on the decoded image."""
    options: tuple[tuple[str, Any], ...] = ()
    """The detector's options given in the entry (``input_size``, ...), checked by it."""


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
        allowed: tuple[str, ...] = HEAD_KEYS
        if "detector" in entry:
            allowed = (
                *DETECTOR_HEAD_KEYS,
                *detector_kind(entry["detector"], f"heads[{i}]").options,
            )
        unknown = sorted(str(k) for k in entry if k not in allowed)
        if unknown:
            kind = "a detector head" if "detector" in entry else "a head"
            raise Q16Error(
                f"heads[{i}]: unknown key(s) {', '.join(unknown)}; {kind} takes "
                f"{', '.join(allowed)}"
            )
        name = entry.get("name")
        if not isinstance(name, str) or not HEAD_NAME.fullmatch(name) or name == "inappropriate":
            raise Q16Error(
                f"heads[{i}].name={name!r}: a head needs a name of 1-64 of a-z, 0-9 and _ "
                "(not 'inappropriate'); it names the p_<name>/flagged_<name> columns"
            )
        if name in {s.name for s in specs}:
            raise Q16Error(f"heads: the name {name!r} is used twice; head names must be unique")
        if "detector" in entry:
            if i == 0:
                raise Q16Error(
                    f"heads[0] ({name}) is a detector; the first head is the primary Q16 head "
                    "(p_inappropriate): put a prompt head first"
                )
            options = tuple((str(k), v) for k, v in entry.items() if k not in DETECTOR_HEAD_KEYS)
            specs.append(HeadSpec(name, detector=str(entry["detector"]), options=options))
            continue
        prompt, category = entry.get("prompt"), entry.get("category")
        for key, text in (("prompt", prompt), ("category", category)):
            if text is not None and (not isinstance(text, str) or not text.strip()):
                raise Q16Error(f"heads[{i}].{key} must be text or null, not {text!r}")
        threshold = entry.get("threshold")
        if threshold is not None:
            threshold = check_float(f"heads[{i}].threshold ({name})", threshold, 0.0, 1.0)
        specs.append(HeadSpec(name, prompt, threshold, category))
    return tuple(specs)
