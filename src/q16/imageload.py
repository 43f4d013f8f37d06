"""The one way q16 turns an image file or image bytes into RGB pixels (training cache and
inference alike), with the limits every input gets.

* Only the formats in ``DECODE_FORMATS`` are identified: EPS or PDF bytes named ``.jpg`` never
  reach Ghostscript, and other exotic decoders are never run on untrusted bytes.
* Files are read only if they are regular files no larger than ``max_bytes`` (checked from
  ``fstat`` before a byte is read: a FIFO never blocks, a ``/dev/zero`` link or a sparse
  10 GB file is never read); images with more than ``max_pixels`` pixels are refused before
  their pixels are decoded.
* High bit depths are scaled to 8 bits, not clipped: ``convert("RGB")`` maps every 16-bit
  value above 255 to white.
* EXIF orientation is ignored, as in the reference recipe (the paper's CLIP preprocessing),
  unless ``exif_transpose`` is asked for.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from q16.fileio import FileTooLarge, NotRegularFile, read_regular

DECODE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
"""PIL format ids q16 decodes (JPEG includes MPO, the variant many phone cameras write)."""
DEFAULT_MAX_PIXELS = 89_478_485
"""PIL's own bomb limit (about a quarter gigapixel of RGB); bigger images are refused."""
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
"""Largest image file or tar member read (256 MiB: far above any real photo)."""
_HIGH_DEPTH = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}


class ImageLoadError(ValueError):
    """An input that cannot be decoded; the message says why (it goes to errors.jsonl)."""


def read_file(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """A regular file's bytes, refusing anything else before reading it
    (:func:`q16.fileio.read_regular`: a FIFO named ``x.jpg`` never hangs a worker, a file
    swapped after listing is checked too).

    Raises:
        ImageLoadError: not a regular file, or larger than ``max_bytes``.
        OSError: cannot be opened or read.
    """
    try:
        return read_regular(path, max_bytes)
    except NotRegularFile as err:
        raise ImageLoadError(f"{err}; not read") from None
    except FileTooLarge as err:
        size = f"{err.size} bytes exceeds" if err.size is not None else "more than"
        raise ImageLoadError(f"{size} data.max_bytes={max_bytes}; not read") from None


def open_checked(data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The image's header read, no pixel decoded: a format of ``DECODE_FORMATS``, at most
    ``max_pixels`` pixels. Every decoder (``load_rgb`` and ``q16.pixels``' JPEG path) starts
    here, so both refuse the same inputs before decoding.

    Raises:
        ImageLoadError: empty, not an image of ``DECODE_FORMATS``, or a bomb.
    """
    if not data:
        raise ImageLoadError("empty image (0 bytes)")
    with _as_load_errors():
        image: Image.Image = Image.open(io.BytesIO(data), formats=DECODE_FORMATS)
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise ImageLoadError(
                f"decompression bomb: {width}x{height} pixels exceeds infer.max_pixels={max_pixels}"
            )
        return image


def load_rgb(
    data: bytes,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    exif_transpose: bool = False,
) -> Image.Image:
    """Encoded image bytes -> a loaded RGB image.

    Raises:
        ImageLoadError: empty, not an image of ``DECODE_FORMATS``, a bomb, or undecodable.
    """
    return decode_rgb(open_checked(data, max_pixels=max_pixels), exif_transpose=exif_transpose)


def decode_rgb(image: Image.Image, *, exif_transpose: bool = False) -> Image.Image:
    """An image from :func:`open_checked` decoded, turned by its EXIF orientation if asked,
    as RGB with 8 bits per channel.

    Raises:
        ImageLoadError: undecodable.
    """
    with _as_load_errors():
        image.load()
        if exif_transpose:
            image = ImageOps.exif_transpose(image)
        return to_rgb(image)


@contextmanager
def _as_load_errors() -> Iterator[None]:
    """Whatever PIL raises on hostile bytes, as one :class:`ImageLoadError` that says why."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageLoadError(f"decompression bomb: {err}") from err
    except UnidentifiedImageError as err:
        formats = ", ".join(DECODE_FORMATS)
        raise ImageLoadError(f"not an image of a format q16 decodes ({formats})") from err
    except Exception as err:  # hostile input: PIL raises many types, none may stop a run
        raise ImageLoadError(f"undecodable image: {type(err).__name__}: {err}") from err


def load_rgb_file(
    path: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    exif_transpose: bool = False,
) -> Image.Image:
    """:func:`read_file` then :func:`load_rgb`."""
    data = read_file(path, max_bytes)
    return load_rgb(data, max_pixels=max_pixels, exif_transpose=exif_transpose)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB with 8 bits per channel; 16-bit and float grayscale scaled into 0..255 first."""
    if image.mode in _HIGH_DEPTH:
        array = np.asarray(image).astype(np.float64)
        scaled = np.clip(array, 0, _HIGH_DEPTH[image.mode]) * (255.0 / _HIGH_DEPTH[image.mode])
        image = Image.fromarray(np.rint(scaled).astype(np.uint8))
    elif image.mode == "F":
        array = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
        finite = array[np.isfinite(array)]
        top = 1.0 if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0 else 255.0
        scaled = np.clip(array, 0.0, top) * (255.0 / top)
        image = Image.fromarray(np.rint(scaled).astype(np.uint8))
    return image if image.mode == "RGB" else image.convert("RGB")
