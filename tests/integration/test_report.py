"""Report files from a small hand-made inference out_dir (the contract infer.py writes)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from helpers import cdp_pipe
from helpers.page_checks import assert_only_q16_script
from q16 import cli
from q16.errors import Q16Error
from q16.outdir import FLAGGED_COLUMNS, UNKNOWN_CLASS
from q16.report import write_report
from q16.review import apply_review, load_run
from q16.review.run import per_class_table

REPO = Path(__file__).resolve().parents[2]
THRESHOLD = 0.5
CLASSES = {0: "tench", 1: "goldfish", 413: "assault rifle", 763: "revolver"}


def _jpeg(color: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (48, 32), color)
    image.paste((255 - color[0], 255 - color[1], 255 - color[2]), (8, 8, 24, 24))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def make_out_dir(root: Path, random_weights: bool = True) -> Path:
    """A finished inference out_dir: one tar shard, one folder shard, one unreadable input."""
    out = root / "infer_out"
    (out / "scores").mkdir(parents=True)
    rows = []
    tar_path = root / "shards" / "shard-000000.tar"
    tar_path.parent.mkdir()
    class_ids = [413, 413, 763, 0, 1, 413, 1, 0]
    probs = [0.97, 0.91, 0.88, 0.62, 0.30, 0.12, 0.05, 0.01]
    with tarfile.open(tar_path, "w") as tar:
        for i, (cid, p) in enumerate(zip(class_ids, probs, strict=True)):
            key = f"{i:06d}"
            for name, data in (
                (f"{key}.jpg", _jpeg((40 * i, 200 - 20 * i, 90))),
                (f"{key}.cls", str(cid).encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            rows.append(("shard-000000", key, str(tar_path), None, cid, p))
    folder = root / "folder"
    folder.mkdir()
    (folder / "cat.png").write_bytes(_jpeg((250, 10, 10)))
    rows.append(("folder-0", "cat", str(folder / "cat.png"), "cat.png", -1, 0.75))
    frame = pd.DataFrame(
        rows, columns=["shard", "key", "source", "file_name", "class_id", "p_inappropriate"]
    )
    frame["class_name"] = frame["class_id"].map(CLASSES)
    frame["p_inappropriate"] = frame["p_inappropriate"].astype(np.float32)
    frame["flagged"] = frame["p_inappropriate"] >= THRESHOLD
    frame["label"] = frame["flagged"].astype(np.int8)
    for shard, part in frame.groupby("shard"):
        table = pa.Table.from_pandas(
            part[["key", *FLAGGED_COLUMNS[1:], "label", "flagged"]], preserve_index=False
        )
        pq.write_table(table, out / "scores" / f"{shard}.parquet")
    flagged = frame[frame["flagged"]].sort_values("p_inappropriate", ascending=False)
    flagged[list(FLAGGED_COLUMNS)].to_csv(out / "flagged.csv", index=False)
    (out / "errors.jsonl").write_text(
        json.dumps({"key": "000099", "shard": "shard-000000", "reason": "OSError: truncated"})
        + "\n"
    )
    per_class: dict[str, dict[str, int]] = {}
    for name, part in frame.groupby(frame["class_name"].fillna(UNKNOWN_CLASS)):
        per_class[str(name)] = {"scored": len(part), "flagged": int(part["flagged"].sum())}
    summary = {
        "images_scored": len(frame),
        "images_flagged": int(frame["flagged"].sum()),
        "errors": 1,
        "per_class": per_class,
        "wall_time_s": 2.5,
        "images_per_s": 3.6,
        "data_wait_s": 0.4,
        "model_s": 1.8,
        "model": "q16-tiny" if random_weights else "ViT-L-14",
        "pretrained": None if random_weights else "openai",
        "random_weights": random_weights,
        "prompt_source": "prompts.safetensors (soft)",
        "threshold": THRESHOLD,
        "shards_total": 2,
        "shards_done": 2,
        "inputs": [str(tar_path), str(folder)],
        "date": "2026-11-22T00:00:00+00:00",
        "git_commit": "0123456789abcdef",
        "machine": {"platform": "test"},
    }
    (out / "summary.json").write_text(json.dumps(summary))
    return out


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return make_out_dir(tmp_path)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One report shared by the read-only tests (tests that edit files build their own)."""
    out = make_out_dir(tmp_path_factory.mktemp("report"))
    write_report(out)
    return out


def test_report_files(report: Path) -> None:
    for name in ("report.html", "flagged_classes.png", "datasheet_q16.md", "review.csv"):
        assert (report / name).stat().st_size > 0, name
    with Image.open(report / "flagged_classes.png") as cloud:
        assert cloud.size == (1200, 600)
        assert np.asarray(cloud.convert("L")).std() > 5  # words were drawn


def test_html_is_self_contained_and_ordered(report: Path) -> None:
    page = (report / "report.html").read_text()
    assert page.count('class="thumb"') == 5  # every flagged image found its bytes
    assert_only_q16_script(page)
    assert "http://" not in page and "https://" not in page
    keys = ["000000", "000001", "000002", "cat", "000003"]  # highest score first
    positions = [page.index(f'data-key="{k}"') for k in keys]
    assert positions == sorted(positions)
    assert 'id="random-weights"' in page and "assault rifle" in page


def test_datasheet_draft(report: Path) -> None:
    text = (report / "datasheet_q16.md").read_text()
    assert "RANDOM weights" in text
    assert "9 images" in text and "5 of the 9 scored images (55.56 %)" in text and "≥ 0.5" in text
    assert "| assault rifle | 2 | 3 | 66.7 % |" in text
    assert "The classifier proposes, humans decide" in text


