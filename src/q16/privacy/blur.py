"""Blurring faces the way ImageNet's face obfuscation (Yang et al. 2022) and img2dataset do.

Each box is grown by 10 % of its longest side on every side; one Gaussian, sigma = 0.1 x the
longest side of the largest box in the image, blurs the image and feathers the box mask, and
the result is ``image * (1 - mask) + blurred * mask``. Unlike img2dataset's blurrer, a box that
reaches past the image edge is clipped (img2dataset's negative slice indices wrap around), and
pixels the feathered mask does not reach are returned byte for byte (no float round trip).
The work is done on a window around the boxes: 8 sigma is as far as the mask (4 sigma) plus the
kernel (4 sigma) reach, so the window gives exactly the whole-image result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

GROW = 0.1
"""Each side of a box moves out by this share of the box's longest side."""
SIGMA = 0.1
"""Gaussian sigma as a share of the longest side of the largest box."""
TRUNCATE = 4.0
"""The kernel reaches this many sigmas (img2dataset's ksize = 2 * ceil(4 sigma) + 1)."""
MIN_SIGMA = 1.0
"""A 5-pixel face still gets a blur that hides it (the published rule gives 0.5)."""


def blur_boxes(
    pixels: np.ndarray,
    boxes: Sequence[Sequence[float]] | np.ndarray,
    grow: float = GROW,
    sigma_share: float = SIGMA,
) -> np.ndarray:
    """A copy of ``pixels`` (uint8 (H, W, 3)) with every normalised ``[x0, y0, x1, y1]`` box
    blurred; the input is left untouched. No boxes: an unchanged copy."""
    out = np.array(pixels, copy=True)
    height, width = out.shape[:2]
    rects = _pixel_boxes(boxes, width, height)
    if not rects:
        return out
    longest = max(max(x1 - x0, y1 - y0) for x0, y0, x1, y1 in rects)
    sigma = max(MIN_SIGMA, sigma_share * longest)
    grown = [_grow(rect, grow, width, height) for rect in rects]
    reach = math.ceil(2 * TRUNCATE * sigma) + 1
    left = max(0, min(r[0] for r in grown) - reach)
    top = max(0, min(r[1] for r in grown) - reach)
    right = min(width, max(r[2] for r in grown) + reach)
    bottom = min(height, max(r[3] for r in grown) + reach)
    window = out[top:bottom, left:right].astype(np.float32)
    mask = np.zeros(window.shape[:2], np.float32)
    for x0, y0, x1, y1 in grown:
        mask[y0 - top : y1 - top, x0 - left : x1 - left] = 1.0
    # zero for 8 sigma inside every window edge that is not the image's: filtering the window
    # gives what filtering the whole image gives
    mask = gaussian_filter(mask, sigma, mode="mirror", truncate=TRUNCATE)
    blurred = gaussian_filter(window, (sigma, sigma, 0), mode="mirror", truncate=TRUNCATE)
    weight = mask[..., None]
    mixed = np.rint(window * (1.0 - weight) + blurred * weight).clip(0, 255).astype(np.uint8)
    touched = mask > 0
    region = out[top:bottom, left:right]
    region[touched] = mixed[touched]
    return out


def _pixel_boxes(
    boxes: Sequence[Sequence[float]] | np.ndarray, width: int, height: int
) -> list[tuple[int, int, int, int]]:
    rects = []
    for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        if not np.isfinite(box).all():
            continue
        x0, y0, x1, y1 = np.clip(box, 0.0, 1.0)
        left, top = math.floor(x0 * width), math.floor(y0 * height)
        right, bottom = math.ceil(x1 * width), math.ceil(y1 * height)
        if right > left and bottom > top:
            rects.append((left, top, right, bottom))
    return rects


def _grow(
    rect: tuple[int, int, int, int], share: float, width: int, height: int
) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = rect
    margin = math.ceil(share * max(x1 - x0, y1 - y0))
    return (
        max(0, x0 - margin),
        max(0, y0 - margin),
        min(width, x1 + margin),
        min(height, y1 + margin),
    )
