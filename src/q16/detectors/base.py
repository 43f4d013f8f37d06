"""The pixel-detector contract shared by every detector head (faces, nudity, ...).

A detector sees each image once, as decoded RGB at its original resolution (the CLIP crop is
another view of the same decode), and returns boxes in original-image coordinates, so a box
means the same thing whatever size the detector resized the image to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    and in the resume fingerprint. ``noun`` names its columns in the scores (``face`` ->
    ``face_bboxes``, ``face_scores``, ``face_labels``).

    In a scoring run the image is decoded once, in a reader worker: ``viewer()`` turns it into
    the detector's input there (a picklable function that never touches the model), and only
    that view travels to the process that calls ``detect``. A view is a resize of the *whole*
    image (no crop, no padding), so boxes normalised to the view are normalised to the
    original, and ``detect([view(x)])`` equals ``detect([x])``.
    """

    name: str
    noun: str

    def settings(self) -> dict[str, Any]: ...

    def viewer(self) -> Callable[[np.ndarray], np.ndarray]:
        """uint8 (H, W, 3) RGB at its original size -> the (smaller) array ``detect`` takes."""
        ...

    def score(self, found: Detections) -> float:
        """One image's ``p_<head>`` in [0, 1] (0 when nothing counts): the best face's score;
        for nudity, the best score among the labels that count. Flagged at the threshold."""
        ...

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """uint8 (H, W, 3) RGB arrays, each at its own size -> one ``Detections`` per image."""
        ...
