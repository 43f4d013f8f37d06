"""Pixel detectors: models that look at the decoded image at its own resolution (faces, nudity),
beside the CLIP features. The contract is :class:`q16.detectors.base.PixelDetector`."""

from q16.detectors.base import Detections, PixelDetector

__all__ = ["Detections", "PixelDetector"]
