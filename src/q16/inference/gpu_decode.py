"""``data.decode=gpu``: JPEGs decoded, resized and cropped on the scoring device, a batch at a time.

With ``decode=gpu`` the workers only read bytes and check headers (``q16.pixels.ImageDecoder``:
known formats, the pixel cap before decoding); a JPEG the fast path would take travels as its
encoded bytes, every other input is decoded in the worker. Here the batch's JPEGs go
to ``torchvision.io.decode_jpeg(list, device=...)`` (nvJPEG on CUDA), are grouped by size so that
each size is resized (bicubic, antialias) in one call, and are centre-cropped; the scorer then
normalises them where they are. A JPEG that nvJPEG refuses is decoded again alone on the CPU by
the default decoder: recorded in ``fallbacks``, never lost; one the CPU cannot decode either is
dropped from the batch with its error record, as a worker would have recorded it.

The same code runs with ``device="cpu"`` (libjpeg-turbo), which is how the tests check it.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from q16.pixels import DecodeError, ImageDecoder, UInt8Preprocess

log = logging.getLogger(__name__)


@dataclass
class Decoded:
    """The batch's images in row order, and what did not go as planned."""

    images: torch.Tensor
    """uint8 (n, 3, H, W) on the device, one per kept row."""
    kept: list[int]
    """Rows of the input that have an image (all, unless the CPU could not decode one)."""
    fallbacks: list[tuple[int, str]] = field(default_factory=list)
    """(row, why) of JPEGs the device refused, decoded on the CPU instead."""
    errors: list[tuple[int, str]] = field(default_factory=list)
    """(row, reason) of rows dropped: not decodable on the CPU either."""


@dataclass
class BatchDecoder:
    """Encoded JPEGs (1-D uint8 tensors) and decoded images (3-D) -> one uint8 batch."""

    preprocess: UInt8Preprocess
    device: torch.device
    cpu: ImageDecoder | None = None
    """The per-image fallback (default: the PIL decoder with the default limits)."""

    def __post_init__(self) -> None:
        if self.preprocess.geometry is None:
            raise ValueError("GPU decoding needs a resize + centre crop preprocessing")
        if self.cpu is None:
            self.cpu = ImageDecoder(self.preprocess, mode="pil")

    def decode(self, items: Sequence[torch.Tensor | bytes]) -> Decoded:
        """Rows of 1-D encoded JPEGs (or bytes) and 3-D decoded images, in order."""
        encoded = [
            torch.frombuffer(bytearray(x), dtype=torch.uint8) if isinstance(x, bytes) else x
            for x in items
        ]
        jpegs = [i for i, x in enumerate(encoded) if x.dim() == 1]
        out: dict[int, torch.Tensor] = {
            i: x.to(self.device, non_blocking=True) for i, x in enumerate(encoded) if x.dim() == 3
        }
        result = Decoded(torch.empty(0), [])
        decoded, refused = self._decode_jpegs([encoded[i] for i in jpegs], jpegs)
        out.update(self._resized(decoded))
        for row, why in refused:
            try:
                assert self.cpu is not None
                out[row] = self.cpu(bytes(encoded[row].numpy())).to(self.device)
                result.fallbacks.append((row, why))
            except DecodeError as err:
                result.errors.append((row, str(err)))
        result.kept = sorted(out)
        crop = self.preprocess.geometry.crop  # type: ignore[union-attr]
        result.images = (
            torch.stack([out[i] for i in result.kept])
            if out
            else torch.empty((0, 3, *crop), dtype=torch.uint8, device=self.device)
        )
        return result

    def _decode_jpegs(
        self, data: list[torch.Tensor], rows: list[int]
    ) -> tuple[dict[int, torch.Tensor], list[tuple[int, str]]]:
        """Row -> full-size uint8 image on the device, and (row, why) of those refused."""
        if not data:
            return {}, []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                images = decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
            except RuntimeError as err:  # one bad JPEG fails the batch: each alone then
                log.debug("batched JPEG decoding failed (%s); decoding one at a time", err)
                images = [self._one(x) for x in data]
        decoded, refused = {}, []
        for row, image in zip(rows, images, strict=True):
            if image is None:
                refused.append((row, f"the {self.device.type} JPEG decoder refused it"))
            else:
                decoded[row] = image
        return decoded, refused

    def _one(self, data: torch.Tensor) -> torch.Tensor | None:
        try:
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:
            return None

    def _resized(self, images: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Each image resized and cropped; images of one size in one call."""
        geometry = self.preprocess.geometry
        assert geometry is not None
        by_size: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for row, image in images.items():
            by_size[tuple(image.shape)].append(row)
        out: dict[int, torch.Tensor] = {}
        for rows in by_size.values():
            batch = geometry.apply(torch.stack([images[r] for r in rows]))
            out.update(zip(rows, batch, strict=True))
        return out
