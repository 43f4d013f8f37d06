"""One rank's scoring run as a small object built from typed settings (``q16.infer.run`` makes
them from the config): load the model and heads, fingerprint, pick the shards not done yet,
score them, report this rank; rank 0 then collects and writes the summary.

reader (workers decode whole shards) -> scorer (batched, on the device) -> writer (one parquet
per shard, committed atomically).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch

from q16.errors import Q16Error
from q16.inference.collect import collect
from q16.inference.head import RunHeads, check_embeddings, needs_text_tower
from q16.inference.loop import score_shards
from q16.inference.pixel_heads import PixelHeads
from q16.inference.reader import ImageDecoder, UInt8Preprocess, partition, reads_blocks
from q16.inference.resume import fingerprint, prepare_out_dir, resolved, scoring_id
from q16.inference.scorer import Scorer, resolve_autocast
from q16.inference.settings import InferSettings, auto_batch_size, auto_workers, cpu_threads
from q16.inference.state import LoopStats, wait_for_ranks, write_embeddings_meta, write_rank
from q16.inference.summary import RunSetup, build_summary, write_summary
from q16.inference.writer import ShardWriter
from q16.models.backbone import Backbone, BackboneSpec, load_backbone
from q16.models.space import embedding_space_backbone
from q16.outdir import SUMMARY_FILE
from q16.runinfo import ConfigRecord, write_run_info
from q16.sources.base import DownloadStatsSource, EmbeddingSource, InferenceSource, Shard

log = logging.getLogger(__name__)


def _combined(prompt: Any, pixel: Any) -> Any:
    """The prompt heads' entries then the pixel heads' (fingerprint, summary); without
    ``heads:`` and hashes exactly the prompt heads' (today's out_dirs resume as before)."""
    if not pixel:
        return prompt
    return type(pixel)([*(prompt or ()), *pixel])


@dataclass(frozen=True)
class DataSettings:
    """What the run reads of ``data:`` besides building the source; all but ``inputs`` are
    part of the resume fingerprint."""

    meta_columns: tuple[str, ...] = ()
    max_bytes: int | None = None
    exif_transpose: bool = False
    reading: Mapping[str, Any] = field(default_factory=dict)
    """the source's ``READING_KEYS`` that are set (q16.inference.resume.reading_settings)"""
    inputs: tuple[str, ...] = ()
    """what the user named (``data.shards`` or ``data.path``), for the summary"""


@dataclass(frozen=True)
class RunSettings:
    """The rest of the config a run reads: model, prompt, seed and placement."""

    spec: BackboneSpec
    prompt: str | None
    """``prompt.path`` (the single head when ``heads:`` is null)"""
    seed: int = 0
    num_nodes: int = 1
    record: ConfigRecord | None = None
    """the resolved config, written beside the summary (config.yaml, run_info.json)"""


def check_stats(stats: dict[str, Any], found: int) -> dict[str, Any]:
    """The downloader's stats beside what the shards held: where every shard has stats and
    they claim another number of downloads than q16 found (scored or recorded), the summary
    says so (``stats_agree`` false, ``images_in_shards``) and the datasheet with it."""
    if stats.get("shards_with_stats") != stats.get("shards_total"):
        return stats
    claimed = stats.get("successes")
    if not isinstance(claimed, int) or isinstance(claimed, bool):
        return stats
    agree = claimed == found
    if not agree:
        log.warning(
            "the downloader's stats claim %d images downloaded, the shards hold %d: cut or "
            "missing shards, or stats of another download (summary.json source_stats)",
            claimed,
            found,
        )
    return {**stats, "images_in_shards": found, "stats_agree": agree}


