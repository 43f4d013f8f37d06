"""Which files count as images, for every input that lists files (SMID, folders, tar shards)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePath

IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")
"""Lower case, without the dot, in the order a tar sample's image member is chosen."""


def image_member(extensions: Iterable[str]) -> str | None:
    """The image member a sample is scored by: the first of ``IMAGE_EXTENSIONS`` it has
    (``k.jpg`` before ``k.png``), whatever the tar order; its other image members are recorded,
    never dropped silently. ``extensions`` as they follow the key, any case."""
    present = {e.lower(): e for e in extensions}
    return next((present[e] for e in IMAGE_EXTENSIONS if e in present), None)


def is_image_file(name: str | PurePath) -> bool:
    """By extension, case-insensitively; hidden files (``.x.jpg``, editors' droppings) are not."""
    path = PurePath(name)
    return not path.name.startswith(".") and path.suffix[1:].lower() in IMAGE_EXTENSIONS
