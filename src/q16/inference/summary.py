"""``summary.json``: the run in one file (counts, timing, model, settings, provenance).

Written by rank 0 last, after ``collect``; the report reads it (``q16.review.run``). Counts
cover every shard done so far, whichever run scored it; timings cover this run.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from q16.fileio import atomic_write_text
from q16.inference.collect import RunCounts
from q16.inference.state import LoopStats
from q16.models.backbone import BackboneSpec
from q16.outdir import SUMMARY_FILE
from q16.runinfo import git_commit, machine_description


@dataclass(frozen=True)
class RunSetup:
    """What this run is, fixed before its loop starts."""

    spec: BackboneSpec
    prompt_source: str
    """The prompt file's resolved path, or ``zeroshot``."""
    threshold: float
    shards_total: int
    inputs: list[str]
    """What ``data`` was given (shards pattern, folder, out_dir) as the user wrote it."""
    data: str
    """The source's ``name``."""
    batch_size: int
    num_workers: int
    world_size: int
    device: str
    setup_s: float
    """Seconds from the start of ``run`` to the first batch requested (model load included)."""
    decode: str = "pil"
    """``infer.decode`` (``pil`` for embeddings, which are not decoded)."""
    heads: tuple[dict[str, object], ...] | None = None
    """``heads:`` entries as the summary lists them (name, prompt_source, category,
    threshold, threshold_from; a detector head its detector, settings, columns and known
    limits); None without ``heads:``."""
    hashes: bool = False
    """``infer.hashes``: the scores hold sha256 and pdq per image."""


def build_summary(
    setup: RunSetup,
    counts: RunCounts,
    ranks: Sequence[LoopStats],
    ranks_missing: list[int],
    wall_s: float,
) -> dict[str, Any]:
    """The summary's keys, in the order ``summary.json`` has always listed them."""
    images_now = sum(r.images for r in ranks)
    heads: dict[str, Any] = {}
    if setup.heads is not None:
        heads["heads"] = [_head_entry(head, counts) for head in setup.heads]
        heads["images_flagged_any_head"] = counts.images_flagged_any_head
    loop_s = max((r.loop_s for r in ranks), default=0.0)
    return {
        "images_scored": counts.images_scored,
        "images_flagged": counts.images_flagged,
        "errors": counts.errors,
        "images_unscored": counts.images_unscored,
        "per_class": counts.per_class,
        "wall_time_s": round(wall_s, 3),
        "images_per_s": round(images_now / wall_s, 3) if wall_s > 0 else 0.0,
        "data_wait_s": round(sum(r.data_wait_s for r in ranks), 3),
        "model_s": round(sum(r.model_s for r in ranks), 3),
        "write_s": round(sum(r.write_s for r in ranks), 3),
        **(
            {"decoded_on_cpu": sum(r.decoded_on_cpu for r in ranks)}
            if setup.decode == "gpu"
            else {}
        ),
        "pixel_s": round(sum(r.pixel_s for r in ranks), 3),
        "setup_s": round(setup.setup_s, 3),
        "loop_s": round(loop_s, 3),
        "loop_images_per_s": round(images_now / loop_s, 3) if loop_s > 0 else 0.0,
        "images_scored_this_run": images_now,
        "model": setup.spec.name,
        "pretrained": setup.spec.pretrained,
        "weights": setup.spec.weights_id,
        "random_weights": setup.spec.random_weights,
        "prompt_source": setup.prompt_source,
        "threshold": setup.threshold,
        "shards_total": setup.shards_total,
        "shards_done": counts.shards_done,
        "shards_incomplete": counts.shards_incomplete,
        "ranks_missing": ranks_missing,
        "inputs": setup.inputs,
        "data": setup.data,
        "batch_size": setup.batch_size,
        "num_workers": setup.num_workers,
        "decode": setup.decode,
        "world_size": setup.world_size,
        "torch_threads": torch.get_num_threads(),
        "device": setup.device,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": machine_description(),
        **heads,
        **({"hashes": ["sha256", "pdq"]} if setup.hashes else {}),
    }


def _head_entry(head: dict[str, object], counts: RunCounts) -> dict[str, object]:
    """A head as the summary lists it; a detector head also with the share of images it
    flagged (images with at least one face) overall and per class, for the datasheet."""
    name = str(head["name"])
    flagged = counts.heads_flagged.get(name, 0)
    entry = {**head, "flagged": flagged}
    if head.get("detector"):
        scored = counts.images_scored
        entry["share"] = round(flagged / scored, 6) if scored else None
        per_class = counts.heads_per_class.get(name, {})
        entry["per_class"] = {
            c: {"scored": row["scored"], "flagged": per_class.get(c, 0)}
            for c, row in counts.per_class.items()
        }
    return entry


def write_summary(out_dir: Path, summary: dict[str, Any]) -> Path:
    path = out_dir / SUMMARY_FILE
    atomic_write_text(path, json.dumps(summary, indent=2))
    return path
