"""Encode images once with the frozen image tower and cache the features on disk.

Prompt training then runs on (N, D) tensors: seconds per epoch instead of a pass of the
image encoder. The cache key covers everything that changes the features: architecture,
weights, precision, preprocessing and the exact files (path, size, mtime).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset

from q16.fileio import atomic_path
from q16.imageload import read_file
from q16.models.backbone import Backbone
from q16.pixels import DEFAULT_DECODE, ImageDecoder, UInt8Preprocess

log = logging.getLogger(__name__)


@dataclass
class FeatureSet:
    """Image features (N, D) in file order; ``valid[i]`` is False where decoding failed."""

    features: torch.Tensor
    valid: torch.Tensor
    cache_path: Path | None
    cache_hit: bool


class ImageFiles(Dataset):
    """Decode image files to uint8 model inputs; an unreadable file yields ``ok=False``, not a
    crash.

    Decoded by ``q16.pixels.ImageDecoder`` exactly as inference decodes (same formats, limits,
    16-bit scaling, JPEG path; no EXIF rotation, as in the reference recipe), so trained
    prompts see the pixels they will later score.
    """

    def __init__(self, paths: Sequence[Path], decoder: ImageDecoder, fallback_size: int) -> None:
        self.paths = list(paths)
        self.decoder = decoder
        self.fallback_size = fallback_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, bool]:
        try:
            return self.decoder(read_file(self.paths[index])), True
        except Exception as err:  # PIL raises many types on hostile files; skip, never crash
            log.warning("skipping unreadable image %s: %s", self.paths[index], err)
            size = self.fallback_size
            return torch.zeros(3, size, size, dtype=torch.uint8), False


FEATURE_CACHE_VERSION = 3
"""Bump when image decoding changes what features an image gets (2: 16-bit images scaled, not
clipped; 3: the decoder, ``q16.pixels``, in the key), so caches made by an older q16 are not
reused."""


def feature_cache_key(
    backbone: Backbone, paths: Sequence[Path], decode: str = DEFAULT_DECODE
) -> str:
    digest = hashlib.sha256()
    spec = backbone.spec
    header = [
        FEATURE_CACHE_VERSION,
        spec.name,
        spec.weights_id,
        spec.precision,
        backbone.preprocess_id,
        decode,
    ]
    digest.update(json.dumps(header).encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def encode_images(
    backbone: Backbone,
    paths: Sequence[Path],
    batch_size: int = 64,
    num_workers: int = 0,
    decode: str = DEFAULT_DECODE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the frozen image tower over files, in order (uint8 from the workers, normalised
    here, as inference does)."""
    size = _input_size(backbone)
    preprocess = UInt8Preprocess.from_transform(backbone.preprocess)
    loader = DataLoader(
        ImageFiles(paths, ImageDecoder(preprocess, mode=decode), size),
        batch_size=batch_size,
        num_workers=num_workers,
        shuffle=False,
    )
    chunks, valid = [], []
    for images, ok in loader:
        chunks.append(backbone.encode_image(preprocess.normalize(images)).cpu())
        valid.append(ok)
    return torch.cat(chunks), torch.cat(valid).bool()


def _input_size(backbone: Backbone) -> int:
    size = getattr(backbone.model.visual, "image_size", 224)
    return int(size[0] if isinstance(size, tuple | list) else size)


def cached_features(
    backbone: Backbone,
    paths: Sequence[Path],
    cache_dir: str | Path | None,
    batch_size: int = 64,
    num_workers: int = 0,
    decode: str = DEFAULT_DECODE,
) -> FeatureSet:
    """Features for ``paths``: read from the cache when the key matches, else encode and store."""
    if cache_dir is None:
        features, valid = encode_images(backbone, paths, batch_size, num_workers, decode)
        return FeatureSet(features, valid, None, cache_hit=False)
    cache_path = (
        Path(cache_dir).expanduser()
        / f"features-{feature_cache_key(backbone, paths, decode)}.safetensors"
    )
    if cache_path.is_file():
        tensors = load_file(str(cache_path))
        log.info("feature cache hit: %s", cache_path)
        return FeatureSet(tensors["features"], tensors["valid"].bool(), cache_path, cache_hit=True)
    log.info("encoding %d images with %s (no cache entry yet)", len(paths), backbone.spec.name)
    features, valid = encode_images(backbone, paths, batch_size, num_workers, decode)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache_path) as tmp:
        save_file({"features": features.contiguous(), "valid": valid.to(torch.uint8)}, str(tmp))
    return FeatureSet(features, valid, cache_path, cache_hit=False)
