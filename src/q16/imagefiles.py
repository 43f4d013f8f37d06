"""Which files count as images, for every input that lists files (SMID, folders, tar shards),
and which member of a tar sample is its image: one rule for scoring and for thumbnails."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePath

IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")
"""Lower case, without the dot, in the order a tar sample's image member is chosen."""


def is_image_file(name: str | PurePath) -> bool:
    """By extension, case-insensitively; hidden files (``.x.jpg``, editors' droppings) are not."""
    path = PurePath(name)
    return not path.name.startswith(".") and path.suffix[1:].lower() in IMAGE_EXTENSIONS


def split_member_name(name: str) -> tuple[str, str] | None:
    """webdataset's rule: ``"dir/0001.jpg"`` -> ``("dir/0001", "jpg")``, the key being the path
    up to the first dot of the base name; None for a name that is not ``<key>.<extension>``."""
    folder, _, base = name.rpartition("/")
    stem, dot, extension = base.partition(".")
    if not stem or not dot or not extension:
        return None
    return (f"{folder}/{stem}" if folder else stem), extension


def image_member(extensions: Iterable[str]) -> str | None:
    """The member of a tar sample that is scored (and shown, and blurred in a release): the
    first of :data:`IMAGE_EXTENSIONS` among its extensions, compared in lower case, whatever
    the tar order (``k.jpg`` before ``k.png``); of extensions that differ only in case
    (``k.JPG``, ``k.jpg``) the first in code-point order (``JPG``). Takes the real extensions
    and returns one of them; the sample's other image members are recorded, not merged."""
    names = sorted(set(extensions))
    for wanted in IMAGE_EXTENSIONS:
        chosen = next((name for name in names if name.lower() == wanted), None)
        if chosen is not None:
            return chosen
    return None


def other_image_members(extensions: Iterable[str], scored: str | None) -> list[str]:
    """The image extensions of a sample beside the scored one (each recorded, never scored)."""
    return sorted({e for e in extensions if e != scored and e.lower() in IMAGE_EXTENSIONS})
