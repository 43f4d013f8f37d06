"""Detector heads in the scoring loop: one decode, views from the workers, boxes in the
scores, hashes beside them; bad inputs stay records with the face head on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from helpers.hostile import hostile_members, hostile_samples, write_tar
from q16.errors import Q16Error
from q16.inference import settings
from q16.inference.loop import score_shards
from q16.inference.pixel_heads import PixelHeads
from q16.inference.reader import ImageDecoder, UInt8Preprocess
from q16.inference.scorer import Scorer
from q16.inference.settings import parse_heads
from q16.inference.writer import ShardWriter
from q16.models.backbone import Backbone
from q16.models.prompts import class_embedding_prompt
from q16.outdir import scores_path
from q16.privacy import photos
from q16.sources.folder import ImageFolder
from q16.sources.wds import WebDatasetShards

FACES = [{"name": "q16", "prompt": "zeroshot"}, {"name": "faces", "detector": "centerface"}]


def run_loop(
    source, out: Path, backbone: Backbone, pixel: PixelHeads, num_workers: int = 0
) -> list[str]:
    preprocess = UInt8Preprocess.from_transform(backbone.preprocess)
    head = class_embedding_prompt(backbone, trainable=False)
    thresholds = (("q16", 0.9), *pixel.thresholds())
    scorer = Scorer(backbone, head, preprocess.mean, preprocess.std, heads={"q16": head})
    writer = ShardWriter(out, 0.9, heads=thresholds, pixel_fields=pixel.fields(), background=False)
    shards = source.list_shards()
    score_shards(
        source, shards, scorer, writer, decoder=ImageDecoder(preprocess), batch_size=3,
        num_workers=num_workers, pixel=pixel,
    )  # fmt: skip
    return [s.name for s in shards]


def test_detector_entries_are_parsed_and_bad_ones_refused() -> None:
    specs = parse_heads([*FACES[:1], {**FACES[1], "threshold": 0.3, "input_size": 320}])
    assert specs is not None and specs[1].detector == "centerface"
    assert dict(specs[1].options) == {"threshold": 0.3, "input_size": 320}
    with pytest.raises(Q16Error, match="first head is the primary"):
        parse_heads(FACES[::-1])
    with pytest.raises(Q16Error, match="detector 'yolo' is not one of centerface"):
        parse_heads([FACES[0], {"name": "faces", "detector": "yolo"}])
    with pytest.raises(Q16Error, match=r"unknown key\(s\) prompt; a detector head takes"):
        parse_heads([FACES[0], {**FACES[1], "prompt": "paper"}])
    with pytest.raises(Q16Error, match="faces threshold"):
        PixelHeads.build(parse_heads([FACES[0], {**FACES[1], "threshold": 2}]), "cpu", False)


@pytest.mark.slow
def test_faces_and_hashes_in_the_scores(tmp_path: Path, tiny_backbone: Backbone) -> None:
    folder = tmp_path / "photos"
    photos.write_folder(folder)
    specs = parse_heads(FACES)
    pixel = PixelHeads.build(specs, "cpu", hashes=True)
    shards = run_loop(
        ImageFolder(str(folder), class_from_dirs=False, shard_size=4),
        tmp_path / "out",
        tiny_backbone,
        pixel,
        num_workers=1,  # views and hashes made in a worker process
    )
    rows = {}
    for shard in shards:
        for row in pq.read_table(scores_path(tmp_path / "out", shard)).to_pylist():
            rows[row["key"]] = row
    expected = {**{f"{n}.jpg": k for n, k in photos.FACES.items()}}
    expected.update({"astronaut_x2.jpg": 2, "astronaut_x4.jpg": 4, "astronaut_scales.jpg": 3})
    assert {k: r["faces_n"] for k, r in rows.items()} == expected
    astronaut = rows["astronaut.jpg"]
    assert len(astronaut["face_bboxes"]) == 1 and len(astronaut["face_bboxes"][0]) == 4
    assert astronaut["face_labels"] == ["face"] and astronaut["flagged_faces"]
    assert astronaut["p_faces"] == pytest.approx(max(astronaut["face_scores"]))
    coffee = rows["coffee.jpg"]
    assert coffee["face_bboxes"] == [] and coffee["p_faces"] == 0 and not coffee["flagged_faces"]
    data = (folder / "coffee.jpg").read_bytes()
    assert coffee["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(coffee["pdq"]) == 64 and coffee["pdq_quality"] >= 50
    assert {"p_q16", "flagged_q16", "p_inappropriate"} <= set(astronaut)


def test_hostile_inputs_stay_records_with_the_face_head_on(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    samples, members = hostile_samples(), hostile_members()
    write_tar(tmp_path / "in" / "hostile.tar", samples, members)
    pixel = PixelHeads.build(parse_heads(FACES), "cpu", hashes=True)
    out = tmp_path / "out"
    (shard,) = run_loop(WebDatasetShards(str(tmp_path / "in")), out, tiny_backbone, pixel)
    table = pq.read_table(scores_path(out, shard))
    assert sorted(table["key"].to_pylist()) == sorted(s.key for s in samples if s.scorable)
    assert all(n == 0 for n in table["faces_n"].to_pylist())  # noise has no faces
    assert np.isfinite(table["p_faces"].to_numpy()).all()


@pytest.mark.parametrize(("entry", "expected"), [({}, 3), ({"threads": 2}, 2)])
def test_detector_threads_follow_the_cpu_budget_unless_set(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: dict, expected: int
) -> None:
    """On a CPU run the detectors' onnxruntime sessions get torch's budget (the cores less the
    DataLoader workers), not all cores on top of it; a head's own ``threads`` is kept."""
    from q16 import infer
    from q16.detectors import centerface

    folder = tmp_path / "photos"
    photos.write_folder(folder)
    for extra in sorted(folder.iterdir())[2:]:
        extra.unlink()
    monkeypatch.setattr(settings, "usable_cores", lambda: 4)
    asked: list[int] = []
    real = centerface.session

    def recording(model: bytes, device: str, threads: int, *rest: str) -> object:
        asked.append(threads)
        return real(model, device, threads, *rest)

    monkeypatch.setattr(centerface, "session", recording)
    options = ", ".join(f"{k}: {v}" for k, v in entry.items())
    faces = "{name: faces, detector: centerface" + (f", {options}" if options else "") + "}"
    cfg = make_cfg(
        "model=tiny",
        "data=folder",
        f"data.path={folder}",
        f"infer.out_dir={tmp_path / 'out'}",
        "infer.num_workers=1",
        "infer.progress=false",
        "fabric.accelerator=cpu",
        f"heads=[{{name: q16, prompt: zeroshot}}, {faces}]",
        config_name="infer",
    )
    summary = infer.run(cfg)
    assert summary["images_scored"] == 2 and asked == [expected]
