"""The I2P evaluation of a folder of generated images: every image through the Q16 head and
NudeNet once, i2p's per-image table, and the metrics of :mod:`q16.experiments.i2p`.

Writes to ``out_dir``: ``i2p_images.csv`` (i2p's ``prompt, categories, idx_generation,
unsafe`` first, then the prompt index, the file and what each head said), ``i2p_metrics.json``
(the numbers and, beside them, the protocol, the Q16 head, the detector, the inputs),
``i2p_metrics.md`` (i2p's README table) and ``errors.jsonl`` (files not matched to a prompt,
images that do not decode: not in the metric, counted in the JSON).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from q16.data.i2p import GeneratedImages
from q16.detectors.base import Detections, PixelDetector
from q16.detectors.nudenet import nudity_score
from q16.errors import Q16Error
from q16.experiments.i2p import I2PProtocol, decide, i2p_metrics, metrics_markdown
from q16.experiments.image_scoring import score_images
from q16.fileio import atomic_write_text
from q16.imageload import read_file
from q16.models.backbone import Backbone
from q16.models.prompt_head import PromptHead
from q16.spreadsheet import write_text_csv

log = logging.getLogger(__name__)

Q16 = "q16"


@dataclass(frozen=True)
class I2PRun:
    """Where the outputs go and how images are batched; ``note`` is printed under the table
    (e.g. that the CLIP weights are random)."""

    out_dir: Path
    batch_size: int = 32
    note: str = ""


@dataclass(frozen=True)
class _File:
    path: Path

    def __call__(self) -> bytes:
        return read_file(self.path)


def run_i2p_folder(
    images: GeneratedImages,
    folder: Path,
    backbone: Backbone,
    q16_head: PromptHead,
    q16_record: dict[str, Any],
    detector: PixelDetector,
    protocol: I2PProtocol,
    run: I2PRun,
) -> dict[str, Any]:
    """Score, decide, compute, write; returns the metrics (also in ``i2p_metrics.json``)."""
    table = images.table
    items = [(str(name), _File(folder / str(name))) for name in table["file"]]
    scores = score_images(items, backbone, {Q16: q16_head}, detector, batch_size=run.batch_size)
    valid = scores.valid
    if not valid.any():
        raise Q16Error(f"{folder}: none of the {len(items)} matched images could be decoded")
    found = [d if d is not None else Detections.empty() for d in scores.detections]
    p_nudity = np.array([nudity_score(d, protocol.nudity_labels) for d in found])
    decided = decide(
        table[valid].reset_index(drop=True),
        scores.p[Q16][valid],
        p_nudity[valid],
        protocol,
    )
    decided["nudity_labels"] = [_labels(d) for d, ok in zip(found, valid, strict=True) if ok]
    metrics = i2p_metrics(decided, protocol)
    metrics["q16_head"] = q16_record
    metrics["inputs"] = {
        **images.record,
        "n_unreadable": int((~valid).sum()),
        "n_scored": int(valid.sum()),
    }
    if run.note:
        metrics["note"] = run.note
    out = run.out_dir
    out.mkdir(parents=True, exist_ok=True)
    write_text_csv(decided, out / "i2p_images.csv", float_format="%.6g")
    atomic_write_text(out / "i2p_metrics.json", json.dumps(metrics, indent=2, default=str))
    atomic_write_text(out / "i2p_metrics.md", metrics_markdown(metrics, run.note))
    errors = [{"kind": "not matched", **s} for s in images.skipped] + [
        {"kind": "unreadable", "file": e["name"], "reason": e["error"]} for e in scores.errors
    ]
    atomic_write_text(
        out / "errors.jsonl", "".join(json.dumps(e, default=str) + "\n" for e in errors)
    )
    overall = metrics["all"]
    log.info(
        "I2P: %d images of %d prompts: inappropriate probability %.2f%%; wrote %s",
        overall["n_images"],
        overall["n_prompts"],
        overall["inappropriate_probability"],
        out,
    )
    return metrics


def _labels(det: Detections) -> str:
    """Every label NudeNet found, with its score: ``FACE_FEMALE:0.81;...``."""
    return ";".join(
        f"{label}:{score:.3f}" for label, score in zip(det.labels, det.scores, strict=True)
    )
