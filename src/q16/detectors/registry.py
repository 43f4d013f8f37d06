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
    limits: tuple[str, ...] = ()
    """What it is known to miss, stated beside its counts (summary, report, datasheet)."""


CENTERFACE_LIMITS = (
    "small faces: under about 10 pixels wide in the network input (1.5 % of the image's "
    "longest side at input_size 640) are rarely found; raise input_size for crowds",
    "occluded, profile, blurred and badly lit faces, and faces in drawings, are found less "
    "often (the authors' WIDER FACE AP: 0.939 easy, 0.929 medium, 0.880 hard)",
    "skin tone: face detectors have been shown to miss darker-skinned faces more often; q16 "
    "has not measured CenterFace by skin tone, so the count is a lower bound",
    "people without a visible face (from behind, far away) are not counted; statues, masks "
    "and printed faces may be",
)


def _centerface(options: Mapping[str, Any], device: str) -> PixelDetector:
    from q16.detectors.centerface import CenterFace, CenterFaceSettings

    return CenterFace(CenterFaceSettings(**options), device)


DETECTORS: Mapping[str, DetectorKind] = MappingProxyType(
    {
        "centerface": DetectorKind(
            ("threshold", "input_size", "nms_iou", "batch_size", "threads"),
            _centerface,
            0.5,
            CENTERFACE_LIMITS,
        ),
    }
)


def detector_kind(name: object, where: str) -> DetectorKind:
    if not isinstance(name, str) or name not in DETECTORS:
        raise Q16Error(f"{where}: detector {name!r} is not one of {', '.join(sorted(DETECTORS))}")
    return DETECTORS[name]