def test_real_weights_have_no_random_warning(tmp_path: Path) -> None:
    write_report(make_out_dir(tmp_path, random_weights=False))
    page = (tmp_path / "infer_out" / "report.html").read_text()
    assert 'id="random-weights"' not in page
    assert "RANDOM" not in (tmp_path / "infer_out" / "datasheet_q16.md").read_text()


def test_review_round_trip(out_dir: Path) -> None:
    report = out_dir
    cli.main(["report", str(out_dir)])
    review = pd.read_csv(report / "review.csv", dtype=str, keep_default_na=False)
    assert review.columns[0] == "decision" and (review["decision"] == "").all()
    assert review["key"].tolist() == ["000000", "000001", "000002", "cat", "000003"]
    review["decision"] = ["remove", "Remove ", "keep", "unsure", ""]
    review.to_csv(report / "review.csv", index=False)
    outcome = apply_review(load_run(report), report / "review.csv")
    assert (outcome.remove, outcome.keep, outcome.unsure, outcome.undecided) == (2, 1, 1, 1)
    removed = pd.read_csv(report / "keys_remove.csv", dtype=str)
    assert removed.values.tolist() == [["shard-000000", "000000"], ["shard-000000", "000001"]]
    kept = pd.read_csv(report / "keys_keep.csv", dtype=str)
    assert len(kept) == 9 - 2 and "000000" not in set(kept["key"]) and "cat" in set(kept["key"])


@pytest.mark.parametrize("command", ["report", "audit", "apply", "next"])
def test_cli_error_is_one_line(tmp_path: Path, command: str, capsys) -> None:
    extra = {"audit": ["-n", "5"], "apply": [str(tmp_path / "r.csv")], "next": ["-n", "5"]}
    (tmp_path / "r.csv").write_text("decision,shard,key\n", encoding="utf-8")
    with pytest.raises(SystemExit) as stop:
        cli.main([command, str(tmp_path / "absent"), *extra.get(command, [])])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("q16: error:") and "no such inference out_dir" in err


def test_cli_rejects_invalid_decisions(tmp_path: Path, report: Path, capsys) -> None:
    review = pd.read_csv(report / "review.csv", dtype=str, keep_default_na=False)
    review.loc[1, "decision"] = "delete"
    review.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["apply", str(report), str(tmp_path / "bad.csv")])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert err.startswith("q16: error:") and "invalid decision" in err and "line 3" in err
    assert not (tmp_path / "keys_remove.csv").exists()


def test_input_errors(tmp_path: Path, report: Path, out_dir: Path) -> None:
    with pytest.raises(Q16Error, match=r"no summary\.json"):
        load_run(tmp_path)
    review = pd.read_csv(report / "review.csv", dtype=str, keep_default_na=False)
    review.loc[0, "key"] = "not-a-key"
    review.to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(Q16Error, match="another run"):
        apply_review(load_run(report), tmp_path / "other.csv")
    (out_dir / "flagged.csv").unlink()
    with pytest.raises(Q16Error, match=r"no flagged\.csv"):
        load_run(out_dir)


def test_missing_images_do_not_break_the_page(out_dir: Path) -> None:
    shutil.rmtree(out_dir.parent / "shards")
    write_report(out_dir)
    page = (out_dir / "report.html").read_text()
    assert page.count('class="thumb"') == 1 and page.count("image unavailable") == 4


@pytest.mark.slow
def test_html_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    browser = cdp_pipe.chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (make browser installs the Debian package as root)")
    flags = [
        *(f for f in cdp_pipe.FLAGS if f != "--remote-debugging-pipe"),
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,2000",
    ]
    url = (report / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", url],
        capture_output=True,
        timeout=240,
        check=False,
    )
    assert shot.is_file(), "chromium wrote no screenshot"
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
    assert pixels.shape == (2000, 1200) and pixels.std() > 10  # not a blank page
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    ).stdout
    assert dom.count('class="thumb"') == 5 and 'id="histogram"' in dom


@pytest.mark.slow
def test_report_from_a_real_inference_run(make_cfg, tmp_path: Path) -> None:
    """The contract end to end: infer.run on tiny shards (one hostile), then the report."""
    from helpers.hostile import hostile_samples, write_tar
    from q16 import infer
    from q16.sources.wds import synthetic_images, write_shards

    shards = tmp_path / "shards"
    write_shards(synthetic_images(12, seed=1), str(shards / "good-%03d.tar"), maxcount=6)
    write_tar(shards / "hostile.tar", hostile_samples())
    out = tmp_path / "scored"
    cfg = make_cfg(
        "model=tiny",
        "fabric.accelerator=cpu",
        "infer.batch_size=4",
        "infer.num_workers=0",
        "infer.progress=false",
        "infer.threshold=0.0",  # flag everything readable: every thumbnail must be found
        f"infer.out_dir={out}",
        "data=imagenet",
        f"data.shards={shards}",
        config_name="infer",
    )
    summary = infer.run(cfg)
    write_report(out)
    page = (out / "report.html").read_text()
    assert page.count('class="thumb"') == summary["images_flagged"] > 0
    assert "image unavailable" not in page
    outcome = apply_review(load_run(out), out / "review.csv")
    assert outcome.undecided == summary["images_flagged"]
    assert outcome.n_keep_keys == summary["images_scored"]
    # images without a class (hostile samples) carry the one shared spelling end to end
    classless = pd.concat(pd.read_parquet(p) for p in (out / "scores").glob("*.parquet"))
    n_classless = int(classless["class_name"].isna().sum())
    assert n_classless > 0 and summary["per_class"][UNKNOWN_CLASS]["scored"] == n_classless
    table = per_class_table(load_run(out)).set_index("class_name")
    assert table.loc[UNKNOWN_CLASS, "scored"] == n_classless
