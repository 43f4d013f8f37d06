"""Which detectors ``heads=[{name: ..., detector: <name>, ...}]`` can name, and their options.

Adding a detector: a module here keeping :class:`q16.detectors.base.PixelDetector`, and one
entry below naming the options a head entry may set (checked before anything is read) and a
``build(options, device)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from q16.detectors.base import PixelDetector
from q16.errors import Q16Error


@dataclass(frozen=True)
class DetectorKind:
    """A detector's head options (``threshold`` among them) and how to build it."""

    options: tuple[str, ...]
    build: Callable[[Mapping[str, Any], str], PixelDetector]
    default_threshold: float


def _centerface(options: Mapping[str, Any], device: str) -> PixelDetector:
    from q16.detectors.centerface import CenterFace, CenterFaceSettings

    return CenterFace(CenterFaceSettings(**options), device)


DETECTORS: Mapping[str, DetectorKind] = MappingProxyType(
    {
        "centerface": DetectorKind(
            ("threshold", "input_size", "nms_iou", "batch_size", "threads"), _centerface, 0.5
        ),
    }
)


def detector_kind(name: object, where: str) -> DetectorKind:
    if not isinstance(name, str) or name not in DETECTORS:
        raise Q16Error(f"{where}: detector {name!r} is not one of {', '.join(sorted(DETECTORS))}")
    return DETECTORS[name]
