"""``python infer.py data=imagenet``: score every image of a sharded dataset, resumably.

reader (workers decode whole shards) -> scorer (batched, on the device) -> writer (one parquet
per shard, committed atomically). Scale-out goes through Lightning Fabric: ranks own disjoint
shards (``trainer=ddp trainer.devices=8``), rank 0 writes the summary when all are done.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from q16.data.shards import InferenceSource, Shard
from q16.errors import Q16Error
from q16.inference import writer as W
from q16.inference.layout import SUMMARY_FILE
from q16.inference.loop import score_shards
from q16.inference.reader import ImageDecoder, UInt8Preprocess, partition
from q16.inference.scorer import Scorer, resolve_autocast
from q16.inference.state import (
    check_fingerprint,
    fingerprint,
    shard_identity,
    wait_for_ranks,
    write_embeddings_meta,
    write_rank,
)
from q16.models.backbone import Backbone, BackboneSpec, load_backbone
from q16.models.prompt_io import load_prompt
from q16.models.prompts import zeroshot_prompt
from q16.runinfo import git_commit, machine_description, write_run_info

log = logging.getLogger(__name__)


def build_source(cfg: DictConfig) -> InferenceSource:
    source = instantiate(cfg.data)
    if not isinstance(source, InferenceSource):
        raise Q16Error(
            f"data={_data_choice(cfg)} is a training dataset; infer.py needs "
            "data=imagenet (tar shards), data=folder or data=embeddings"
        )
    return source


def _data_choice(cfg: DictConfig) -> str:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("data")
        if choice:
            return str(choice)
    return str(cfg.data.get("name") or cfg.data.get("_target_", "?"))


def build_fabric(trainer: DictConfig) -> L.Fabric:
    """Only the placement keys of the shared ``trainer`` group matter for inference."""
    return L.Fabric(
        accelerator=trainer.get("accelerator", "auto"),
        devices=trainer.get("devices", 1),
        num_nodes=trainer.get("num_nodes", 1),
        strategy=trainer.get("strategy", "auto"),
    )


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


def load_head(
    path: str | None, backbone: Backbone, warn: bool = True
) -> tuple[torch.nn.Module, str]:
    if path:
        head, _ = load_prompt(
            path,
            model=backbone.spec.name,
            pretrained=backbone.spec.pretrained,
            embed_dim=backbone.embed_dim,
        )
        return head, str(Path(path).expanduser().resolve())
    if warn:
        log.warning(
            "no prompt.path given: scoring with the hand-written zero-shot prompts; prompts "
            "tuned with train.py are far more accurate (prompt.path=.../prompts.safetensors)"
        )
    return zeroshot_prompt(backbone), "zeroshot"


def check_embeddings(source: InferenceSource, backbone: Backbone) -> None:
    meta_fn = getattr(source, "meta", None)
    if meta_fn is None:
        return
    meta = meta_fn()
    if (
        meta.get("embed_dim") != backbone.embed_dim
        or meta.get("weights") != backbone.spec.weights_id
    ):
        raise Q16Error(
            f"saved embeddings come from model={meta.get('model')} "
            f"pretrained={meta.get('pretrained')}; pass the same model to re-score them"
        )


def check_required(cfg: DictConfig) -> None:
    """``???`` values (``data.path`` of data=folder) as one line instead of Hydra's traceback."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        key, choice = missing[0], _data_choice(cfg)
        value = "..."
        if key == "data.path":
            value = "<out_dir of a save_embeddings run>" if choice == "embeddings" else "/images"
        raise Q16Error(f"{key} is required: data={choice} {key}={value}")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Score every image in ``cfg.data``; returns the summary (also ``summary.json``)."""
    started = time.perf_counter()
    check_required(cfg)
    icfg = cfg.infer
    source = build_source(cfg)
    threshold = float(icfg.threshold)
    out = Path(str(icfg.out_dir)).expanduser()
    fabric = build_fabric(cfg.trainer)
    fabric.launch()
    rank, world = fabric.global_rank, fabric.world_size
    run_id = fabric.broadcast(uuid.uuid4().hex, src=0) if world > 1 else uuid.uuid4().hex

    shards = source.list_shards()
    autocast = resolve_autocast(str(icfg.autocast), fabric.device)
    max_pixels = int(icfg.max_pixels)
    spec: BackboneSpec = instantiate(cfg.model)
    # seeded so that random-weight models (tests, benchmarks) are the same on every rank/resume
    L.seed_everything(int(cfg.get("seed", 0)), verbose=False)
    backbone = load_backbone(spec, fabric.device)
    check_embeddings(source, backbone)
    head, prompt_source = load_head(cfg.prompt.get("path"), backbone, warn=rank == 0)
    out.mkdir(parents=True, exist_ok=True)
    current = fingerprint(
        model=backbone.spec.name,
        weights=backbone.spec.weights_id,
        precision=backbone.spec.precision,
        preprocess=backbone.preprocess_id,
        prompt_source=prompt_source,
        threshold=threshold,
        autocast=autocast,
        max_pixels=max_pixels,
        shards=shards,
    )
    check_fingerprint(out, current, write=False)
    mine = partition(shards, rank, world)
    todo = [s for s in mine if not W.is_done(out, s.name, shard_identity(s))]
    check_fingerprint(out, current, write=rank == 0)  # after the done shards' own checks
    log.info(
        "rank %d/%d: %d shards, %d already done", rank, world, len(mine), len(mine) - len(todo)
    )
    writer = W.ShardWriter(out, threshold, bool(icfg.save_embeddings))
    if icfg.save_embeddings and rank == 0:
        write_embeddings_meta(out, _embeddings_meta(backbone))
    preprocess = UInt8Preprocess.from_transform(backbone.preprocess)
    scorer = Scorer(backbone, head, preprocess.mean, preprocess.std, autocast)
    num_workers = auto_workers(
        icfg.num_workers, _local_processes(fabric, int(cfg.trainer.get("num_nodes", 1)))
    )
    batch_size = auto_batch_size(icfg.batch_size, fabric.device)
    setup_s = time.perf_counter() - started
    stats = score_shards(
        source,
        todo,
        scorer,
        writer,
        decoder=ImageDecoder(preprocess, max_pixels),
        batch_size=batch_size,
        num_workers=num_workers,
        show_progress=bool(icfg.progress) and rank == 0,
    )
    write_rank(out, rank, run_id, stats)
    if stats.unread:
        log.warning(
            "rank %d: %d shard(s) could not be read (%s); see errors.jsonl and re-run with "
            "the same infer.out_dir to retry them",
            rank,
            len(stats.unread),
            ", ".join(stats.unread[:5]),
        )
    if rank != 0:
        return {}
    timeout_s = float(icfg.get("rank_wait_timeout_s", 3600))
    ranks, missing = wait_for_ranks(out, world, run_id, timeout_s)
    counts = W.collect(out, [s.name for s in shards])
    wall = time.perf_counter() - started
    images_now = sum(r["images"] for r in ranks)
    loop_s = max(r["loop_s"] for r in ranks)
    summary = {
        **{k: counts[k] for k in ("images_scored", "images_flagged", "errors", "per_class")},
        "wall_time_s": round(wall, 3),
        "images_per_s": round(images_now / wall, 3) if wall > 0 else 0.0,
        "data_wait_s": round(sum(r["data_wait_s"] for r in ranks), 3),
        "model_s": round(sum(r["model_s"] for r in ranks), 3),
        "write_s": round(sum(r["write_s"] for r in ranks), 3),
        "setup_s": round(setup_s, 3),
        "loop_s": round(loop_s, 3),
        "loop_images_per_s": round(images_now / loop_s, 3) if loop_s > 0 else 0.0,
        "images_scored_this_run": images_now,
        "model": spec.name,
        "pretrained": spec.pretrained,
        "weights": spec.weights_id,
        "random_weights": spec.random_weights,
        "prompt_source": prompt_source,
        "threshold": threshold,
        "shards_total": len(shards),
        "shards_done": counts["shards_done"],
        "ranks_missing": missing,
        "inputs": _inputs(cfg, shards),
        "data": source.name,
        "batch_size": batch_size,
        "num_workers": num_workers,
        "world_size": world,
        "torch_threads": torch.get_num_threads(),
        "device": str(fabric.device),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": machine_description(),
    }
    W.atomic_write_bytes(out / SUMMARY_FILE, json.dumps(summary, indent=2).encode())
    write_run_info(out, cfg, task="infer", summary=SUMMARY_FILE)
    if missing:
        raise Q16Error(
            f"rank(s) {', '.join(map(str, missing))} did not report within "
            f"infer.rank_wait_timeout_s={timeout_s:g} (a rank died?); summary.json covers "
            f"{counts['shards_done']}/{len(shards)} shards: re-run with the same "
            "infer.out_dir to resume"
        )
    if icfg.get("report"):
        from q16.report import write_report

        log.info("report: %s", write_report(out).html)
    log.info(
        "scored %d images (%d flagged at p >= %.2f, %d errors) -> %s",
        summary["images_scored"],
        summary["images_flagged"],
        threshold,
        summary["errors"],
        out,
    )
    return summary


def _embeddings_meta(backbone: Backbone) -> dict[str, Any]:
    return {
        "model": backbone.spec.name,
        "pretrained": backbone.spec.pretrained,
        "weights": backbone.spec.weights_id,
        "embed_dim": backbone.embed_dim,
        "dtype": "float32",
    }


def _local_processes(fabric: L.Fabric, num_nodes: int) -> int:
    return max(1, fabric.world_size // max(1, num_nodes))


def _inputs(cfg: DictConfig, shards: list[Shard]) -> list[str]:
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(data, dict)
    for key in ("shards", "path"):
        if key in data:
            value = data[key]
            return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return [s.source for s in shards]
