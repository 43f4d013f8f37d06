"""What the ranks of one inference run tell each other through the ``out_dir``.

Each rank leaves ``ranks/rank-<k>.json`` when it is done; rank 0 waits for them (files, not a
collective, so uneven ranks are fine) before it writes the summary. Whether an out_dir may be
resumed at all is ``q16.inference.resume``'s business.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from q16.fileio import atomic_write_text
from q16.models.backbone import Backbone
from q16.outdir import EMBEDDINGS_DIR, EMBEDDINGS_INPUTS, EMBEDDINGS_META_FILE, RANKS_DIR

log = logging.getLogger(__name__)


def write_embeddings_meta(out: Path, backbone: Backbone, inputs: Sequence[str] = ()) -> None:
    """``embeddings/meta.json``: what ``data=embeddings`` checks the model against, and the
    run's inputs (resolved shard sources): a re-scoring run carries a row's ``source`` only
    when it lies in them, so a folder made elsewhere cannot point the report at other files."""
    path = out / EMBEDDINGS_DIR / EMBEDDINGS_META_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**embeddings_meta(backbone), EMBEDDINGS_INPUTS: sorted(set(inputs))}
    atomic_write_text(path, json.dumps(meta, indent=2))


def embeddings_meta(backbone: Backbone) -> dict[str, Any]:
    """What ``embeddings/meta.json`` says: the space the saved embeddings are in."""
    return {
        "model": backbone.spec.name,
        "pretrained": backbone.spec.pretrained,
        "weights": backbone.spec.weights_id,
        "embed_dim": backbone.embed_dim,
        "dtype": "float32",
    }


@dataclass
class LoopStats:
    """What one rank did in this run (written to ``ranks/rank-<k>.json``)."""

    images: int = 0
    shards: int = 0
    unread: list[str] = field(default_factory=list)
    data_wait_s: float = 0.0
    model_s: float = 0.0
    pixel_s: float = 0.0
    """Detector heads on their views (beside ``model_s``, the CLIP tower and prompt heads)."""
    write_s: float = 0.0
    loop_s: float = 0.0
    decoded_on_cpu: int = 0
    """``infer.decode=gpu``: JPEGs the device refused, decoded on the CPU instead."""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> LoopStats:
        """Back from a ``ranks/rank-<k>.json`` record (its ``run_id`` and ``rank`` dropped)."""
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})


def write_rank(out: Path, rank: int, run_id: str, stats: LoopStats) -> None:
    folder = out / RANKS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    record = {"run_id": run_id, "rank": rank, **stats.__dict__}
    atomic_write_text(folder / f"rank-{rank}.json", json.dumps(record))


def wait_for_ranks(
    out: Path, world: int, run_id: str, timeout_s: float, poll_s: float = 1.0
) -> tuple[list[dict[str, Any]], list[int]]:
    """Poll the ranks' files (no collective, so uneven ranks are fine) for at most ``timeout_s``.

    Returns the records found and the ranks that did not report in time (a rank that died).
    """
    deadline = time.monotonic() + timeout_s
    next_log = time.monotonic() + 60
    while True:
        found: dict[int, dict[str, Any]] = {}
        for k in range(world):
            path = out / RANKS_DIR / f"rank-{k}.json"
            if path.is_file():
                record = json.loads(path.read_text())
                if record.get("run_id") == run_id:
                    found[k] = record
        missing = [k for k in range(world) if k not in found]
        now = time.monotonic()
        if not missing or now >= deadline:
            return list(found.values()), missing
        if now >= next_log:
            log.info("rank 0 done; waiting for rank(s) %s to finish", missing)
            next_log = now + 60
        time.sleep(min(poll_s, max(0.0, deadline - now)))
