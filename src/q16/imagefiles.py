"""Which files count as images, for every input that lists files (SMID, folders, tar shards)."""

from __future__ import annotations

from pathlib import PurePath

IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")
"""Lower case, without the dot, in the order a tar sample's image member is chosen."""


def is_image_file(name: str | PurePath) -> bool:
    """By extension, case-insensitively; hidden files (``.x.jpg``, editors' droppings) are not."""
    path = PurePath(name)
    return not path.name.startswith(".") and path.suffix[1:].lower() in IMAGE_EXTENSIONS