@dataclass
class ScoringRun:
    """One rank's run over ``shards`` (all ranks' list; this rank takes its partition)."""

    settings: InferSettings
    data: DataSettings
    run: RunSettings
    source: InferenceSource
    shards: list[Shard]
    fabric: L.Fabric
    run_id: str
    started: float = field(default_factory=time.perf_counter)

    @property
    def rank(self) -> int:
        return int(self.fabric.global_rank)

    @property
    def world(self) -> int:
        return int(self.fabric.world_size)

    def score(self) -> dict[str, Any]:
        """Score this rank's shards not done yet; rank 0 returns the summary (others ``{}``)."""
        settings, out = self.settings, self.settings.out_dir
        autocast = resolve_autocast(settings.autocast, self.fabric.device)
        # seeded so that random-weight models (tests, benchmarks) are the same on every rank
        L.seed_everything(self.run.seed, verbose=False)
        backbone, embeddings_only = self._backbone()
        check_embeddings(self.source, backbone)
        heads = RunHeads.load(
            settings.prompt_heads,
            self.run.prompt,
            backbone,
            settings.threshold,
            warn=self.rank == 0,
        )
        workers = self._workers()
        # threads + workers within the cores on a CPU: torch's threads and the detectors' alike
        budget = (
            cpu_threads(self._local_ranks(), workers) if self.fabric.device.type == "cpu" else 0
        )
        # detector models load here, before the out_dir is touched: a missing extra is one line
        pixel = PixelHeads.build(
            settings.heads, str(self.fabric.device), settings.hashes, cpu_threads=budget
        )
        todo, scoring = self._todo(backbone, heads, autocast, pixel)
        writer = ShardWriter(
            out,
            heads.threshold,
            settings.save_embeddings,
            meta_columns=self.data.meta_columns,
            heads=heads.thresholds() + pixel.thresholds(),
            pixel_fields=pixel.fields(),
            scoring=scoring,
        )
        if settings.save_embeddings and self.rank == 0:
            write_embeddings_meta(out, backbone, [resolved(s.source) for s in self.shards])
        preprocess = (
            UInt8Preprocess([], (0.0,) * 3, (1.0,) * 3)
            if embeddings_only
            else UInt8Preprocess.from_transform(backbone.preprocess)
        )
        scorer = Scorer(
            backbone, heads.head, preprocess.mean, preprocess.std, autocast, heads=heads.named()
        )
        batch_size = auto_batch_size(settings.batch_size, self.fabric.device)
        setup = self._setup(heads, workers, batch_size, pixel)
        threads = torch.get_num_threads()
        if budget:
            torch.set_num_threads(budget)
        try:
            return self._loop(setup, heads, todo, scorer, writer, preprocess, pixel)
        finally:
            torch.set_num_threads(threads)

    def _loop(
        self,
        setup: RunSetup,
        heads: RunHeads,
        todo: list[Shard],
        scorer: Scorer,
        writer: ShardWriter,
        preprocess: UInt8Preprocess,
        pixel: PixelHeads,
    ) -> dict[str, Any]:
        """Score ``todo``, report this rank; rank 0 then finishes the run."""
        settings, out = self.settings, self.settings.out_dir
        stats = score_shards(
            self.source,
            todo,
            scorer,
            writer,
            decoder=ImageDecoder(
                preprocess, settings.max_pixels, self.data.exif_transpose, self._decode()
            ),
            batch_size=setup.batch_size,
            num_workers=setup.num_workers,
            show_progress=settings.progress and self.rank == 0,
            pixel=pixel if pixel else None,
        )
        write_rank(out, self.rank, self.run_id, stats)
        if stats.unread:
            log.warning(
                "rank %d: %d shard(s) could not be read (%s); see errors.jsonl and re-run with "
                "the same infer.out_dir to retry them",
                *(self.rank, len(stats.unread), ", ".join(stats.unread[:5])),
            )
        thresholds = heads.thresholds() + pixel.thresholds()
        return self._finish(setup, thresholds, pixel.unlisted()) if self.rank == 0 else {}

    def _decode(self) -> str:
        """``infer.decode``; embeddings are not decoded, so it does not matter there."""
        return "pil" if reads_blocks(self.source) else self.settings.decode

    def _backbone(self) -> tuple[Backbone, bool]:
        """The model; for embeddings scored with prompt files only its space (no tower, no
        weights): zero-shot prompts and concept-set YAMLs still need the text tower."""
        spec, heads = self.run.spec, self.settings.prompt_heads
        prompts = [h.prompt for h in heads] if heads else [self.run.prompt]
        text = any(needs_text_tower(p, spec) for p in prompts)
        if isinstance(self.source, EmbeddingSource) and not spec.from_hub and not text:
            return embedding_space_backbone(spec, self.fabric.device), True
        return load_backbone(spec, self.fabric.device), False

    def _todo(
        self, backbone: Backbone, heads: RunHeads, autocast: str, pixel: PixelHeads
    ) -> tuple[list[Shard], str]:
        """This rank's shards that the out_dir has not committed under the same fingerprint,
        and the run's scoring id (stored in each shard's parquet, checked on resume)."""
        spec = backbone.spec
        current = fingerprint(
            model=spec.name,
            weights=spec.weights_id,
            precision=spec.precision,
            preprocess=backbone.preprocess_id,
            prompt_source=heads.source,
            threshold=heads.threshold,
            autocast=autocast,
            max_pixels=self.settings.max_pixels,
            max_bytes=self.data.max_bytes,
            exif_transpose=self.data.exif_transpose,
            shards=self.shards,
            meta_columns=self.data.meta_columns,
            heads=_combined(heads.fingerprint(), pixel.fingerprint()),
            reading=self.data.reading,
            decode=self._decode(),
        )
        mine = partition(self.shards, self.rank, self.world)
        todo = prepare_out_dir(self.settings.out_dir, current, mine, record=self.rank == 0)
        log.info(
            "rank %d/%d: %d shards, %d already done",
            *(self.rank, self.world, len(mine), len(mine) - len(todo)),
        )
        return todo, scoring_id(current)

    def _workers(self) -> int:
        """DataLoader workers per rank: the setting, else from the cores this node's ranks
        share; 0 for block sources (read in place, mmap; workers would pickle each block)."""
        if self.settings.num_workers is None and reads_blocks(self.source):
            return 0
        return auto_workers(self.settings.num_workers, self._local_ranks())

    def _local_ranks(self) -> int:
        """Ranks on this node, sharing its cores."""
        return max(1, self.world // max(1, self.run.num_nodes))

    def _setup(
        self, heads: RunHeads, num_workers: int, batch_size: int, pixel: PixelHeads
    ) -> RunSetup:
        return RunSetup(
            spec=self.run.spec,
            prompt_source=heads.source,
            threshold=heads.threshold,
            shards_total=len(self.shards),
            inputs=list(self.data.inputs) or [s.source for s in self.shards],
            data=self.source.name,
            batch_size=batch_size,
            num_workers=num_workers,
            world_size=self.world,
            device=str(self.fabric.device),
            setup_s=time.perf_counter() - self.started,
            heads=_combined(heads.summary(), pixel.summary()),
            hashes=pixel.hashes,
            decode=self._decode(),
        )

    def _finish(
        self,
        setup: RunSetup,
        heads: tuple[tuple[str, float], ...],
        unlisted: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """Rank 0, after its loop: wait for the ranks, collect, write summary (and report)."""
        out, timeout_s = self.settings.out_dir, self.settings.rank_wait_timeout_s
        records, missing = wait_for_ranks(out, setup.world_size, self.run_id, timeout_s)
        counts = collect(
            out,
            [s.name for s in self.shards],
            threshold=setup.threshold,
            meta_columns=self.data.meta_columns,
            heads=heads,
            unlisted=unlisted,
        )
        ranks = [LoopStats.from_record(r) for r in records]
        summary = build_summary(setup, counts, ranks, missing, time.perf_counter() - self.started)
        found = (
            self.source.download_stats(self.shards)
            if isinstance(self.source, DownloadStatsSource)
            else None
        )
        if found:  # what the downloader listed and lost (img2dataset), for the datasheet
            summary["source_stats"] = check_stats(
                found, counts.images_scored + counts.images_unscored
            )
        write_summary(out, summary)
        if self.run.record is not None:
            write_run_info(out, self.run.record, task="infer", summary=SUMMARY_FILE)
        if missing:
            raise Q16Error(
                f"rank(s) {', '.join(map(str, missing))} did not report within "
                f"infer.rank_wait_timeout_s={timeout_s:g} (a rank died?); summary.json covers "
                f"{counts.shards_done}/{setup.shards_total} shards: re-run with the same "
                "infer.out_dir to resume"
            )
        log.info(
            "scored %d images (%d flagged at p >= %.2f; %d not scored, %d error records) -> %s",
            *(counts.images_scored, counts.images_flagged, setup.threshold),
            *(counts.images_unscored, counts.errors, out),
        )
        return summary
