"""Names inside an inference ``out_dir``: the contract shared by infer.py, data=embeddings and
the report. Kept free of heavy imports so the report can read it without torch."""

from __future__ import annotations

SCORES_DIR = "scores"
ERRORS_DIR = "errors"
EMBEDDINGS_DIR = "embeddings"
RANKS_DIR = "ranks"
SUMMARY_FILE = "summary.json"
FLAGGED_FILE = "flagged.csv"
ERRORS_FILE = "errors.jsonl"
FINGERPRINT_FILE = "fingerprint.json"

FLAGGED_COLUMNS = (
    "key",
    "shard",
    "source",
    "file_name",
    "class_id",
    "class_name",
    "p_inappropriate",
)
"""Columns of ``flagged.csv``, in order."""
UNKNOWN_CLASS = "(unknown class)"
"""The ``per_class`` key (summary.json) and report label for images without a class."""
