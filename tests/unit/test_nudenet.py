"""NudeNet's real 320n weights (shipped in the nudenet wheel): q16's detector gives what
NudeNet's own code gives, finds nothing counted on real photographs, and turns hostile inputs
into records."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from nudenet import NudeDetector
from PIL import Image

from helpers.hostile import hostile_samples
from q16.detectors import PixelDetector
from q16.detectors.nudenet import (
    I2P_EXPOSED_LABELS,
    I2P_MIN_SCORE,
    LABELS,
    NudeNetDetector,
    NudeNetSettings,
    check_labels,
    network_view,
    nudity_score,
)
from q16.detectors.registry import DETECTORS
from q16.errors import Q16Error
from q16.imageload import ImageLoadError, load_rgb

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")


@pytest.fixture(scope="module")
def detector() -> NudeNetDetector:
    return NudeNetDetector()


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {name: getattr(skimage.data, name)() for name in PHOTOS}


def _as_nudenet(det, width: int, height: int) -> list[tuple[str, float, list[int]]]:
    """q16's detections in NudeNet's own form: whole pixels [x, y, w, h], truncated."""
    out = []
    for box, score, label in zip(det.boxes, det.scores, det.labels, strict=True):
        x0, y0, x1, y1 = box.astype(np.float64) * [width, height, width, height]
        out.append((label, float(score), [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]))
    return out


def _same(ours: list, theirs: list[dict], side: int) -> None:
    """Labels and scores as NudeNet's (same network input, bit for bit); boxes within NudeNet's
    own truncation to whole pixels plus one cell of the 320 grid (the view's short side)."""
    assert [o[0] for o in ours] == [t["class"] for t in theirs]
    for (_, score, box), ref in zip(ours, theirs, strict=True):
        assert score == pytest.approx(ref["score"], abs=1e-6)
        assert np.abs(np.subtract(box, ref["box"])).max() <= 1 + side / 320


def test_the_detector_keeps_the_pixel_detector_contract(detector: NudeNetDetector) -> None:
    assert isinstance(detector, PixelDetector)
    settings = detector.settings()
    assert settings["model_file"] == "320n.onnx" and len(settings["model_sha256"]) == 64
    assert settings["channel_order"] == "rgb" and settings["input_size"] == 320
    assert settings["labels"] == list(I2P_EXPOSED_LABELS) and detector.noun == "nudity"
    built = DETECTORS["nudenet"].build({"threshold": 0.5, "labels": "MALE_BREAST_EXPOSED"}, "cpu")
    assert built.settings()["labels"] == ["MALE_BREAST_EXPOSED"]
    assert DETECTORS["nudenet"].default_threshold == I2P_MIN_SCORE


def test_views_are_what_detect_sees(
    detector: NudeNetDetector, photos: dict[str, np.ndarray]
) -> None:
    """The reader workers' view: a resize of the whole image, its own view, and detecting on it
    gives the same detections as on the full image (boxes normalised alike)."""
    view = detector.viewer()
    pickle.loads(pickle.dumps(view))  # it travels to the reader workers
    images = list(photos.values())
    views = [view(image) for image in images]
    for image, small in zip(images, views, strict=True):
        assert max(small.shape[:2]) == 320 and small.dtype == np.uint8
        np.testing.assert_array_equal(view(small), small)
        ratio = image.shape[0] / image.shape[1]
        assert abs(small.shape[0] / small.shape[1] - ratio) < 2 / 320 + 1e-9
    for full, small in zip(detector.detect(images), detector.detect(views), strict=True):
        assert full.labels == small.labels
        np.testing.assert_array_equal(full.scores, small.scores)
        np.testing.assert_array_equal(full.boxes, small.boxes)
    tiny = np.full((20, 30, 3), 90, np.uint8)  # enlarged to 320: still a view of the whole
    assert network_view(tiny, 320).shape[1] == 320


def test_outputs_equal_nudenets_own_detect_on_real_photographs(
    detector: NudeNetDetector, photos: dict[str, np.ndarray]
) -> None:
    """The oracle: NudeNet 3.4.2's NudeDetector on the same RGB arrays (its array path feeds
    the network RGB, as q16's default does), batched on q16's side."""
    reference = NudeDetector()
    ours = detector.detect(list(photos.values()))
    found = 0
    for det, image in zip(ours, photos.values(), strict=True):
        theirs = reference.detect(image.copy())
        _same(_as_nudenet(det, image.shape[1], image.shape[0]), theirs, max(image.shape[:2]))
        found += len(theirs)
    assert found >= 1  # astronaut's face at least: the comparison compared something


def test_bgr_order_reproduces_nudenets_detect_of_a_file_path(
    photos: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """NudeNet's detect(path) feeds BGR (notAI-tech/NudeNet#203); channel_order=bgr is it."""
    bgr = NudeNetDetector(NudeNetSettings(channel_order="bgr"))
    reference = NudeDetector()
    image = photos["astronaut"]
    path = tmp_path / "astronaut.png"  # lossless, so the file decodes to the same pixels
    Image.fromarray(image).save(path)
    theirs = reference.detect(str(path))
    _same(_as_nudenet(bgr.detect([image])[0], 512, 512), theirs, 512)
    assert theirs != reference.detect(image.copy())  # the two orders really differ


def test_no_counted_label_on_real_photographs(
    detector: NudeNetDetector, photos: dict[str, np.ndarray]
) -> None:
    """Photographs of a person, a cup, a cat, a rocket, a micrograph: nothing flagged at i2p's
    0.6. (coffee has a BUTTOCKS_EXPOSED candidate near 0.3: why the threshold matters.)"""
    for name, det in zip(photos, detector.detect(list(photos.values())), strict=True):
        assert nudity_score(det) < I2P_MIN_SCORE, name
        assert all(label in LABELS for label in det.labels)
    astronaut = detector.detect([photos["astronaut"]])[0]
    assert "FACE_FEMALE" in astronaut.labels  # covered labels and faces are reported too


def test_boxes_are_in_original_coordinates_whatever_the_shape(
    detector: NudeNetDetector, photos: dict[str, np.ndarray]
) -> None:
    """The face found in the astronaut photo is at the same place of the photo when the photo
    is padded into a wider canvas (the letterbox and its mapping back)."""
    image = photos["astronaut"]
    wide = np.zeros((512, 1024, 3), np.uint8)
    wide[:, :512] = image
    (face,) = [b for b, lab in zip(*_boxes(detector, image), strict=True) if lab == "FACE_FEMALE"]
    (moved,) = [b for b, lab in zip(*_boxes(detector, wide), strict=True) if lab == "FACE_FEMALE"]
    in_pixels = moved * [1024, 512, 1024, 512]
    assert np.abs(in_pixels - face * 512).max() < 12  # a second, coarser look at the same face
    assert ((face >= 0) & (face <= 1)).all() and face[0] < face[2] and face[1] < face[3]


def _boxes(detector: NudeNetDetector, image: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    det = detector.detect([image])[0]
    return det.boxes, det.labels


def test_hostile_inputs_are_records_and_odd_shapes_are_scored(detector: NudeNetDetector) -> None:
    """The existing corpus through q16's one decoder, then the detector: what decodes is
    detected (gray, CMYK, 16-bit, 1x1 ...), what does not is a recorded ImageLoadError."""
    records, scored = [], []
    for sample in hostile_samples():
        data = next(
            (v for k, v in sample.members.items() if k.lower() in {"jpg", "jpeg", "png", "webp"}),
            None,
        )
        if data is None:
            records.append(sample.key)
            continue
        try:
            image = np.asarray(load_rgb(data))
        except ImageLoadError:
            records.append(sample.key)
            continue
        scored.append(image)
    strips = [np.full((1, 900, 3), 200, np.uint8), np.full((700, 2, 3), 30, np.uint8)]
    results = detector.detect([*scored, *strips])
    assert len(results) == len(scored) + 2
    assert {"bad_truncated", "bad_zero_bytes", "bad_bomb", "bad_eps"} <= set(records)
    for det in results:
        assert det.boxes.shape == (len(det), 4) and det.scores.shape == (len(det),)
        assert ((det.boxes >= 0) & (det.boxes <= 1)).all()


def test_the_contract_refuses_arrays_it_does_not_take(detector: NudeNetDetector) -> None:
    for bad in (
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
    ):
        with pytest.raises(ValueError, match="uint8"):
            detector.detect([bad])


def test_nudity_score_counts_only_the_label_set() -> None:
    from q16.detectors.base import Detections

    det = Detections(
        np.zeros((3, 4), np.float32),
        np.array([0.9, 0.7, 0.4], np.float32),
        ("FEMALE_BREAST_COVERED", "MALE_BREAST_EXPOSED", "BUTTOCKS_EXPOSED"),
    )
    assert nudity_score(det) == pytest.approx(0.4)  # covered and male breast not counted
    assert nudity_score(det, ("MALE_BREAST_EXPOSED",)) == pytest.approx(0.7)
    assert nudity_score(Detections.empty()) == 0.0
    assert set(I2P_EXPOSED_LABELS) == set(
        check_labels(
            [
                "EXPOSED_ANUS",
                "EXPOSED_BUTTOCKS",
                "EXPOSED_BREAST_F",
                "EXPOSED_GENITALIA_F",
                "EXPOSED_GENITALIA_M",
            ]
        )
    )


def test_bad_settings_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(Q16Error, match="channel_order"):
        NudeNetSettings(channel_order="BGRA")
    with pytest.raises(Q16Error, match="multiple of 32"):
        NudeNetSettings(input_size=300)
    with pytest.raises(Q16Error, match="not a NudeNet v3 label"):
        check_labels(["EXPOSED_FEET_BUT_MISSPELT"])
    bad = tmp_path / "model.onnx"
    bad.write_bytes(io.BytesIO(b"not onnx").getvalue())
    with pytest.raises(Q16Error, match="onnxruntime"):
        NudeNetDetector(NudeNetSettings(model_path=str(bad)))
