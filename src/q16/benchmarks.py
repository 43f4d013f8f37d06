"""What the benchmark scripts (``scripts/bench_*.py``) share: the record each result carries
(command, date, commit, machine) and a seeded random-weight scorer. Weights are random because
speed does not depend on their values."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from q16.fileio import atomic_write_text
from q16.inference.reader import UInt8Preprocess
from q16.inference.scorer import Scorer, resolve_autocast
from q16.models.backbone import Backbone, BackboneSpec, load_backbone
from q16.models.prompts import class_embedding_prompt
from q16.runinfo import git_commit, machine_description


def write_result(out_dir: Path, name: str, result: dict[str, Any]) -> Path:
    """``result`` plus how and where it was measured, as ``out_dir/name``."""
    result = {
        **result,
        "command": " ".join(["python", f"scripts/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": machine_description(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    return path


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_weight_scorer(
    model: str, device: torch.device
) -> tuple[Backbone, Scorer, UInt8Preprocess]:
    """The model with seeded random weights, its zero-shot head and its uint8 preprocessing."""
    torch.manual_seed(0)
    backbone = load_backbone(BackboneSpec(model, pretrained=None), device)
    pre = UInt8Preprocess.from_transform(backbone.preprocess)
    autocast = resolve_autocast("auto", device)
    head = class_embedding_prompt(backbone, trainable=False)
    return backbone, Scorer(backbone, head, pre.mean, pre.std, autocast), pre


def model_only(scorer: Scorer, images: torch.Tensor, batch_size: int) -> float:
    """Images per second of the scorer alone on uint8 images already in memory."""
    scorer.score_images(images[:batch_size])  # warm-up
    sync(scorer.device)
    start = time.perf_counter()
    for chunk in images.split(batch_size):
        scorer.score_images(chunk)
    sync(scorer.device)
    return len(images) / (time.perf_counter() - start)
