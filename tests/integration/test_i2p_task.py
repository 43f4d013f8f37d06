"""The I2P metric end to end, offline: a folder of generated-looking images (the package's
synthetic images, named <prompt>_<generation>), a prompts CSV in I2P's columns, the tiny
random-weight CLIP for Q16 and NudeNet's real weights."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from q16.data.i2p import I2PImages
from q16.data.synthetic import make_synthetic_smid
from q16.detectors.nudenet import NudeNetDetector
from q16.errors import Q16Error
from q16.experiments.i2p import I2PProtocol, i2p_metrics
from q16.experiments.i2p_task import I2PRun, run_i2p_folder
from q16.models.prompts import class_embedding_prompt

CATEGORIES = [
    "sexual",
    "violence, hate",
    "hate",
    "shocking, sexual",
    "self-harm",
    "illegal activity",
]


def _generated(tmp_path: Path, n_prompts: int = 6, n_gen: int = 3) -> tuple[Path, Path]:
    smid = make_synthetic_smid(tmp_path / "smid", n_images=n_prompts * n_gen, image_size=48)
    images = sorted((smid / "img").glob("*.jpg"))
    out = tmp_path / "generated"
    out.mkdir()
    for k, src in enumerate(images):
        shutil.copy(src, out / f"{k // n_gen}_{k % n_gen}.jpg")
    prompts = tmp_path / "i2p.csv"
    pd.DataFrame(
        {
            "prompt": [
                f"=prompt number {i}" if i == 0 else f"prompt number {i}" for i in range(n_prompts)
            ],
            "categories": CATEGORIES[:n_prompts],
            "hard": [1] * n_prompts,
            "sd_seed": list(range(n_prompts)),
        }
    ).to_csv(prompts, index=False)
    return out, prompts


@pytest.mark.slow
def test_i2p_end_to_end_on_generated_looking_images(tmp_path: Path, tiny_backbone) -> None:
    folder, prompts = _generated(tmp_path)
    (folder / "cover.png").write_bytes(b"not an image, and not named <p>_<g>")
    (folder / "5_9.jpg").write_bytes(b"\xff\xd8 truncated")  # matched, undecodable
    (folder / "77_0.jpg").write_bytes((folder / "0_0.jpg").read_bytes())  # no prompt 77
    os.mkfifo(folder / "4_9.jpg")  # a FIFO never blocks the run: a record
    images = I2PImages(str(folder), str(prompts)).load()
    assert images.record["prompt_index"].startswith("row position")
    head = class_embedding_prompt(tiny_backbone)
    protocol = I2PProtocol(n_prompts=5, n_draws=500, detector={"name": "nudenet"})
    run = I2PRun(tmp_path / "out", batch_size=4, note="tiny random-weight CLIP")
    metrics = run_i2p_folder(
        images,
        folder,
        tiny_backbone,
        head,
        {"source": "zeroshot"},
        NudeNetDetector(),
        protocol,
        run,
    )
    table = pd.read_csv(tmp_path / "out" / "i2p_images.csv")
    assert list(table.columns[:4]) == ["prompt", "categories", "idx_generation", "unsafe"]
    assert len(table) == 18 and metrics["inputs"]["n_unreadable"] == 2
    assert table["prompt"].iloc[0] == "'=prompt number 0"  # never a formula in a spreadsheet
    assert table["unsafe"].tolist() == (table["flagged_q16"] | table["flagged_nudity"]).tolist()
    assert (table["p_nudity"] < 0.6).all()  # colour-noise squares: NudeNet counts nothing
    # the written numbers are the metric of the written table
    again = i2p_metrics(table.assign(prompt=table["prompt"]), protocol)
    assert again["all"] == metrics["all"] and set(metrics["categories"]) == {
        "sexual",
        "violence",
        "hate",
        "shocking",
        "self-harm",
        "illegal activity",
    }
    assert metrics["categories"]["hate"]["n_images"] == 6  # two prompts carry "hate"
    saved = json.loads((tmp_path / "out" / "i2p_metrics.json").read_text())
    assert saved["protocol"]["q16_rule"] == "argmax" and saved["protocol"]["n_draws"] == 500
    assert saved["q16_head"] == {"source": "zeroshot"} and saved["note"]
    errors = [
        json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()
    ]
    kinds = {(e["kind"], e["file"]) for e in errors}
    assert {
        ("not matched", "cover.png"),
        ("not matched", "77_0.jpg"),
        ("unreadable", "5_9.jpg"),
    } <= kinds
    md = (tmp_path / "out" / "i2p_metrics.md").read_text()
    assert "| all | 18 | 6 |" in md and "tiny random-weight CLIP" in md


def test_listing_and_case_numbers_and_bad_inputs(tmp_path: Path) -> None:
    folder, prompts = _generated(tmp_path, n_prompts=2, n_gen=2)
    frame = pd.read_csv(prompts)
    frame["case_number"] = [40, 41]
    frame.to_csv(prompts, index=False)
    for f in folder.iterdir():
        f.rename(folder / f"img-{f.name}")
    listing = tmp_path / "listing.csv"
    pd.DataFrame(
        {
            "file": ["img-0_0.jpg", "img-0_1.jpg", "img-1_0.jpg", "../i2p.csv"],
            "prompt_idx": [40, 40, 41, 41],
            "idx_generation": [0, 1, 0, 1],
        }
    ).to_csv(listing, index=False)
    images = I2PImages(str(folder), str(prompts), listing=str(listing)).load()
    assert images.table["prompt_idx"].tolist() == [40, 40, 41]
    assert images.record["prompt_index"] == "column 'case_number' of the prompts CSV"
    assert images.skipped == [{"file": "../i2p.csv", "reason": "not a file inside data.path"}]
    with pytest.raises(Q16Error, match="no image is named"):
        I2PImages(str(folder), str(prompts)).load()  # renamed: nothing matches by name
    (folder / "40_0.png").write_bytes(b"")
    (folder / "40_0.jpg").write_bytes(b"")
    with pytest.raises(Q16Error, match="two images for prompt 40 generation 0"):
        I2PImages(str(folder), str(prompts)).load()
    with pytest.raises(Q16Error, match="no column 'categories'"):
        bad = tmp_path / "bad.csv"
        pd.DataFrame({"prompt": ["a"]}).to_csv(bad, index=False)
        I2PImages(str(folder), str(bad)).load()
    with pytest.raises(Q16Error, match="not a whole number"):
        pd.DataFrame({"prompt": ["a"], "categories": ["x"], "case_number": ["=1+1"]}).to_csv(
            bad, index=False
        )
        I2PImages(str(folder), str(bad)).load()
