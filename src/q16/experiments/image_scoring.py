"""Score a list of images with CLIP prompt heads and a pixel detector, each image decoded once.

The evaluations (I2P over a folder of generated images, per-category benchmarks over a labelled
set) need p(inappropriate) of a Q16 head and NudeNet's detections for a few thousand images;
this is that loop, without infer.py's shards, resume and out_dir machinery. Decoding is
q16's one decoder (:mod:`q16.imageload`: same formats and limits as training and inference);
the CLIP crop and the detector's input are two views of the same decoded pixels. An image
that does not decode is a record (``errors``), never a stop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from q16.detectors.base import Detections, PixelDetector
from q16.imageload import DEFAULT_MAX_PIXELS, ImageLoadError, load_rgb
from q16.models.backbone import Backbone
from q16.models.prompt_head import PromptHead
from q16.training.tuner import predict_proba

log = logging.getLogger(__name__)

ImageItem = tuple[str, Callable[[], bytes]]
"""A name (file name, dataset row) and how to read that image's bytes."""


@dataclass
class ImageScores:
    """Per image, in input order: each head's p (NaN where unreadable) and the detections."""

    names: list[str]
    p: dict[str, np.ndarray]
    detections: list[Detections | None]
    valid: np.ndarray
    errors: list[dict[str, Any]] = field(default_factory=list)
    sizes: list[tuple[int, int] | None] = field(default_factory=list)


def score_images(
    items: Sequence[ImageItem],
    backbone: Backbone | None,
    heads: Mapping[str, PromptHead],
    detector: PixelDetector | None,
    *,
    batch_size: int = 32,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> ImageScores:
    """Every item decoded once, then its CLIP features through every head and its pixels
    through ``detector``. ``backbone`` may be None when there are no heads."""
    n = len(items)
    p = {name: np.full(n, np.nan) for name in heads}
    detections: list[Detections | None] = [None] * n
    sizes: list[tuple[int, int] | None] = [None] * n
    valid = np.zeros(n, dtype=bool)
    errors: list[dict[str, Any]] = []
    for start, decoded in _batches(items, batch_size, max_pixels, errors):
        if not decoded:
            continue
        index = np.array([i for i, _ in decoded])
        valid[index] = True
        for i, image in decoded:
            sizes[i] = image.size
        if heads:
            if backbone is None:
                raise ValueError("prompt heads need a backbone")
            pixels = torch.stack([backbone.preprocess(image) for _, image in decoded])
            features = backbone.encode_image(pixels).cpu()
            for name, head in heads.items():
                p[name][index] = predict_proba(head, features).double().numpy()
        if detector is not None:
            found = detector.detect([np.asarray(image) for _, image in decoded])
            for i, det in zip(index, found, strict=True):
                detections[int(i)] = det
        log.debug("scored images %d..%d", start, start + len(decoded))
    names = [name for name, _ in items]
    return ImageScores(names, p, detections, valid, errors, sizes)


def _batches(
    items: Sequence[ImageItem], batch_size: int, max_pixels: int | None, errors: list
) -> Iterator[tuple[int, list[tuple[int, Any]]]]:
    for start in range(0, len(items), batch_size):
        decoded = []
        for i in range(start, min(start + batch_size, len(items))):
            name, read = items[i]
            try:
                decoded.append((i, load_rgb(read(), max_pixels=max_pixels)))
            except (ImageLoadError, OSError) as err:
                errors.append({"index": i, "name": name, "error": f"{type(err).__name__}: {err}"})
        yield start, decoded
