"""Real photographs shipped by scikit-image and scikit-learn, and composites with known faces.

For the offline demo, the detector tests and the removal-matching measurement: no download,
real pixels. ``astronaut`` (Eileen Collins) and ``camera`` (the cameraman) show one face each;
the others none (``chelsea`` is a cat). Composites tile and scale the astronaut, so where every
face is follows from ``ASTRONAUT_FACE``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from q16.errors import Q16Error
from q16.fileio import atomic_path

log = logging.getLogger(__name__)

FACES: dict[str, int] = {
    "astronaut": 1,
    "camera": 1,
    "coffee": 0,
    "rocket": 0,
    "chelsea": 0,
    "china": 0,
    "flower": 0,
}
"""Faces a person counts in each shipped photograph."""
ASTRONAUT_FACE = (0.352, 0.113, 0.529, 0.344)
"""The astronaut's face, normalised [x0, y0, x1, y1] (checked by eye on the 512 x 512 photo)."""


@dataclass(frozen=True)
class Photo:
    """A photograph and where its faces are (normalised boxes; None = not known here)."""

    name: str
    pixels: np.ndarray
    faces: tuple[tuple[float, float, float, float], ...] | None


def shipped() -> list[Photo]:
    """The seven photographs of ``FACES``, RGB uint8 (``camera`` is grey, made RGB)."""
    try:
        import skimage.data
        from sklearn.datasets import load_sample_images
    except ImportError:
        raise Q16Error("the sample photographs need scikit-image: pip install q16[dev]") from None
    pixels = {name: getattr(skimage.data, name)() for name in FACES if name not in _SKLEARN}
    pixels["camera"] = np.repeat(pixels["camera"][..., None], 3, axis=2)
    china, flower = load_sample_images().images
    pixels.update(china=china, flower=flower)
    return [
        Photo(
            name,
            np.ascontiguousarray(pixels[name]),
            (ASTRONAUT_FACE,) if name == "astronaut" else None,
        )
        for name in FACES
    ]


_SKLEARN = ("china", "flower")


def tiled(count: int, side: int = 256) -> Photo:
    """``count`` (1, 2 or 4) astronauts of ``side`` pixels tiled in a row or a 2 x 2 grid."""
    cols = 1 if count == 1 else 2
    rows = count // cols
    astronaut = Image.fromarray(_astronaut()).resize((side, side), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (cols * side, rows * side))
    faces = []
    for i in range(count):
        col, row = i % cols, i // cols
        canvas.paste(astronaut, (col * side, row * side))
        x0, y0, x1, y1 = ASTRONAUT_FACE
        faces.append(((col + x0) / cols, (row + y0) / rows, (col + x1) / cols, (row + y1) / rows))
    return Photo(f"astronaut_x{count}", np.asarray(canvas), tuple(faces))


def scaled() -> Photo:
    """Three astronauts of 160, 320 and 640 pixels on a 1200 x 800 coffee table."""
    import skimage.data

    canvas = Image.fromarray(skimage.data.coffee()).resize((1200, 800), Image.Resampling.LANCZOS)
    astronaut = Image.fromarray(_astronaut())
    faces = []
    for side, (left, top) in zip((160, 320, 640), ((20, 20), (220, 300), (560, 150)), strict=True):
        canvas.paste(astronaut.resize((side, side), Image.Resampling.LANCZOS), (left, top))
        x0, y0, x1, y1 = ASTRONAUT_FACE
        faces.append(
            (
                (left + x0 * side) / 1200,
                (top + y0 * side) / 800,
                (left + x1 * side) / 1200,
                (top + y1 * side) / 800,
            )
        )
    return Photo("astronaut_scales", np.asarray(canvas), tuple(faces))


def _astronaut() -> np.ndarray:
    import skimage.data

    return np.asarray(skimage.data.astronaut())


def write_folder(dest: Path, quality: int = 92) -> list[Path]:
    """The shipped photographs and the composites as JPEGs in ``dest`` (the privacy demo)."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for photo in [*shipped(), tiled(2), tiled(4), scaled()]:
        path = dest / f"{photo.name}.jpg"
        with atomic_path(path) as tmp:
            Image.fromarray(photo.pixels).save(tmp, format="JPEG", quality=quality)
        written.append(path)
    log.info("wrote %d photographs to %s", len(written), dest)
    return written
