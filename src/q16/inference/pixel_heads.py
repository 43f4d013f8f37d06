"""Heads that look at the decoded pixels rather than CLIP's features (faces, nudity), and the
per-image hashes of removal requests: what runs in the reader workers, what runs beside the
scorer, and the columns they add to the scores.

Each image is decoded once. In the worker, every *extractor* gets the image's bytes and its
full-resolution RGB: a detector head's extractor makes the detector's view (a resize of the
whole image, :class:`q16.detectors.base.PixelDetector`); the hash extractor computes sha256 and
PDQ. Only those small results travel with the batch (memory stays bounded by the batch size,
not by the images' resolution). Beside the scorer, each detector runs on its views batched;
its ``p_<name>`` (the detector's ``score``) joins the prompt heads' probabilities, so the
writer, ``collect``, resume and the summary treat it like any head (``flagged_<name>`` at the
head's threshold, which is also the detector's), and its boxes go to its own columns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from q16.detectors.base import Detections, PixelDetector
from q16.detectors.registry import detector_kind
from q16.imagehash import pdq, sha256_hex
from q16.inference.settings import HeadSpec

Extractor = Callable[[bytes, np.ndarray], Any]
"""Runs in a reader worker: (image bytes, uint8 RGB at full size) -> something small."""
HASH_FIELDS = (
    pa.field("sha256", pa.string()),
    pa.field("pdq", pa.string()),
    pa.field("pdq_quality", pa.int16()),
)
BOXES = pa.list_(pa.list_(pa.float32(), 4))


@dataclass(frozen=True)
class PixelColumns:
    """The scores columns of one detector head."""

    count: str
    boxes: str
    scores: str
    labels: str
    p: str
    flagged: str

    @classmethod
    def of(cls, name: str, noun: str) -> PixelColumns:
        return cls(
            f"{name}_n", f"{noun}_bboxes", f"{noun}_scores", f"{noun}_labels",
            f"p_{name}", f"flagged_{name}",
        )  # fmt: skip

    def fields(self) -> list[pa.Field]:
        """The detection columns (``p_``/``flagged_`` are the writer's, as for every head)."""
        return [
            pa.field(self.count, pa.int32()),
            pa.field(self.boxes, BOXES),
            pa.field(self.scores, pa.list_(pa.float32())),
            pa.field(self.labels, pa.list_(pa.string())),
        ]


@dataclass(frozen=True)
class PixelHead:
    name: str
    detector: PixelDetector
    threshold: float
    columns: PixelColumns
    threshold_from: str = "detector"
    limits: tuple[str, ...] = ()
    topic: str = ""
    review_flags: bool = True


@dataclass(frozen=True)
class _ViewExtractor:
    viewer: Callable[[np.ndarray], np.ndarray]

    def __call__(self, data: bytes, pixels: np.ndarray) -> np.ndarray:
        return self.viewer(pixels)


def hash_extract(data: bytes, pixels: np.ndarray) -> tuple[str, str, int]:
    """sha256 of the bytes, PDQ (hex) and its quality of the pixels."""
    code, quality = pdq(pixels)
    return sha256_hex(data), code, quality


@dataclass
class PixelHeads:
    """The run's detector heads (in ``heads:`` order) and whether it hashes its images."""

    heads: tuple[PixelHead, ...] = ()
    hashes: bool = False
    seconds: float = 0.0
    """Time spent detecting in this process (the views were made in the workers)."""

    @classmethod
    def build(
        cls,
        specs: Sequence[HeadSpec] | None,
        device: str,
        hashes: bool,
        cpu_threads: int = 0,
    ) -> PixelHeads:
        """Detectors of the ``heads:`` entries that name one (their model files load here).

        ``cpu_threads``: on a CPU run, the intra-op threads of each detector whose entry does
        not set ``threads`` (the run's budget, torch's too: the cores less the DataLoader
        workers); 0 leaves onnxruntime's default (all cores), as on a GPU.
        """
        heads = []
        nouns: dict[str, str] = {}
        for spec in specs or ():
            if spec.detector is None:
                continue
            kind = detector_kind(spec.detector, f"heads: {spec.name}")
            options = dict(spec.options)
            origin = "heads" if "threshold" in options else "detector default"
            options.setdefault("threshold", kind.default_threshold)
            if cpu_threads > 0 and "threads" in kind.options and not options.get("threads"):
                options["threads"] = cpu_threads
            detector = kind.build(options, device)
            if detector.noun in nouns:
                raise _twice(spec.name, nouns[detector.noun], detector.noun)
            nouns[detector.noun] = spec.name
            columns = PixelColumns.of(spec.name, detector.noun)
            threshold = float(options["threshold"])
            heads.append(
                PixelHead(
                    spec.name,
                    detector,
                    threshold,
                    columns,
                    origin,
                    kind.limits,
                    kind.topic,
                    kind.review_flags,
                )
            )
        return cls(tuple(heads), hashes)

    def __bool__(self) -> bool:
        return bool(self.heads) or self.hashes

    def extractors(self) -> tuple[Extractor, ...]:
        """For the reader workers: one per head (its view), then the hashes."""
        views = tuple(_ViewExtractor(h.detector.viewer()) for h in self.heads)
        return views + ((hash_extract,) if self.hashes else ())

    def fields(self) -> tuple[pa.Field, ...]:
        found = [f for h in self.heads for f in h.columns.fields()]
        return tuple(found) + (HASH_FIELDS if self.hashes else ())

    def run(
        self, extracted: Sequence[tuple[Any, ...]]
    ) -> tuple[dict[str, torch.Tensor], dict[str, pa.Array]]:
        """One batch's extractor results -> (name -> p tensor, column -> array)."""
        tick = time.perf_counter()
        probs: dict[str, torch.Tensor] = {}
        columns: dict[str, pa.Array] = {}
        for index, head in enumerate(self.heads):
            found = head.detector.detect([row[index] for row in extracted]) if extracted else []
            probs[head.name] = torch.tensor(
                [head.detector.score(f) for f in found], dtype=torch.float32
            )
            columns.update(_detection_columns(head.columns, found))
        if self.hashes:
            rows = [row[len(self.heads)] for row in extracted]
            columns["sha256"] = pa.array([r[0] for r in rows], pa.string())
            columns["pdq"] = pa.array([r[1] for r in rows], pa.string())
            columns["pdq_quality"] = pa.array([r[2] for r in rows], pa.int16())
        self.seconds += time.perf_counter() - tick
        return probs, columns

    def thresholds(self) -> tuple[tuple[str, float], ...]:
        return tuple((h.name, h.threshold) for h in self.heads)

    def unlisted(self) -> frozenset[str]:
        """Heads whose flags are counted but add no row to ``flagged.csv`` (faces)."""
        return frozenset(h.name for h in self.heads if not h.review_flags)

    def fingerprint(self) -> list[tuple[str, str, str | None, float]]:
        """In the shape of the prompt heads' entries: (name, what it is, None, threshold)."""
        entries: list[tuple[str, str, str | None, float]] = [
            (h.name, _settings_text(h.detector.settings()), None, h.threshold) for h in self.heads
        ]
        return entries + ([("hashes", "sha256+pdq", None, 0.0)] if self.hashes else [])

    def summary(self) -> tuple[dict[str, object], ...]:
        return tuple(
            {
                "name": h.name,
                "detector": h.detector.name,
                "threshold": h.threshold,
                "threshold_from": h.threshold_from,
                "settings": h.detector.settings(),
                "known_limits": list(h.limits),
                "topic": h.topic,
                "columns": {
                    "count": h.columns.count,
                    "boxes": h.columns.boxes,
                    "scores": h.columns.scores,
                    "labels": h.columns.labels,
                    "p": h.columns.p,
                    "flagged": h.columns.flagged,
                },
            }
            for h in self.heads
        )


def _detection_columns(columns: PixelColumns, found: list[Detections]) -> dict[str, pa.Array]:
    return {
        columns.count: pa.array([len(f) for f in found], pa.int32()),
        columns.boxes: pa.array([f.boxes.tolist() for f in found], BOXES),
        columns.scores: pa.array([f.scores.tolist() for f in found], pa.list_(pa.float32())),
        columns.labels: pa.array([list(f.labels) for f in found], pa.list_(pa.string())),
    }


def _settings_text(settings: dict[str, Any]) -> str:
    return ",".join(f"{k}={settings[k]}" for k in sorted(settings))


def _twice(name: str, other: str, noun: str) -> Exception:
    from q16.errors import Q16Error

    return Q16Error(
        f"heads: {name} and {other} both write {noun}_* columns (the same detector kind); "
        "keep one of them"
    )
