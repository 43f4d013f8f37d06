"""infer.run with a faces head: one pass, boxes and counts in the scores and summary,
resume, the fingerprint, refusals before anything is read, and a missing extra."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import DictConfig

from q16 import infer
from q16.errors import Q16Error
from q16.privacy import photos

MakeCfg = Callable[..., DictConfig]
HEADS = "heads=[{name: q16, prompt: zeroshot}, {name: faces, detector: centerface}]"


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
    root = tmp_path_factory.mktemp("photos")
    photos.write_folder(root / "people")
    return root


@pytest.mark.slow
def test_faces_counted_in_one_pass_and_resumed(
    make_cfg: MakeCfg, folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ("data=folder", f"data.path={folder}", "data.shard_size=4", HEADS, "infer.hashes=true")
    summary = _run(make_cfg, out, *args)
    faces = next(h for h in summary["heads"] if h["name"] == "faces")
    assert faces["detector"] == "centerface" and faces["threshold"] == 0.5
    assert faces["settings"]["input_size"] == 640 and len(faces["settings"]["model_sha256"]) == 64
    assert faces["flagged"] == 5 and faces["share"] == pytest.approx(5 / 10)
    assert faces["per_class"]["people"] == {"scored": 10, "flagged": 5}
    assert any("skin tone" in line for line in faces["known_limits"])
    assert summary["hashes"] == ["sha256", "pdq"] and summary["pixel_s"] > 0
    scores = pd.concat(pd.read_parquet(p) for p in sorted((out / "scores").glob("*.parquet")))
    assert int(scores["faces_n"].sum()) == 1 + 1 + 2 + 4 + 3
    assert scores.set_index("key").loc["people/astronaut_x4.jpg", "faces_n"] == 4
    assert (scores["flagged_faces"] == (scores["faces_n"] > 0)).all()
    # a face is counted, not content to review: flagged.csv holds the q16 head's flags only
    q16 = int(scores["flagged_q16"].sum())
    assert summary["images_flagged_any_head"] == q16
    assert len(pd.read_csv(out / "flagged.csv")) == q16
    # resumed: nothing scored again; other detector settings are another run
    again = _run(make_cfg, out, *args)
    assert again["images_scored_this_run"] == 0 and again["heads"] == summary["heads"]
    smaller = HEADS.replace("centerface}", "centerface, input_size: 320}")
    with pytest.raises(Q16Error, match="made with different heads"):
        _run(make_cfg, out, *args[:3], smaller, "infer.hashes=true")


def test_embeddings_runs_refuse_pixel_heads_before_reading(
    make_cfg: MakeCfg, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-run"  # never read: the refusal comes first
    for extra in (HEADS, "infer.hashes=true"):
        with pytest.raises(Q16Error, match="needs the images") as err:
            _run(make_cfg, tmp_path / "out", "data=embeddings", f"data.path={missing}", extra)
        assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_bad_detector_entries_are_one_line(make_cfg: MakeCfg, folder: Path, tmp_path: Path) -> None:
    bad = HEADS.replace("centerface}", "centerface, size: 3}")
    with pytest.raises(Q16Error, match="unknown key"):
        _run(make_cfg, tmp_path / "out", "data=folder", f"data.path={folder}", bad)


def test_a_missing_extra_is_one_line(
    make_cfg: MakeCfg, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(Q16Error, match=r"pip install q16\[privacy\]"):
        _run(make_cfg, tmp_path / "out", "data=folder", f"data.path={folder}", HEADS)
    scores = tmp_path / "out" / "scores"
    assert not scores.exists() or not any(scores.iterdir())


@pytest.mark.slow
def test_hostile_folder_gives_records_with_the_face_head_on(
    make_cfg: MakeCfg, tmp_path: Path
) -> None:
    from helpers.hostile import write_hostile_folder

    root = tmp_path / "imgs"
    expected = write_hostile_folder(root)
    summary = _run(make_cfg, tmp_path / "out", "data=folder", f"data.path={root}", HEADS)
    assert summary["images_scored"] == len(expected.scorable)
    assert summary["images_unscored"] == len(expected.recorded)
