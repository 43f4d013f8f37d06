"""User mistakes on the command line: one line, a non-zero exit, no traceback, and found before
anything expensive (weights, image decoding)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.errors import one_line
from q16 import train_config
from q16.errors import Q16Error
from q16.train import run

REPO = Path(__file__).resolve().parents[2]
FAST = ("model=tiny", "data=synthetic", "device=cpu", "trainer=cpu", "callbacks=none")


def _run(tmp_path: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *argv],
        cwd=tmp_path,
        env={**env, "PROJECT_ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_missing_smid_is_reported_before_the_weights(tmp_path: Path, launch_env) -> None:
    """The default model (ViT-L-14, not downloadable offline) is never reached."""
    result = _run(
        tmp_path,
        launch_env(),
        str(REPO / "train.py"),
        "data=smid",
        "data.root=/nowhere",
        f"paths.cache_dir={tmp_path}/cache",
        f"model.cache_dir={tmp_path}/hf",
    )
    one_line(result, "SMID not found")


@pytest.mark.slow
def test_bad_settings_are_one_line(tmp_path: Path, launch_env) -> None:
    result = _run(tmp_path, launch_env(), str(REPO / "train.py"), *FAST, "eval.threshold=nan")
    one_line(result, "eval.threshold=nan must lie in [0, 1]")


@pytest.mark.slow
def test_non_numeric_score_column_is_one_line(tmp_path: Path, launch_env) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text("path,rating\na.png,bad\n")
    result = _run(
        tmp_path,
        launch_env(),
        str(REPO / "train.py"),
        "model=ViT-L-14",  # never loaded: the data is checked first
        "data=csv",
        f"data.path={tmp_path / 'l.csv'}",
        "data.score_column=rating",
        f"model.cache_dir={tmp_path}/hf",
    )
    one_line(result, "column 'rating' is not a number")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("split.test_fraction=1.5", "split.test_fraction=1.5 must lie in (0, 1)"),
        ("split.test_fraction=0", "split.test_fraction=0 must lie in (0, 1)"),
        ("split.train_fraction=0", "split.train_fraction=0 must lie in (0, 1]"),
        ("eval.threshold=1.5", "eval.threshold=1.5 must lie in [0, 1]"),
        ("eval.threshold=abc", "eval.threshold='abc' is not a number"),
        ("split.seed=-1", "split.seed=-1 must be a whole number >= 0"),
        ("features.batch_size=0", "features.batch_size=0 must be a whole number >= 1"),
    ],
)
def test_silently_wrong_values_are_refused_first(
    make_cfg, synthetic_root, monkeypatch, override: str, expected: str
) -> None:
    def no_weights(cfg):
        raise AssertionError("the weights were loaded before the settings were checked")

    monkeypatch.setattr(train_config, "build_backbone", no_weights)
    cfg = make_cfg(*FAST, f"data.root={synthetic_root}", override)
    with pytest.raises(Q16Error) as err:
        run(cfg)
    assert expected in str(err.value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("cv.n_splits=0", "cv.n_splits=0 must be a whole number >= 1"),
        ("eval.target_precision=0", "eval.target_precision=0 must lie in (0, 1]"),
        ("cv.test_fraction=nan", "cv.test_fraction=nan must lie in (0, 1)"),
    ],
)
def test_protocol_values_are_refused_first(
    make_cfg, synthetic_root, monkeypatch, override: str, expected: str
) -> None:
    monkeypatch.setattr(train_config, "build_backbone", lambda cfg: pytest.fail("weights"))
    cfg = make_cfg(*FAST, "experiment=smid_cv", f"data.root={synthetic_root}", override)
    with pytest.raises(Q16Error, match=expected.replace("(", r"\(").replace(")", r"\)")):
        run(cfg)


def test_data_is_checked_before_the_weights(make_cfg, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(train_config, "build_backbone", lambda cfg: pytest.fail("weights"))
    (tmp_path / "empty.csv").write_text("path,label\n")
    for task in ((), ("experiment=smid_cv",)):
        cfg = make_cfg(*FAST, *task, "data=csv", f"data.path={tmp_path / 'empty.csv'}")
        with pytest.raises(Q16Error, match="no rows below the header"):
            run(cfg)


def test_duplicated_training_csv_is_reported_and_split_by_image(
    make_cfg, synthetic_root: Path, tmp_path: Path, caplog
) -> None:
    """Every row five times: the run warns and its test images are not trained on."""
    norms = pd.read_csv(synthetic_root / "SMID_norms.csv").head(60)
    rows = pd.DataFrame(
        {
            "path": [str(synthetic_root / "img" / f"{n}.jpg") for n in norms["img_name"]],
            "score": norms["moral_mean"],
        }
    )
    pd.concat([rows] * 5).to_csv(tmp_path / "x5.csv", index=False)
    cfg = make_cfg(
        *FAST,
        "prompt=zeroshot",
        "data=csv",
        f"data.path={tmp_path / 'x5.csv'}",
        "data.score_column=score",
        "split.test_fraction=0.25",
    )
    with caplog.at_level("WARNING"):
        result = run(cfg)
    assert "are exact duplicates of another" in caplog.text
    assert result.n_test % 5 == 0 and result.n_train % 5 == 0  # whole sets of copies


def test_report_cli_refuses_conflicting_decisions(tmp_path: Path, capsys) -> None:
    from test_report_hostile import make_hostile_out_dir

    out = make_hostile_out_dir(tmp_path)
    from q16 import cli

    cli.main(["report", str(out)])
    review = pd.read_csv(out / "review.csv", dtype=str, keep_default_na=False)
    review = pd.concat([review, review.head(1)], ignore_index=True)
    review["decision"] = ["keep"] * (len(review) - 1) + ["remove"]
    review.to_csv(tmp_path / "r.csv", index=False, lineterminator="\r\n")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["apply", str(out), str(tmp_path / "r.csv")])
    err = capsys.readouterr().err
    assert exit_info.value.code != 0 and err.count("\n") == 1
    assert err.startswith("q16: error:") and "conflicting decisions for 1 image(s)" in err
    assert not (tmp_path / "keys_remove.csv").exists()


@pytest.mark.slow
def test_infer_with_a_nan_prompt_exits_with_one_line(tmp_path: Path, launch_env) -> None:
    """Refused at load, before any image is read."""
    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.png")
    np.save(tmp_path / "nan.npy", np.full((2, 64), np.nan, np.float32))
    result = _run(
        tmp_path,
        launch_env(),
        str(REPO / "infer.py"),
        "model=tiny",
        "data=folder",
        f"data.path={tmp_path / 'images'}",
        f"prompt.path={tmp_path / 'nan.npy'}",
        f"infer.out_dir={tmp_path / 'out'}",
    )
    one_line(result, "non-finite")
