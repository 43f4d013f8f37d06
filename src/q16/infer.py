"""``python infer.py data=imagenet``: score every image of a sharded dataset, resumably.

reader (workers decode whole shards) -> scorer (batched, on the device) -> writer (one parquet
per shard, committed atomically). Scale-out goes through Lightning Fabric: ranks own disjoint
shards (``fabric=ddp fabric.devices=8``), rank 0 writes the summary when all are done.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from q16.errors import Q16Error
from q16.inference.collect import collect
from q16.inference.guard import check_out_dir, out_dir_lock, run_log
from q16.inference.head import RunHeads, check_embeddings, load_head, needs_text_tower
from q16.inference.loop import score_shards
from q16.inference.reader import ImageDecoder, UInt8Preprocess, partition, reads_blocks
from q16.inference.resume import fingerprint, prepare_out_dir, reading_settings
from q16.inference.scorer import Scorer, resolve_autocast
from q16.inference.settings import InferSettings, auto_batch_size, auto_workers
from q16.inference.state import LoopStats, wait_for_ranks, write_embeddings_meta, write_rank
from q16.inference.summary import RunSetup, build_summary, write_summary
from q16.inference.writer import ShardWriter
from q16.models.backbone import BackboneSpec, load_backbone
from q16.models.space import embedding_space_backbone
from q16.outdir import SUMMARY_FILE
from q16.runinfo import write_run_info
from q16.sources.base import DownloadStatsSource, EmbeddingSource, InferenceSource, Shard

log = logging.getLogger(__name__)
__all__ = ["check_embeddings", "load_head", "run"]


def build_source(cfg: DictConfig) -> InferenceSource:
    try:
        source = instantiate(cfg.data)
    except InstantiationException as err:  # a bad data.* value, checked by the source
        cause = err.__cause__
        if isinstance(cause, Q16Error):
            raise Q16Error(str(cause)) from None
        if isinstance(cause, TypeError):  # an unknown data.* key
            raise Q16Error(f"data={_data_choice(cfg)}: {cause}") from None
        raise
    if not isinstance(source, InferenceSource):
        raise Q16Error(
            f"data={_data_choice(cfg)} is a training dataset; infer.py needs "
            "data=imagenet (tar shards), data=folder or data=embeddings"
        )
    return source


def _data_choice(cfg: DictConfig) -> str:
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("data")
        if choice:
            return str(choice)
    return str(cfg.data.get("name") or cfg.data.get("_target_", "?"))


def build_fabric(fabric: DictConfig) -> L.Fabric:
    """``configs/fabric``: where the ranks run (accelerator, devices, nodes, strategy)."""
    built: L.Fabric = instantiate(fabric)
    return built


def infer_settings(infer: DictConfig, heads: Any = None) -> InferSettings:
    """``cfg.infer`` and ``heads:`` as plain, checked values (the tree stops at ``run``)."""
    if isinstance(heads, DictConfig | ListConfig):
        heads = OmegaConf.to_container(heads, resolve=True)
    return InferSettings(
        out_dir=Path(str(infer.out_dir)).expanduser(),
        threshold=infer.threshold,
        batch_size=infer.batch_size,
        num_workers=infer.num_workers,
        autocast=str(infer.autocast),
        max_pixels=infer.max_pixels,
        save_embeddings=infer.save_embeddings,
        progress=infer.progress,
        rank_wait_timeout_s=infer.get("rank_wait_timeout_s", 3600.0),
        report=infer.get("report", False),
        heads=heads,
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
    """Score every image in ``cfg.data``; returns the summary (also ``summary.json``).

    Everything the user gave is checked before a model is loaded or a file written; rank 0
    then holds the out_dir's lock until the summary (and report) are written.
    """
    started = time.perf_counter()
    check_required(cfg)
    settings = infer_settings(cfg.infer, cfg.get("heads"))
    source = build_source(cfg)
    fabric = build_fabric(cfg.fabric)
    fabric.launch()
    rank, world = fabric.global_rank, fabric.world_size
    shards = source.list_shards()
    with ExitStack() as held:
        problem = ""
        if rank == 0:
            try:
                out = check_out_dir(settings.out_dir, shards)
                held.enter_context(out_dir_lock(out))
                held.enter_context(run_log(out, OmegaConf.to_yaml(cfg, resolve=True)))
            except Q16Error as err:
                problem = str(err)
        run_id = uuid.uuid4().hex
        if world > 1:  # every rank learns rank 0's verdict: none may start on a refused out_dir
            run_id, problem = fabric.broadcast((run_id, problem), src=0)
        if problem:
            raise Q16Error(problem)
        return _score(cfg, settings, source, shards, fabric, run_id, started)


def _score(
    cfg: DictConfig,
    settings: InferSettings,
    source: InferenceSource,
    shards: list[Shard],
    fabric: L.Fabric,
    run_id: str,
    started: float,
) -> dict[str, Any]:
    """Load the model, score this rank's shards not done yet; rank 0 finishes the run."""
    rank, world, out = fabric.global_rank, fabric.world_size, settings.out_dir
    autocast = resolve_autocast(settings.autocast, fabric.device)
    spec: BackboneSpec = instantiate(cfg.model)
    # seeded so that random-weight models (tests, benchmarks) are the same on every rank/resume
    L.seed_everything(int(cfg.get("seed", 0)), verbose=False)
    # embeddings scored with prompt files: the model only fixes the space (no tower, no
    # weights); zero-shot prompts and concept-set YAMLs still need the text tower
    prompts = [h.prompt for h in settings.heads] if settings.heads else [cfg.prompt.get("path")]
    text = any(needs_text_tower(p, spec) for p in prompts)
    embeddings_only = isinstance(source, EmbeddingSource) and not spec.from_hub and not text
    if embeddings_only:
        backbone = embedding_space_backbone(spec, fabric.device)
    else:
        backbone = load_backbone(spec, fabric.device)
    meta_columns = tuple(str(c) for c in cfg.data.get("meta_columns") or ())
    check_embeddings(source, backbone)
    heads = RunHeads.load(
        settings.heads, cfg.prompt.get("path"), backbone, settings.threshold, warn=rank == 0
    )
    current = fingerprint(
        model=backbone.spec.name,
        weights=backbone.spec.weights_id,
        precision=backbone.spec.precision,
        preprocess=backbone.preprocess_id,
        prompt_source=heads.source,
        threshold=heads.threshold,
        autocast=autocast,
        max_pixels=settings.max_pixels,
        max_bytes=cfg.data.get("max_bytes"),
        exif_transpose=bool(cfg.data.get("exif_transpose", False)),
        shards=shards,
        meta_columns=meta_columns,
        heads=heads.fingerprint(),
        reading=reading_settings(cfg.data),
    )
    mine = partition(shards, rank, world)
    todo = prepare_out_dir(out, current, mine, record=rank == 0)
    log.info(
        "rank %d/%d: %d shards, %d already done", rank, world, len(mine), len(mine) - len(todo)
    )
    writer = ShardWriter(
        out,
        heads.threshold,
        settings.save_embeddings,
        meta_columns=meta_columns,
        heads=heads.thresholds(),
    )
    if settings.save_embeddings and rank == 0:
        write_embeddings_meta(out, backbone)
    preprocess = (
        UInt8Preprocess([], (0.0,) * 3, (1.0,) * 3)
        if embeddings_only
        else UInt8Preprocess.from_transform(backbone.preprocess)
    )
    scorer = Scorer(
        backbone, heads.head, preprocess.mean, preprocess.std, autocast, heads=heads.named()
    )
    num_nodes = int(cfg.fabric.get("num_nodes", 1))
    num_workers = auto_workers(settings.num_workers, max(1, world // max(1, num_nodes)))
    if settings.num_workers is None and reads_blocks(source):
        num_workers = 0  # blocks are read in place (mmap); workers would pickle every block
    batch_size = auto_batch_size(settings.batch_size, fabric.device)
    setup = RunSetup(
        spec=spec,
        prompt_source=heads.source,
        threshold=heads.threshold,
        shards_total=len(shards),
        inputs=_inputs(cfg, shards),
        data=source.name,
        batch_size=batch_size,
        num_workers=num_workers,
        world_size=world,
        device=str(fabric.device),
        setup_s=time.perf_counter() - started,
        heads=heads.summary(),
    )
    stats = score_shards(
        source,
        todo,
        scorer,
        writer,
        decoder=ImageDecoder(
            preprocess, settings.max_pixels, bool(cfg.data.get("exif_transpose", False))
        ),
        batch_size=batch_size,
        num_workers=num_workers,
        show_progress=settings.progress and rank == 0,
    )
    write_rank(out, rank, run_id, stats)
    if stats.unread:
        log.warning(
            "rank %d: %d shard(s) could not be read (%s); see errors.jsonl and re-run with "
            "the same infer.out_dir to retry them",
            *(rank, len(stats.unread), ", ".join(stats.unread[:5])),
        )
    if rank != 0:
        return {}
    names = [s.name for s in shards]
    found = source.download_stats(shards) if isinstance(source, DownloadStatsSource) else None
    return _finish(
        cfg, settings, setup, run_id, names, started, meta_columns, heads.thresholds(), found
    )


def _finish(
    cfg: DictConfig,
    settings: InferSettings,
    setup: RunSetup,
    run_id: str,
    shard_names: list[str],
    started: float,
    meta: tuple[str, ...] = (),
    heads: tuple[tuple[str, float], ...] = (),
    source_stats: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Rank 0, after its loop: wait for the ranks, collect, write summary (and report)."""
    out, timeout_s = settings.out_dir, settings.rank_wait_timeout_s
    records, missing = wait_for_ranks(out, setup.world_size, run_id, timeout_s)
    counts = collect(out, shard_names, threshold=setup.threshold, meta_columns=meta, heads=heads)
    ranks = [LoopStats.from_record(r) for r in records]
    summary = build_summary(setup, counts, ranks, missing, time.perf_counter() - started)
    if source_stats:  # what the downloader listed and lost (img2dataset), for the datasheet
        summary["source_stats"] = source_stats
    write_summary(out, summary)
    write_run_info(out, cfg, task="infer", summary=SUMMARY_FILE)
    if missing:
        raise Q16Error(
            f"rank(s) {', '.join(map(str, missing))} did not report within "
            f"infer.rank_wait_timeout_s={timeout_s:g} (a rank died?); summary.json covers "
            f"{counts.shards_done}/{setup.shards_total} shards: re-run with the same "
            "infer.out_dir to resume"
        )
    if settings.report:
        from q16.report import write_report

        log.info("report: %s", write_report(out).html)
    log.info(
        "scored %d images (%d flagged at p >= %.2f; %d not scored, %d error records) -> %s",
        *(counts.images_scored, counts.images_flagged, setup.threshold),
        *(counts.images_unscored, counts.errors, out),
    )
    return summary


def _inputs(cfg: DictConfig, shards: list[Shard]) -> list[str]:
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(data, dict)
    for key in ("shards", "path"):
        if key in data:
            value = data[key]
            return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return [s.source for s in shards]
