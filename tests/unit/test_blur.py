"""Face blurring: inside every box changed, far outside byte for byte, ImageNet's recipe."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from q16.privacy import photos
from q16.privacy.blur import blur_boxes


def _whole_image_reference(pixels: np.ndarray, boxes: list[list[float]]) -> np.ndarray:
    """img2dataset's blurrer, written out on the whole image (clipped boxes, rounding)."""
    h, w = pixels.shape[:2]
    rects = [
        (math.floor(x0 * w), math.floor(y0 * h), math.ceil(x1 * w), math.ceil(y1 * h))
        for x0, y0, x1, y1 in boxes
    ]
    longest = max(max(r[2] - r[0], r[3] - r[1]) for r in rects)
    sigma = max(1.0, 0.1 * longest)
    mask = np.zeros((h, w), np.float32)
    for x0, y0, x1, y1 in rects:
        m = math.ceil(0.1 * max(x1 - x0, y1 - y0))
        mask[max(0, y0 - m) : min(h, y1 + m), max(0, x0 - m) : min(w, x1 + m)] = 1
    mask = gaussian_filter(mask, sigma, mode="mirror", truncate=4.0)[..., None]
    img = pixels.astype(np.float32)
    blurred = gaussian_filter(img, (sigma, sigma, 0), mode="mirror", truncate=4.0)
    return np.rint(img * (1 - mask) + blurred * mask).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("photo", [photos.tiled(4), photos.scaled()], ids=lambda p: p.name)
def test_every_box_changes_and_nothing_far_outside(photo: photos.Photo) -> None:
    pixels = photo.pixels
    boxes = [list(b) for b in photo.faces or ()]
    out = blur_boxes(pixels, boxes)
    assert out.shape == pixels.shape and out.dtype == np.uint8
    h, w = pixels.shape[:2]
    longest = max(max((b[2] - b[0]) * w, (b[3] - b[1]) * h) for b in boxes)
    sigma = 0.1 * longest
    near = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        inside = (slice(int(y0 * h), int(y1 * h)), slice(int(x0 * w), int(x1 * w)))
        diff = np.abs(out[inside].astype(int) - pixels[inside].astype(int)).mean()
        assert diff > 3, (x0, y0, diff)  # the face is visibly blurred
        reach = 0.1 * max(x1 - x0, y1 - y0) * max(w, h) + 4 * sigma + 2
        near[
            max(0, int(y0 * h - reach)) : int(y1 * h + reach),
            max(0, int(x0 * w - reach)) : int(x1 * w + reach),
        ] = True
    assert (out[~near] == pixels[~near]).all()  # far outside: byte for byte
    assert (pixels == photo.pixels).all()  # the input is not touched


def test_the_window_gives_the_whole_image_result() -> None:
    photo = photos.scaled()
    boxes = [list(b) for b in photo.faces or ()]
    assert (blur_boxes(photo.pixels, boxes) == _whole_image_reference(photo.pixels, boxes)).all()
    edge = [[-0.05, 0.9, 0.1, 1.2]]  # past the image's edges: clipped, not wrapped around
    ours = blur_boxes(photo.pixels, edge)
    clipped = [[0.0, 0.9, 0.1, 1.0]]
    assert (ours == _whole_image_reference(photo.pixels, clipped)).all()
    assert (ours[:400, 600:] == photo.pixels[:400, 600:]).all()  # the far corner is untouched


def test_no_boxes_or_degenerate_boxes_change_nothing() -> None:
    pixels = photos.shipped()[0].pixels
    for boxes in ([], [[0.5, 0.5, 0.5, 0.6]], [[float("nan"), 0, 1, 1]], [[2.0, 2.0, 3.0, 3.0]]):
        out = blur_boxes(pixels, boxes)
        assert (out == pixels).all() and out is not pixels
