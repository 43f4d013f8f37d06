"""Image bytes -> the model's uint8 input (3, H, W): the one decode rule of the training feature
cache and of inference.

Two decoders, chosen by ``data.decode``:

* ``pil`` (the default): ``q16.imageload`` then the backbone's own PIL steps (open_clip's
  ``Resize``, ``CenterCrop``), exactly what OpenAI's ``preprocess`` does; the parity test holds
  q16 to it (|Δp| <= 1e-4, docs/parity.md).
* ``fast``: a baseline or progressive 8-bit JPEG in RGB or grayscale is decoded by
  ``torchvision.io.decode_jpeg`` (libjpeg-turbo, the library PIL's wheels bundle too: the decoded
  pixels are identical, tested) and resized on the uint8 tensor (``v2.functional.resize``,
  bicubic, antialias: torch's port of PIL's filter, with 16-bit instead of 22-bit weights), then
  centre-cropped. About twice as fast per core (``scripts/bench_decode.py``); about 0.4 % of the
  pixels differ from PIL's by one level, which moves p by up to 1.7e-4 (docs/parity.md).

Every other input (PNG, WEBP, GIF, TIFF, BMP, CMYK JPEGs, an EXIF-rotated JPEG when
``exif_transpose`` is on, a model whose preprocessing is not resize + centre crop) takes the PIL
path with either setting, and so does a JPEG that libjpeg-turbo refuses through torchvision:
PIL's verdict (pixels or the error record) is the one kept. Both start from
``imageload.open_checked``: the same known formats, the same pixel cap read from the header
before a pixel is decoded.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import ExifTags, Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import CenterCrop, InterpolationMode, Resize
from torchvision.transforms.v2 import functional as TF

from q16.errors import Q16Error
from q16.imageload import (
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    decode_rgb,
    open_checked,
)

DECODE_MODES = ("pil", "fast", "gpu")
"""``data.decode``: ``pil`` (PIL only), ``fast`` (libjpeg-turbo + tensor resize for JPEGs) or
``gpu`` (JPEGs leave the workers encoded, ``q16.inference.gpu_decode`` decodes the batch on the
device; on its own, ``ImageDecoder`` then decodes as ``fast``)."""
DEFAULT_DECODE = "pil"
"""What OpenAI's preprocessing does; ``fast`` does not pass the parity test (docs/parity.md)."""
TENSOR_STEPS = ("ToTensor", "MaybeToTensor")
RGB_STEPS = ("MaybeConvertMode", "_convert_to_rgb")
"""open_clip's RGB conversion (a class in 3.x, a function before): a no-op on RGB pixels."""
JPEG_FORMATS = ("JPEG", "MPO")
FAST_MODES = ("RGB", "L")
"""JPEG modes whose RGB decode_jpeg gives exactly as PIL does (tested); CMYK is left to PIL."""
ROTATED = range(2, 9)
"""EXIF orientations that ``ImageOps.exif_transpose`` acts on."""


