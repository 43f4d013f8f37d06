"""The scripted curator of the demo: SMID's decisions, or a standard of its own."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "simulate_review.py"


def _module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("simulate_review", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _image(path: Path, rgb: tuple[int, int, int]) -> str:
    Image.fromarray(np.full((8, 8, 3), rgb, np.uint8)).save(path)
    return str(path)


def test_green_curator_removes_green_images_smid_would_keep(tmp_path: Path) -> None:
    norms = tmp_path / "SMID_norms.csv"
    names = ["grey_good", "green_good", "grey_bad", "broken"]
    pd.DataFrame({"img_name": names, "moral_mean": [4.5, 4.5, 1.5, 4.5]}).to_csv(norms, index=False)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    review = tmp_path / "review.csv"
    rows = {
        "grey_good": _image(tmp_path / "grey_good.jpg", (120, 120, 120)),
        "green_good": _image(tmp_path / "green_good.jpg", (60, 200, 60)),
        "grey_bad": _image(tmp_path / "grey_bad.jpg", (120, 120, 120)),
        "broken": str(tmp_path / "broken.jpg"),
    }
    frame = pd.DataFrame(
        {"decision": "", "key": [f"{k}.jpg" for k in rows], "source": list(rows.values())}
    )
    script = _module()
    labels = script.decisions_from_norms(norms)
    for curator, expected in (
        ("smid", ["keep", "keep", "remove", "keep"]),
        ("smid+green", ["keep", "remove", "remove", ""]),  # an unreadable image: left blank
    ):
        frame.to_csv(review, index=False)
        script.fill_review(review, labels, curator)
        assert pd.read_csv(review, keep_default_na=False)["decision"].tolist() == expected
