"""infer.run with the nudity head ({name: nudity, detector: nudenet}) and NudeNet's real
weights: labels, scores and boxes per image in one pass, p_nudity over the counted labels,
the head in summary.json, hostile inputs as records, and report.html's blurred thumbnails."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skimage.data
from omegaconf import DictConfig
from PIL import Image

from helpers.hostile import hostile_samples
from q16 import infer
from q16.errors import Q16Error
from q16.report.thumbnails import thumbnail_uri

MakeCfg = Callable[..., DictConfig]
HEADS = "heads=[{name: q16, prompt: zeroshot}, {name: nudity, detector: nudenet}]"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def _run(make_cfg: MakeCfg, out: Path, *overrides: str) -> dict:
    cfg = make_cfg(
        "model=tiny",
        f"infer.out_dir={out}",
        "infer.num_workers=0",
        "infer.progress=false",
        "infer.batch_size=4",
        "fabric.accelerator=cpu",
        *overrides,
        config_name="infer",
    )
    return infer.run(cfg)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nudity") / "images"
    (root / "photos").mkdir(parents=True)
    for name in PHOTOS:
        Image.fromarray(getattr(skimage.data, name)()).save(root / "photos" / f"{name}.png")
    (root / "hostile").mkdir()
    for sample in hostile_samples():
        for ext, data in sample.members.items():
            if ext.lower() in {"jpg", "jpeg", "png", "webp"}:
                (root / "hostile" / f"{sample.key}.{ext}").write_bytes(data)
    return root


@pytest.mark.slow
def test_nudity_head_in_one_pass(make_cfg: MakeCfg, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = _run(make_cfg, out, "data=folder", f"data.path={folder}", HEADS)
    nudity = next(h for h in summary["heads"] if h["name"] == "nudity")
    assert nudity["detector"] == "nudenet" and nudity["threshold"] == 0.6
    assert nudity["settings"]["labels"][0] == "ANUS_EXPOSED"
    assert len(nudity["settings"]["model_sha256"]) == 64
    assert any("skin tone" in line for line in nudity["known_limits"])
    scores = pd.concat(pd.read_parquet(p) for p in sorted((out / "scores").glob("*.parquet")))
    by_key = scores.set_index("key")
    astronaut = by_key.loc["photos/astronaut.png"]
    assert "FACE_FEMALE" in list(astronaut["nudity_labels"])  # every label is kept
    assert astronaut["p_nudity"] == 0.0  # but a face is not counted
    coffee = by_key.loc["photos/coffee.png"]
    assert 0.2 < coffee["p_nudity"] < 0.6 and not coffee["flagged_nudity"]  # NudeNet's 0.30
    assert (scores["nudity_n"] == scores["nudity_labels"].map(len)).all()
    assert not scores["flagged_nudity"].any()
    for boxes in scores["nudity_bboxes"]:
        for box in boxes:
            assert 0 <= box[0] <= box[2] <= 1 and 0 <= box[1] <= box[3] <= 1
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert {"hostile/bad_truncated.jpg", "hostile/bad_eps.jpg"} <= {e["key"] for e in errors}
    assert "hostile/ok_16bit.png" in set(scores["key"])  # odd but decodable: scored


def test_bad_nudity_entries_are_one_line(make_cfg: MakeCfg, folder: Path, tmp_path: Path) -> None:
    for bad, words in (
        ("nudenet, labels: [EXPOSED_TOES]}", "not a NudeNet v3 label"),
        ("nudenet, channel_order: bgra}", "channel_order"),
        ("nudenet, size: 3}", "unknown key"),
    ):
        with pytest.raises(Q16Error, match=words) as err:
            _run(make_cfg, tmp_path / "out", "data=folder", f"data.path={folder}",
                 HEADS.replace("nudenet}", bad))  # fmt: skip
        assert "\n" not in str(err.value)
    assert not (tmp_path / "out" / "scores").exists()


def _thumbnail(html: str, key: str, after: str = "") -> np.ndarray:
    """The pixels of the (first after ``after``) thumbnail the page embeds for ``key``."""
    start = html.index(f'data-key="{key}"', html.index(after) if after else 0)
    src = html.index('src="data:image/jpeg;base64,', start) + len('src="data:image/jpeg;base64,')
    data = base64.b64decode(html[src : html.index('"', src)])
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float64)


def _detail(pixels: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels: edges, texture, features."""
    return float(np.abs(np.diff(pixels, axis=0)).mean() + np.abs(np.diff(pixels, axis=1)).mean())


@pytest.mark.slow
def test_report_blurs_what_the_nudity_head_flags(
    make_cfg: MakeCfg, folder: Path, tmp_path: Path
) -> None:
    """At threshold 0.25 NudeNet's 0.30 candidate on coffee flags it: its thumbnail is blurred
    in the page's pixels unless --show-nudity; the page says which."""
    from q16.cli import main

    out = tmp_path / "out"
    heads = HEADS.replace("nudenet}", "nudenet, threshold: 0.25}").replace(
        "zeroshot}", "zeroshot, threshold: 1.0}"
    )  # q16 flags nothing: what is in the page is the nudity head's
    _run(make_cfg, out, "data=folder", f"data.path={folder / 'photos'}", heads)
    main(["report", str(out), "--report-dir", str(tmp_path / "shared")])
    shared = (tmp_path / "shared" / "report.html").read_text()
    main(["report", str(out), "--report-dir", str(tmp_path / "mine"), "--show-nudity"])
    mine = (tmp_path / "mine" / "report.html").read_text()
    assert 'id="nudity-blurred"' in shared and "--show-nudity" in shared
    assert 'id="nudity-shown"' in mine and 'class="thumb blurred"' not in mine
    assert shared.count('class="thumb blurred"') == 1
    key = "coffee.png"
    blurred, sharp = _thumbnail(shared, key), _thumbnail(mine, key)
    assert blurred.shape == sharp.shape
    assert _detail(blurred) < 0.25 * _detail(sharp)  # the features are gone, not hidden by CSS
    assert np.abs(blurred.mean() - sharp.mean()) < 10  # the same picture, only unreadable
    # the audit sample's thumbnails too (all four photographs are drawn)
    main(["audit", str(out), "-n", "4", "--report-dir", str(tmp_path / "audit")])
    audit = (tmp_path / "audit" / "report.html").read_text()
    in_audit = _thumbnail(audit, key, after="audit-thumb")
    assert _detail(in_audit) < 0.25 * _detail(sharp)
    other = "rocket.png"  # not flagged by the nudity head: as it is
    uri = thumbnail_uri((folder / "photos" / other).read_bytes())
    assert uri is not None
    as_is = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("L"))
    assert _detail(_thumbnail(audit, other, after="audit-thumb")) == pytest.approx(
        _detail(as_is.astype(np.float64)), rel=0.05
    )
