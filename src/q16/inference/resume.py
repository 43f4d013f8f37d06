"""Whether a run may resume into an ``out_dir``, and which of its shards are left to score.

``fingerprint.json`` says what the scores were made from (inputs, model, prompt, settings):
resuming into an out_dir made differently would mix two runs' rows, so it is refused. Each
done shard's parquet also remembers its own input (``shard_identity``: the paths it read), so a
shard of the same name made from other files is refused, and their size and mtime
(``shard_stamp``), so a file replaced at the same path (a tar completed after it was scored) is
scored again instead of being skipped as done.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from q16.errors import Q16Error
from q16.fileio import atomic_write_text
from q16.inference.writer import is_done
from q16.outdir import FINGERPRINT_FILE, OUT_DIR_FORMAT, embeddings_path, scores_path
from q16.sources.base import Shard, is_remote


def resolved(source: str) -> str:
    """A local source as an absolute, resolved path; a URL or ``pipe:`` as written."""
    return source if is_remote(source) else str(Path(source).expanduser().resolve())


def shard_identity(shard: Shard) -> str:
    """What one shard reads: its resolved tar / folder / npy path and, for a folder chunk, its
    files. Stored in the shard's parquet, so a done shard of other inputs is never skipped."""
    record = [resolved(shard.source), list(shard.files)]
    return hashlib.sha256(json.dumps(record).encode()).hexdigest()[:16]


def shard_stamp(shard: Shard) -> str:
    """Size and mtime of what the shard reads, as now (empty for remote shards: trusted by
    URL). A shard whose stamp changed since it was scored is scored again."""
    if is_remote(shard.source):
        return ""
    paths = [os.path.join(shard.source, f) for f in shard.files] or [shard.source]
    digest = hashlib.sha256()
    for path in paths:
        try:
            info = os.stat(path)
            digest.update(f"{info.st_size}:{info.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(b"missing\n")
    return digest.hexdigest()[:16]


def data_identity(shards: Sequence[Shard]) -> str:
    """A hash of every shard's name and identity (so another shard list, a changed file list
    or another ``data.shard_size`` changes it)."""
    digest = hashlib.sha256()
    for shard in shards:
        digest.update(f"{shard.name}\t{shard_identity(shard)}\n".encode())
    return f"{len(shards)} shards, sha256 {digest.hexdigest()[:16]}"


READING_KEYS = (
    "key_column",
    "array",
    "class_id_keys",
    "class_name_keys",
    "synset_keys",
    "file_name_keys",
    "class_from_dirs",
    "class_names",
    "shard_size",
)
"""``data.*`` settings that change which rows are read or what they are called (the column
naming rows, the npz array, where classes come from, how a folder is chunked)."""


def reading_settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """The ``READING_KEYS`` a data config sets (null ones left out), as plain values."""
    found = {}
    for name in READING_KEYS:
        value = data.get(name)
        if value is not None:
            found[name] = (
                list(value) if isinstance(value, Sequence) and not isinstance(value, str) else value
            )
    return found


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
    max_bytes: int | None = None,
    exif_transpose: bool = False,
    meta_columns: tuple[str, ...] = (),
    heads: Sequence[tuple[str, str, str | None, float]] | None = None,
    reading: Mapping[str, Any] | None = None,
    decode: str = "pil",
) -> dict[str, Any]:
    """What makes two runs' scores the same; resume refuses an out_dir made differently.

    ``heads`` (name, prompt source, category, threshold) per ``heads:`` entry; without
    ``heads:`` the fingerprint has no such key, so today's out_dirs resume as before; the same
    for ``decode`` (``infer.decode``) other than ``pil``.
    """
    extra: dict[str, Any] = {"reading": dict(reading)} if reading else {}
    if decode != "pil":
        extra["decode"] = decode
    if heads is not None:
        extra["heads"] = [
            {"name": n, "prompt": _prompt_id(s), "category": c, "threshold": t}
            for n, s, c, t in heads
        ]
    return {
        "format": OUT_DIR_FORMAT,
        "data": data_identity(shards),
        "model": model,
        "weights": weights,
        "precision": precision,
        "preprocess": preprocess,
        "prompt": _prompt_id(prompt_source),
        "threshold": threshold,
        "autocast": autocast,
        "max_pixels": max_pixels,
        "max_bytes": max_bytes,
        "exif_transpose": exif_transpose,
        "meta_columns": list(meta_columns),
        **extra,
    }


def scoring_id(current: Mapping[str, Any]) -> str:
    """How a run makes its scores: its fingerprint without the inputs (each shard's input is
    checked by its own identity) and without thresholds (flags are derived from the scores
    when results are collected), as a short hash stored in every shard's parquet."""
    scoring = {k: v for k, v in current.items() if k not in ("data", "threshold")}
    if isinstance(scoring.get("heads"), list):
        scoring["heads"] = [
            {k: v for k, v in h.items() if k != "threshold"} if isinstance(h, dict) else h
            for h in scoring["heads"]
        ]
    text = json.dumps(scoring, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _prompt_id(prompt_source: str) -> str:
    """A prompt file by its content (a file edited in place is another prompt); anything else
    (``paper``, a pixel head's settings text, longer than a file name may be) as written."""
    try:
        is_file = Path(prompt_source).is_file()
    except OSError:  # ENAMETOOLONG and the like: not a file name
        is_file = False
    if is_file:
        return hashlib.sha256(Path(prompt_source).read_bytes()).hexdigest()[:16]
    return prompt_source


def check_fingerprint(out: Path, current: dict[str, Any], write: bool) -> None:
    """Refuse (one line) an out_dir whose fingerprint differs; write it on the first run."""
    path = out / FINGERPRINT_FILE
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except ValueError as err:
            raise Q16Error(
                f"{path} is not readable JSON; pass a new infer.out_dir (or delete the old one)"
            ) from err
        if not isinstance(previous, dict):
            previous = {}
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
        atomic_write_text(path, json.dumps(current, indent=2))


def prepare_out_dir(
    out: Path, current: dict[str, Any], mine: Sequence[Shard], *, record: bool
) -> list[Shard]:
    """Check ``out`` against this run and return the shards of ``mine`` not done yet.

    The order matters. (1) The fingerprint is checked before anything else is read, so an
    out_dir made differently is refused as such (naming what differs). (2) Each done shard is
    checked against its own input (a parquet made from other files is refused, naming the
    shard). (3) Only then is the fingerprint recorded (``record``: rank 0 alone writes it), so
    a refused run never leaves a fingerprint in an out_dir it did not write.

    A shard to be scored again (its input changed, or its parquet is unreadable) loses its old
    outputs first: should the new attempt fail, no stale rows remain to be collected as done.
    """
    out.mkdir(parents=True, exist_ok=True)
    fingerprinted = (out / FINGERPRINT_FILE).is_file()
    check_fingerprint(out, current, write=False)
    scoring = scoring_id(current)
    todo = [
        s
        for s in mine
        if not is_done(
            out, s.name, shard_identity(s), shard_stamp(s), scoring, fingerprinted=fingerprinted
        )
    ]
    for shard in todo:
        for path in (scores_path(out, shard.name), embeddings_path(out, shard.name)):
            path.unlink(missing_ok=True)
    check_fingerprint(out, current, write=record)
    return todo
