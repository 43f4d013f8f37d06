"""The pixel-detector contract shared by every detector head (faces, nudity, ...).

A detector sees each image once, as decoded RGB at its original resolution (the CLIP crop is
another view of the same decode), and returns boxes in original-image coordinates, so a box
means the same thing whatever size the detector resized the image to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Detections:
    """What one detector found in one image.

    Attributes:
        boxes: (N, 4) float32 ``[x0, y0, x1, y1]`` normalised to the original image's width and
            height and clipped to [0, 1] (the format of img2dataset's ``bbox_col`` and
            DataComp's ``face_bboxes``); shape (0, 4) when nothing was found.
        scores: (N,) float32 detector confidences in [0, 1].
        labels: N label names (``"face"``, NudeNet's ``"FEMALE_BREAST_EXPOSED"``, ...).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: tuple[str, ...]

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), ())

    def __len__(self) -> int:
        return len(self.labels)


@runtime_checkable
class PixelDetector(Protocol):
    """A detector run on decoded pixels, batched.

    ``name`` is what ``heads=[{..., detector: <name>}]`` names; ``settings()`` are the values
    that change its output (threshold, input size, model file hash), recorded in summary.json
    and in the resume fingerprint.
    """

    name: str

    def settings(self) -> dict[str, Any]: ...

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """uint8 (H, W, 3) RGB arrays, each at its own size -> one ``Detections`` per image."""
        ...
