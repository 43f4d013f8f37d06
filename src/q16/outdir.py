"""Names inside an inference ``out_dir``: the contract shared by infer.py, data=embeddings and
the report. Kept free of heavy imports so that the report and the inference sources can read it
without torch, and without importing the inference package that writes it."""

from __future__ import annotations

from pathlib import Path

OUT_DIR_FORMAT = 3
"""Version of the out_dir layout (parquet schema, file names, fingerprint keys). Bump it when
they change: an out_dir written by another q16 is then refused with a message that says so.
2: folder keys keep the extension; parquet metadata holds the input's size/mtime stamp;
fingerprint has max_bytes and exif_transpose. 3: ``meta_<column>`` string columns
(``data.meta_columns``) in the scores and flagged.csv; embedding runs build no image tower."""

SCORES_DIR = "scores"
ERRORS_DIR = "errors"
EMBEDDINGS_DIR = "embeddings"
RANKS_DIR = "ranks"
SUMMARY_FILE = "summary.json"
FLAGGED_FILE = "flagged.csv"
ERRORS_FILE = "errors.jsonl"
FINGERPRINT_FILE = "fingerprint.json"
SHARD_INPUT_KEY = b"q16.input"
"""Parquet metadata of ``scores/<shard>.parquet``: the shard's input (the paths it read)."""
SHARD_STAMP_KEY = b"q16.stamp"
"""Parquet metadata: size and mtime of the shard's files when it was scored."""
LOCK_FILE = ".q16.lock"
"""Held by the run using the out_dir; its presence also marks the directory as q16's."""
LOGS_DIR = "logs"
"""``logs/infer-<time>.log`` and ``.yaml``: each run's log and resolved config."""
EMBEDDINGS_META_FILE = "meta.json"
EMBEDDINGS_INPUTS = "inputs"
"""meta.json's list of the saving run's resolved inputs (tars, folders, files)."""
"""``embeddings/meta.json``: model, weights and dimension of the saved embeddings."""

FLAGGED_COLUMNS = (
    "key",
    "shard",
    "source",
    "file_name",
    "class_id",
    "class_name",
    "p_inappropriate",
)
"""Columns of ``flagged.csv``, in order (then the ``meta_<column>`` columns of the run)."""
META_PREFIX = "meta_"
"""``data.meta_columns`` (the dataset's own url, caption, uid ...) are stored as ``meta_<name>``."""


def meta_column_names(columns: tuple[str, ...] | list[str]) -> list[str]:
    return [f"{META_PREFIX}{c}" for c in columns]


UNKNOWN_CLASS = "(unknown class)"
"""The ``per_class`` key (summary.json) and report label for images without a class."""


def scores_path(out_dir: Path, shard: str) -> Path:
    """``scores/<shard>.parquet``: its presence marks the shard done."""
    return out_dir / SCORES_DIR / f"{shard}.parquet"


def shard_errors_path(out_dir: Path, shard: str) -> Path:
    """``errors/<shard>.jsonl``: the shard's unreadable inputs (or why it could not be read)."""
    return out_dir / ERRORS_DIR / f"{shard}.jsonl"


def embeddings_path(out_dir: Path, shard: str) -> Path:
    """``embeddings/<shard>.npy``: float32, rows in the order of the shard's parquet."""
    return out_dir / EMBEDDINGS_DIR / f"{shard}.npy"