@dataclass(frozen=True)
class Geometry:
    """open_clip's resize (shorter side, bicubic, antialias) and centre crop, as numbers, so
    that a uint8 tensor can be given the same geometry as the PIL image."""

    size: int | tuple[int, ...]
    max_size: int | None
    crop: tuple[int, int]

    @classmethod
    def of(cls, steps: Sequence[Callable]) -> Geometry | None:
        """The geometry of ``[Resize(bicubic), CenterCrop, RGB conversion]``; None for any
        other list of steps (which then always runs on PIL images)."""
        names = [getattr(s, "__name__", type(s).__name__) for s in steps]
        if len(steps) != 3 or names[2] not in RGB_STEPS:
            return None
        resize, crop = steps[0], steps[1]
        if not isinstance(resize, Resize) or not isinstance(crop, CenterCrop):
            return None
        if resize.interpolation != InterpolationMode.BICUBIC or resize.antialias is False:
            return None
        size = resize.size if isinstance(resize.size, int) else tuple(resize.size)
        height, width = tuple(crop.size) if len(crop.size) == 2 else (crop.size[0],) * 2
        return cls(size, resize.max_size, (int(height), int(width)))

    def apply(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (..., 3, H, W) resized and cropped as the PIL steps would."""
        size = [self.size] if isinstance(self.size, int) else list(self.size)
        resized = TF.resize(
            pixels,
            size,
            interpolation=InterpolationMode.BICUBIC,
            max_size=self.max_size,
            antialias=True,
        )
        return TF.center_crop(resized, list(self.crop)).contiguous()


@dataclass
class UInt8Preprocess:
    """The backbone's preprocessing split at the tensor step.

    ``pil_steps`` run in workers (resize, crop, RGB) and give uint8; ``mean``/``std`` run on
    the device. Together they equal ``backbone.preprocess`` exactly. ``geometry`` is set when
    the steps are open_clip's resize + centre crop (then JPEGs may take the fast path).
    """

    pil_steps: list[Callable]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    geometry: Geometry | None = None

    @classmethod
    def from_transform(cls, preprocess: Callable) -> UInt8Preprocess:
        steps = list(getattr(preprocess, "transforms", []))
        names = [type(s).__name__ for s in steps]
        at = next((i for i, n in enumerate(names) if n in TENSOR_STEPS), None)
        if at is None or at + 2 != len(steps) or names[-1] != "Normalize":
            raise Q16Error(
                f"the model's preprocessing {names} is not [PIL steps..., ToTensor, Normalize], "
                "which q16 needs to decode in workers and normalise on the device"
            )
        normalize = steps[-1]
        mean, std = tuple(map(float, normalize.mean)), tuple(map(float, normalize.std))
        return cls(steps[:at], mean, std, Geometry.of(steps[:at]))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        for step in self.pil_steps:
            image = step(image)
        if image.mode != "RGB":
            image = image.convert("RGB")
        array = np.asarray(image, dtype=np.uint8)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (..., 3, H, W) -> float32, exactly as ToTensor + Normalize."""
        mean = torch.tensor(self.mean, device=pixels.device).view(-1, 1, 1)
        std = torch.tensor(self.std, device=pixels.device).view(-1, 1, 1)
        return pixels.float().div_(255.0).sub_(mean).div_(std)


DecodeError = ImageLoadError
"""An input that cannot be scored; the message goes to errors.jsonl."""


@dataclass
class ImageDecoder:
    """bytes -> uint8 (3, H, W): known formats only, bombs refused before decoding, 16-bit
    scaled, EXIF only if asked; JPEGs through libjpeg-turbo and a tensor resize with
    ``mode="fast"``."""

    preprocess: UInt8Preprocess
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    exif_transpose: bool = False
    mode: str = DEFAULT_DECODE
    """``infer.decode``: ``pil``, ``fast`` or ``gpu``."""

    def __post_init__(self) -> None:
        if self.mode not in DECODE_MODES:
            choices = ", ".join(DECODE_MODES)
            raise Q16Error(f"data.decode must be one of {choices}, not {self.mode!r}")

    def __call__(self, data: bytes) -> torch.Tensor:
        return self.decode(data, decode_all=True)[0]

    def decode(
        self,
        data: bytes,
        extractors: Sequence[Callable[[bytes, np.ndarray], Any]] = (),
        decode_all: bool = False,
    ) -> tuple[torch.Tensor, tuple[Any, ...]]:
        """What a worker ships (:meth:`for_batch`'s tensor, or the decoded image with
        ``decode_all``) and, from the same decode, each extractor's result on the full-size
        (H, W, 3) RGB (a pixel head's view, the image's hashes). With extractors every image is
        decoded here, ``mode="gpu"`` included: they need its pixels."""
        image = open_checked(data, max_pixels=self.max_pixels)
        fast = self.takes_fast_path(image)
        if self.mode == "gpu" and fast and not extractors and not decode_all:
            return torch.frombuffer(bytearray(data), dtype=torch.uint8), ()
        geometry = self.preprocess.geometry
        pixels = decode_jpeg_rgb(data, image.size) if fast else None
        rgb = decode_rgb(image, exif_transpose=self.exif_transpose) if pixels is None else None
        try:
            if pixels is not None and geometry is not None:
                tensor = geometry.apply(pixels)
                full = pixels.permute(1, 2, 0).numpy() if extractors else None
            else:
                assert rgb is not None
                tensor = self.preprocess(rgb)
                full = np.asarray(rgb) if extractors else None
            return tensor, tuple(
                extract(data, np.ascontiguousarray(full)) for extract in extractors
            )
        except Exception as err:  # a resize of a degenerate image, say: never stops a run
            raise DecodeError(f"unprocessable image: {type(err).__name__}: {err}") from err

    def for_batch(self, data: bytes) -> torch.Tensor:
        """What a worker ships: the decoded uint8 (3, H, W), or with ``mode="gpu"`` a JPEG of
        the fast path as its checked, encoded bytes (1-D uint8), decoded with its batch."""
        return self.decode(data)[0]

    def takes_fast_path(self, image: Image.Image) -> bool:
        """Whether ``image`` (opened, not decoded) goes to libjpeg-turbo through torchvision
        (or, with ``mode="gpu"``, to the batch decoder)."""
        if self.mode == "pil" or self.preprocess.geometry is None:
            return False
        if image.format not in JPEG_FORMATS or image.mode not in FAST_MODES:
            return False
        return not (self.exif_transpose and _orientation(image) in ROTATED)


def _orientation(image: Image.Image) -> int | None:
    """The EXIF orientation PIL's ``exif_transpose`` would act on; None when unreadable (the
    PIL path then decides)."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # hostile EXIF: let the PIL path give its verdict
        return None
    return value if isinstance(value, int) else None


def decode_jpeg_rgb(data: bytes, size: tuple[int, int]) -> torch.Tensor | None:
    """uint8 (3, H, W) RGB from libjpeg-turbo, or None when it refuses the bytes or its image
    is not the ``size`` (width, height) the header promised (the PIL path then decides)."""
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # libjpeg warnings on odd but decodable files
            pixels = decode_jpeg(encoded, mode=ImageReadMode.RGB)
    except RuntimeError:
        return None
    if tuple(pixels.shape) != (3, size[1], size[0]):
        return None
    return pixels
