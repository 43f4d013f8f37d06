"""What an inference ``out_dir`` remembers between runs and ranks.

``fingerprint.json`` says what the scores were made from (inputs, model, prompt, settings):
resuming into an out_dir made differently would mix two runs' rows, so it is refused. Each
rank leaves ``ranks/rank-<k>.json`` when it is done; rank 0 waits for them (files, not a
collective) before it writes the summary.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from q16.data.shards import Shard
from q16.errors import Q16Error
from q16.inference.layout import EMBEDDINGS_DIR, FINGERPRINT_FILE, RANKS_DIR

log = logging.getLogger(__name__)

OUT_DIR_FORMAT = 1
"""Version of the out_dir layout (parquet schema, file names, fingerprint keys). Bump it when
they change: an out_dir written by another q16 is then refused with a message that says so."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _resolved(source: str) -> str:
    if "://" in source or source.startswith("pipe:"):
        return source
    return str(Path(source).expanduser().resolve())


def shard_identity(shard: Shard) -> str:
    """What one shard reads: its resolved tar / folder / npy path and, for a folder chunk, its
    files. Stored in the shard's parquet, so a done shard of other inputs is never skipped."""
    record = [_resolved(shard.source), list(shard.files)]
    return hashlib.sha256(json.dumps(record).encode()).hexdigest()[:16]


def data_identity(shards: Sequence[Shard]) -> str:
    """A hash of every shard's name and identity (so another shard list, a changed file list
    or another ``data.shard_size`` changes it)."""
    digest = hashlib.sha256()
    for shard in shards:
        digest.update(f"{shard.name}\t{shard_identity(shard)}\n".encode())
    return f"{len(shards)} shards, sha256 {digest.hexdigest()[:16]}"


def fingerprint(
    *,
    model: str,
    weights: str | None,
    precision: str,
    preprocess: str,
    prompt_source: str,
    threshold: float,
    autocast: str,
    max_pixels: int,
    shards: Sequence[Shard],
) -> dict[str, Any]:
    """What makes two runs' scores the same; resume refuses an out_dir made differently."""
    prompt_id = prompt_source
    if Path(prompt_source).is_file():
        prompt_id = hashlib.sha256(Path(prompt_source).read_bytes()).hexdigest()[:16]
    return {
        "format": OUT_DIR_FORMAT,
        "data": data_identity(shards),
        "model": model,
        "weights": weights,
        "precision": precision,
        "preprocess": preprocess,
        "prompt": prompt_id,
        "threshold": threshold,
        "autocast": autocast,
        "max_pixels": max_pixels,
    }


def check_fingerprint(out: Path, current: dict[str, Any], write: bool) -> None:
    """Refuse (one line) an out_dir whose fingerprint differs; write it on the first run."""
    path = out / FINGERPRINT_FILE
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous.get("format") != current.get("format"):
            found, ours = previous.get("format", 0), current.get("format")
            raise Q16Error(
                f"infer.out_dir={str(out)!r} was written by another q16 version (out_dir format "
                f"{found}, this q16 writes {ours}); pass a new infer.out_dir, or finish it with "
                "the q16 version that started it"
            )
        if previous != current:
            changed = sorted(
                k for k in current.keys() | previous if previous.get(k) != current.get(k)
            )
            what = ", ".join("inputs (data)" if k == "data" else k for k in changed)
            raise Q16Error(
                f"infer.out_dir={str(out)!r} holds scores made with different {what}; "
                "pass a new infer.out_dir (or delete the old one)"
            )
    elif write:
        atomic_write_bytes(path, json.dumps(current, indent=2).encode())


def write_embeddings_meta(out: Path, meta: dict[str, Any]) -> None:
    path = out / EMBEDDINGS_DIR / "meta.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(meta, indent=2).encode())


@dataclass
class LoopStats:
    """What one rank did in this run (written to ``ranks/rank-<k>.json``)."""

    images: int = 0
    shards: int = 0
    unread: list[str] = field(default_factory=list)
    data_wait_s: float = 0.0
    model_s: float = 0.0
    write_s: float = 0.0
    loop_s: float = 0.0


def write_rank(out: Path, rank: int, run_id: str, stats: LoopStats) -> None:
    folder = out / RANKS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    record = {"run_id": run_id, "rank": rank, **stats.__dict__}
    atomic_write_bytes(folder / f"rank-{rank}.json", json.dumps(record).encode())


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
