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
    topic: str = ""
    """What its counts answer: ``faces`` (the datasheet's questions about people), ..."""
    review_flags: bool = True
    """Whether its flags add images to ``flagged.csv`` and the review sheet (nudity: yes;
    faces: no, a face is counted and blurred, not content to remove)."""


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


NUDENET_LIMITS = (
    "the five counted labels are I2P's (exposed anus, buttocks, female breast, female and male "
    "genitalia); covered parts, male breasts, belly, feet, armpits and faces are detected and "
    "kept in nudity_labels but not counted unless the head's labels add them",
    "the image is seen at 320 pixels on its longest side: small or distant bodies are missed",
    "NudeNet's author has not published its error rates by skin tone, body type, age or art "
    "style (photographs vs drawings and generated images), and q16 has not measured them",
    "a label is anatomical, not a judgment: nudity in art, medical or educational images is "
    "flagged like any other",
)


def _centerface(options: Mapping[str, Any], device: str) -> PixelDetector:
    from q16.detectors.centerface import CenterFace, CenterFaceSettings

    return CenterFace(CenterFaceSettings(**options), device)


def _nudenet(options: Mapping[str, Any], device: str) -> PixelDetector:
    from q16.detectors.nudenet import NudeNetDetector, NudeNetSettings

    settings = dict(options)
    if "labels" in settings:
        labels = settings["labels"]
        settings["labels"] = (labels,) if isinstance(labels, str) else tuple(labels)
    return NudeNetDetector(NudeNetSettings(**settings), device)


DETECTORS: Mapping[str, DetectorKind] = MappingProxyType(
    {
        "centerface": DetectorKind(
            ("threshold", "input_size", "nms_iou", "batch_size", "threads"),
            _centerface,
            0.5,
            CENTERFACE_LIMITS,
            "faces",
            review_flags=False,
        ),
        "nudenet": DetectorKind(
            (
                "threshold",
                "labels",
                "channel_order",
                "input_size",
                "batch_size",
                "threads",
                "model_path",
            ),
            _nudenet,
            0.6,
            NUDENET_LIMITS,
            "nudity",
        ),
    }
)


def detector_kind(name: object, where: str) -> DetectorKind:
    if not isinstance(name, str) or name not in DETECTORS:
        raise Q16Error(f"{where}: detector {name!r} is not one of {', '.join(sorted(DETECTORS))}")
    return DETECTORS[name]
