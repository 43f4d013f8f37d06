"""``python infer.py data=imagenet``: score every image of a sharded dataset, resumably.

The only code that reads the infer config: it becomes typed settings here and a
:class:`q16.inference.pipeline.ScoringRun` does the work. Scale-out goes through Lightning
Fabric: ranks own disjoint shards (``fabric=ddp fabric.devices=8``), rank 0 writes the
summary when all are done.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from q16.entry import choices, require_values
from q16.errors import Q16Error
from q16.inference.guard import check_out_dir, out_dir_lock, run_log
from q16.inference.head import check_embeddings, load_head
from q16.inference.pipeline import DataSettings, RunSettings, ScoringRun
from q16.inference.resume import reading_settings
from q16.inference.settings import InferSettings
from q16.models.backbone import BackboneSpec
from q16.runinfo import ConfigRecord
from q16.sources.base import EmbeddingSource, InferenceSource

log = logging.getLogger(__name__)
__all__ = ["check_embeddings", "load_head", "run"]

EXAMPLES = {"data.path": "/images", "data.shards": "/data/shards"}


def run(cfg: DictConfig) -> dict[str, Any]:
    """Score every image in ``cfg.data``; returns the summary (also ``summary.json``).

    Everything the user gave is checked before a model is loaded or a file written; rank 0
    then holds the out_dir's lock until the summary (and report) are written.
    """
    started = time.perf_counter()
    require_values(cfg, "infer.py", EXAMPLES)
    settings = infer_settings(cfg.infer, cfg.get("heads"))
    source = build_source(cfg.data)
    check_pixels(settings, source)
    record = ConfigRecord.of(cfg)
    data, run_settings = data_settings(cfg.data), run_settings_of(cfg, record)
    fabric = build_fabric(cfg.fabric)
    fabric.launch()
    shards = source.list_shards()
    with ExitStack() as held:
        problem = ""
        if fabric.global_rank == 0:
            try:
                out = check_out_dir(settings.out_dir, shards)
                held.enter_context(out_dir_lock(out))
                held.enter_context(run_log(out, record.yaml))
            except Q16Error as err:
                problem = str(err)
        run_id = uuid.uuid4().hex
        if fabric.world_size > 1:  # every rank learns rank 0's verdict before any starts
            run_id, problem = fabric.broadcast((run_id, problem), src=0)
        if problem:
            raise Q16Error(problem)
        pipeline = ScoringRun(settings, data, run_settings, source, shards, fabric, run_id, started)
        summary = pipeline.score()
        if summary and settings.report:
            from q16.report import write_report

            log.info("report: %s", write_report(settings.out_dir).html)
        return summary


def check_pixels(settings: InferSettings, source: InferenceSource) -> None:
    """Pixel heads and hashes need images: refused for saved embeddings before anything is
    read (one line)."""
    if not isinstance(source, EmbeddingSource):
        return
    wanted = [f"heads: {h.name} (detector {h.detector})" for h in settings.detector_heads]
    wanted += ["infer.hashes=true"] if settings.hashes else []
    if wanted:
        raise Q16Error(
            f"{', '.join(wanted)} needs the images, and data={source.name} holds only saved "
            "embeddings: score the images themselves (data=webdataset, data=folder, ...)"
        )


def build_source(data: DictConfig) -> InferenceSource:
    """``configs/infer/data/<name>.yaml``: a bad ``data.*`` value is one line."""
    try:
        source = instantiate(data)
    except InstantiationException as err:  # a bad data.* value, checked by the source
        cause = err.__cause__
        if isinstance(cause, Q16Error):
            raise Q16Error(str(cause)) from None
        if isinstance(cause, TypeError):  # an unknown data.* key
            raise Q16Error(f"{choices() or 'data: '}{cause}") from None
        raise
    if not isinstance(source, InferenceSource):  # a config written by hand, not ours
        raise Q16Error(f"data: {data.get('_target_')} is not an inference source")
    return source


def data_settings(data: DictConfig) -> DataSettings:
    """``data:`` as the run reads it beyond the source (the fingerprinted reading keys)."""
    resolved = OmegaConf.to_container(data, resolve=True)
    assert isinstance(resolved, dict)
    plain = {str(k): v for k, v in resolved.items()}
    inputs: tuple[str, ...] = ()
    for key in ("shards", "path"):
        if key in plain:
            value = plain[key]
            inputs = tuple(map(str, value)) if isinstance(value, list) else (str(value),)
            break
    max_bytes = plain.get("max_bytes")
    return DataSettings(
        meta_columns=tuple(str(c) for c in plain.get("meta_columns") or ()),
        max_bytes=max_bytes,
        exif_transpose=bool(plain.get("exif_transpose", False)),
        reading=reading_settings(plain),
        inputs=inputs,
    )


def run_settings_of(cfg: DictConfig, record: ConfigRecord | None = None) -> RunSettings:
    spec: BackboneSpec = instantiate(cfg.model)
    if not isinstance(cfg.get("prompt"), DictConfig):
        raise Q16Error(
            f"prompt={cfg.get('prompt')!r}: infer.py scores with a finished prompt, "
            "prompt.path=<prompts.safetensors | paper | zeroshot | concepts.yaml> "
            "(train.py's prompt= chooses a prompt type to train)"
        )
    prompt = cfg.prompt.get("path")
    return RunSettings(
        spec=spec,
        prompt=None if prompt is None else str(prompt),
        seed=int(cfg.get("seed", 0)),
        num_nodes=int(cfg.fabric.get("num_nodes", 1)),
        record=record,
    )


def build_fabric(fabric: DictConfig) -> L.Fabric:
    """``configs/infer/fabric``: where the ranks run (accelerator, devices, nodes, strategy)."""
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
        decode=str(infer.get("decode", "pil")),
        hashes=infer.get("hashes", False),
        heads=heads,
    )
