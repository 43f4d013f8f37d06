"""Hostile text and keys through the report: nothing a dataset holds may break it, make it lie,
or turn review.csv / flagged.csv / keys_*.csv into formulas in a spreadsheet."""

from __future__ import annotations

import csv
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from helpers.page_checks import assert_only_q16_script
from q16.errors import Q16Error
from q16.inference.collect import collect
from q16.inference.writer import SCHEMA
from q16.outdir import UNKNOWN_CLASS, scores_path
from q16.report import write_report
from q16.review import apply_review, load_run
from q16.spreadsheet import FORMULA_STARTS

NA_KEYS = ["NA", "null", "None", "nan"]
FORMULA_KEYS = ['=HYPERLINK("http://evil.example/?x","click")', "+SUM(1+1)", "@SUM(1+1)", "-2+3"]
ODD_KEYS = ["000000123", "'quoted", "\ttab", "\u202egpj.exe", "", "cr\ronly", "line\nbreak"]
HOSTILE_CLASSES = [
    "line one\nline two",  # img2dataset captions: newlines broke the word cloud
    "x" * 100_000,
    "a|b <script>alert(1)</script> [link](http://x) `code` *em* $\\frac{$",
    "中文 名字 😀",
    "\x00\x07\x1bctl\r\n",
    "\u202eevil",
    "=cmd|' /C calc'!A0",
    "NA",
    "  ",
]


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buffer, format="JPEG")
    return buffer.getvalue()


def make_hostile_out_dir(root: Path, p: float | None = None) -> Path:
    """An out_dir made by the real collect() from score tables full of hostile strings.

    ``p`` = one score for every image (``nan`` for a run whose prompts were NaN).
    """
    out = root / "out"
    (out / "scores").mkdir(parents=True)
    tar_path = root / "shard.tar"
    with tarfile.open(tar_path, "w") as tar:
        for i, key in enumerate(NA_KEYS):  # four images, four different thumbnails
            data = _jpeg((60 * i, 255 - 60 * i, 30))
            info = tarfile.TarInfo(f"{key}.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    rows = []
    keys = NA_KEYS + FORMULA_KEYS + ODD_KEYS
    for i, key in enumerate(keys):
        rows.append(
            {
                "key": key,
                "shard": "shard-0",
                "source": str(tar_path) if key in NA_KEYS else str(root / "gone"),
                "file_name": "=1+1" if i % 2 else None,
                "class_id": -1 if i % 3 else i,
                "class_name": HOSTILE_CLASSES[i % len(HOSTILE_CLASSES)] if i % 4 else None,
                "p_inappropriate": (0.99 - i / 100) if p is None else p,
            }
        )
    rows.append({**rows[-2], "key": "7", "shard": "00042", "p_inappropriate": p or 0.9})
    frame = pd.DataFrame(rows)
    frame["flagged"] = frame["p_inappropriate"] >= 0.5
    frame["label"] = frame["flagged"].astype(np.int8)
    frame["synset"] = None
    for shard, part in frame.groupby("shard"):
        table = pa.Table.from_pandas(part, preserve_index=False).select(SCHEMA.names)
        pq.write_table(table.cast(SCHEMA), scores_path(out, str(shard)))
    counts = collect(out, ["shard-0", "00042"], threshold=0.5)
    (out / "errors.jsonl").write_text(
        json.dumps({"key": "\ud800bad\n", "shard": "shard-0", "reason": "\u202e<b>x</b>"}) + "\n"
    )
    summary = {
        "images_scored": counts.images_scored,
        "images_flagged": counts.images_flagged,
        "errors": 1,
        "per_class": counts.per_class,
        "model": "q16-tiny",
        "pretrained": None,
        "random_weights": True,
        "prompt_source": "p|rompt <i>x</i>",
        "threshold": 0.5,
        "shards_total": 2,
        "shards_done": 2,
        "inputs": [str(tar_path)],
    }
    (out / "summary.json").write_text(json.dumps(summary))
    return out


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    out = make_hostile_out_dir(tmp_path)
    write_report(out)
    return out


def _save(review: pd.DataFrame, path: Path) -> None:
    """As a spreadsheet saves CSV: CRLF lines, so a cell holding a lone CR stays quoted."""
    review.to_csv(path, index=False, lineterminator="\r\n")


def _raw_cells(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def _assert_no_formula_cells(path: Path) -> None:
    for row in _raw_cells(path):
        for cell in row:  # a number (class id -1) is a number, not a formula
            assert re.fullmatch(r"-?\d+(\.\d+)?", cell) or not cell.startswith(FORMULA_STARTS), (
                path.name,
                cell,
            )


def test_hostile_text_does_not_break_the_report(hostile: Path) -> None:
    for name in ("report.html", "flagged_classes.png", "datasheet_q16.md", "review.csv"):
        assert (hostile / name).stat().st_size > 0, name
    page = (hostile / "report.html").read_text(encoding="utf-8")
    assert_only_q16_script(page)
    assert "<b>x</b>" not in page and "<script>alert(1)" not in page
    assert "\u202e" not in page and "[U+202E]" in page  # shown, not obeyed
    assert "\x00" not in page and "\x1b" not in page
    assert len(page) < 2_000_000  # a 100 kB class name is shown truncated, not 20 times
    sheet = (hostile / "datasheet_q16.md").read_text(encoding="utf-8")
    assert "<script>" not in sheet and "<i>" not in sheet and "\u202e" not in sheet
    table = [line for line in sheet.splitlines() if line.startswith("| ")]
    assert len(table) > 3
    for line in table:  # exactly four cells: no | from a class name splits one
        assert len(re.findall(r"(?<!\\)\|", line)) == 5, line


def test_keys_stay_strings_with_their_own_thumbnails(hostile: Path) -> None:
    page = (hostile / "report.html").read_text(encoding="utf-8")
    thumbs = dict(
        re.findall(r'<img class="thumb" data-key="([^"]*)" alt="[^"]*" src="([^"]*)"', page)
    )
    assert sorted(thumbs) == sorted(NA_KEYS)
    assert len(set(thumbs.values())) == 4  # four images, not one shown four times
    review = _raw_cells(hostile / "review.csv")
    keys = [row[review[0].index("key")] for row in review[1:]]
    assert {"NA", "null", "None", "nan", "000000123", "7"} <= set(keys)
    run = load_run(hostile)
    assert {*NA_KEYS, "000000123", "", "7"} <= set(run.flagged["key"])
    assert run.flagged["class_name"].isin(["NA"]).any()  # a class called NA is not missing
    assert (run.flagged["class_name"] == UNKNOWN_CLASS).any()


def test_spreadsheet_files_hold_no_formulas_and_review_restores_keys(hostile: Path) -> None:
    _assert_no_formula_cells(hostile / "review.csv")
    _assert_no_formula_cells(hostile / "flagged.csv")
    review = pd.read_csv(hostile / "review.csv", dtype=str, keep_default_na=False)
    review["decision"] = "remove"
    _save(review, hostile / "review.csv")  # quotes kept, as a text editor would
    outcome = apply_review(load_run(hostile), hostile / "review.csv")
    assert outcome.remove == len(review) and outcome.n_keep_keys == 0
    _assert_no_formula_cells(hostile / "keys_remove.csv")
    removed = pd.read_csv(hostile / "keys_remove.csv", dtype=str, keep_default_na=False)
    from q16.spreadsheet import restore

    assert set(map(restore, removed["key"])) == set(NA_KEYS + FORMULA_KEYS + ODD_KEYS + ["7"])
    # a spreadsheet that took the quote as "text" and saved the bare value: same images
    review["key"] = review["key"].str.removeprefix("'")
    review.loc[0, "decision"] = "keep"
    _save(review, hostile / "review.csv")
    outcome = apply_review(load_run(hostile), hostile / "review.csv")
    assert (outcome.keep, outcome.remove, outcome.n_keep_keys) == (1, len(review) - 1, 1)


def test_keys_a_spreadsheet_made_numbers_are_named(hostile: Path) -> None:
    review = pd.read_csv(hostile / "review.csv", dtype=str, keep_default_na=False)
    review["key"] = review["key"].replace({"000000123": "123"})
    _save(review, hostile / "mangled.csv")
    with pytest.raises(Q16Error, match=r"123 is shard-0/000000123 without its leading zeros"):
        apply_review(load_run(hostile), hostile / "mangled.csv")
    review = pd.read_csv(hostile / "review.csv", dtype=str, keep_default_na=False)
    review["shard"] = review["shard"].replace({"00042": "42"})
    _save(review, hostile / "mangled.csv")
    with pytest.raises(Q16Error, match=r"42/7 is 00042/7 without its leading zeros"):
        apply_review(load_run(hostile), hostile / "mangled.csv")


def test_conflicting_decisions_are_listed(hostile: Path) -> None:
    review = pd.read_csv(hostile / "review.csv", dtype=str, keep_default_na=False)
    review = pd.concat([review, review.iloc[[0, 1, 2]]], ignore_index=True)
    n = len(review)
    review["decision"] = ["keep"] * (n - 3) + ["remove", "keep", ""]
    _save(review, hostile / "twice.csv")
    with pytest.raises(
        Q16Error,
        match=rf"conflicting decisions for 1 image\(s\): shard-0/NA "
        rf"\(lines 2, {n - 1}: keep vs remove\)",
    ):
        apply_review(load_run(hostile), hostile / "twice.csv")
    review.loc[n - 3, "decision"] = "keep"  # the same decision twice, or a blank: one image
    _save(review, hostile / "twice.csv")
    outcome = apply_review(load_run(hostile), hostile / "twice.csv")
    assert outcome.reviewed == n - 3 and outcome.keep == n - 3


def test_a_filled_in_review_is_never_overwritten(
    hostile: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    review = pd.read_csv(hostile / "review.csv", dtype=str, keep_default_na=False)
    review.loc[2, "note"] = "checked by A."
    _save(review, hostile / "review.csv")
    with pytest.raises(Q16Error, match="1 filled-in decision/note"):
        write_report(hostile)
    assert "checked by A." in (hostile / "review.csv").read_text()
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "again"  # outside the inputs' folder
    write_report(hostile, report_dir=elsewhere)  # elsewhere is fine
    assert (elsewhere / "review.csv").is_file()


@pytest.mark.parametrize("recorded", [None, 50])
def test_nan_scores_are_never_an_all_clear(tmp_path: Path, recorded: int | None) -> None:
    """Non-finite scores in scores/ (older runs) plus the unscored records of errors.jsonl, or
    summary.json's ``images_unscored`` in their place when the run wrote it."""
    out = make_hostile_out_dir(tmp_path, p=float("nan"))
    if recorded is not None:
        summary = json.loads((out / "summary.json").read_text())
        (out / "summary.json").write_text(json.dumps({**summary, "images_unscored": recorded}))
    write_report(out)
    sheet = (out / "datasheet_q16.md").read_text(encoding="utf-8").replace("**", "")
    page = (out / "report.html").read_text(encoding="utf-8")
    rows = len(NA_KEYS + FORMULA_KEYS + ODD_KEYS) + 1
    expected = rows + (1 if recorded is None else recorded)  # errors.jsonl holds one record
    assert "NO IMAGE WAS SCORED" in sheet and "No image was flagged." not in sheet
    assert f"{expected} images were not scored" in sheet
    assert "We screened 0 images" in sheet
    assert 'id="not-scored"' in page and f"NO IMAGE WAS SCORED: {expected} images" in page


def test_shard_problems_are_stated(tmp_path: Path) -> None:
    out = make_hostile_out_dir(tmp_path)
    with (out / "errors.jsonl").open("a") as handle:
        handle.write(json.dumps({"key": None, "shard": "shard-1", "reason": "cut tar"}) + "\n")
        handle.write("[1, 2]\nnot json\n")  # not records: skipped, not counted
    write_report(out)
    sheet = (out / "datasheet_q16.md").read_text(encoding="utf-8")
    assert "1 of 17 images were NOT scored" in sheet
    assert "1 problem(s) with whole shards" in sheet


@pytest.mark.slow
def test_hostile_report_renders_in_headless_chromium(hostile: Path, tmp_path: Path) -> None:
    import shutil
    import subprocess

    browser = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    if browser is None:
        pytest.skip("no chromium on PATH (make browser installs the Debian package as root)")
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            (hostile / "report.html").resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    ).stdout
    assert dom.count('class="thumb"') == len(NA_KEYS) and 'id="not-scored"' in dom
    assert dom.lower().count("<script") == 1 and "<i>" not in dom  # text stayed text


def test_dataset_fields_carried_with_scores_are_hostile_text_too(tmp_path: Path) -> None:
    """``meta_*`` columns (captions, urls from the dataset) obey the same rules as class names:
    any text, one escaped line on the page, formula-safe and round-tripped in review.csv."""
    from q16.spreadsheet import read_text_csv, write_text_csv

    out = make_hostile_out_dir(tmp_path)
    flagged = read_text_csv(out / "flagged.csv", restore_cells=["key", "shard"])
    captions = [HOSTILE_CLASSES[i % len(HOSTILE_CLASSES)] for i in range(len(flagged))]
    flagged["meta_caption"] = captions
    write_text_csv(flagged, out / "flagged.csv", ["key", "shard", "meta_caption"])
    files = write_report(out)
    review = read_text_csv(files.review, restore_cells=["key", "shard", "meta_caption"])
    assert review["meta_caption"].tolist() == load_run(out).flagged["meta_caption"].tolist()
    assert set(review["meta_caption"]) == set(captions)
    _assert_no_formula_cells(files.review)
    page = files.html.read_text()
    assert_only_q16_script(page)
    assert "\u202e" not in page and "\x1b" not in page
    assert "caption line one line two" in page  # a multi-line caption shown on one line


DECIDE_IN_PAGE = """(() => {
  const items = [...document.querySelectorAll('.item[data-image]')];
  const choices = ['remove', 'keep', 'unsure', 'remove'];
  const removed = [];
  items.forEach((item, i) => {
    const choice = choices[i % choices.length];
    item.querySelector(`button[data-choice="${choice}"]`).click();
    if (i === 2) { item.querySelector(`button[data-choice="${choice}"]`).click(); }  // cleared
    else if (choice === 'remove') { removed.push(JSON.parse(item.dataset.image).slice(0, 2)); }
  });
  const note = items[1].querySelector('input.note-input');
  note.value = '=HYPERLINK("http://evil.example","x") "quoted", and a\\nnew line';
  note.dispatchEvent(new Event('input'));
  return {removed, progress: document.getElementById('review-progress').textContent,
          scripts: document.scripts.length, items: items.length};
})()"""


@pytest.mark.slow
def test_decisions_taken_in_the_page_are_applied(
    hostile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """From the file:// page in headless Chromium: decide, save (Blob + <a download>), apply.
    Every hostile key (formula starts, NA, CR, LF, tab, RLO, empty) comes back exact."""
    from helpers.cdp_pipe import Browser, chromium, wait_for_file
    from q16 import cli
    from q16.report.decide import SAVED_NAME
    from q16.spreadsheet import read_text_csv

    executable = chromium()
    if executable is None:
        pytest.skip("no chromium on PATH (make browser installs the Debian package as root)")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = Browser(executable, tmp_path / "profile")
    try:
        browser.download_to(downloads)
        browser.open((hostile / "report.html").resolve().as_uri())
        state = browser.evaluate(DECIDE_IN_PAGE)
        browser.evaluate("document.getElementById('review-save').click()")
        saved = wait_for_file(downloads, SAVED_NAME)
        # negative control: a script that is not q16's own does not run (the page's CSP)
        tampered = tmp_path / "tampered.html"
        page = (hostile / "report.html").read_text(encoding="utf-8")
        injected = '<script>document.title = "ran"</script><img src=x onerror="document.title=1">'
        tampered.write_text(page.replace("</body>", injected + "</body>"), encoding="utf-8")
        browser.open(tampered.as_uri())
        assert (
            browser.evaluate("document.title") != "ran"
            and browser.evaluate("document.getElementById('review-progress').textContent")
            == f"0 of {state['items']} decided"
        )
        assert browser.evaluate("document.title") not in ("ran", "1")
    finally:
        browser.close()
    n = len(load_run(hostile).flagged)
    assert state["items"] == n and state["scripts"] == 1  # the page's one script ran
    decided = n - 1  # item 2 was clicked twice: cleared
    assert state["progress"] == f"{decided} of {n} decided"
    _assert_no_formula_cells(saved)
    sheet = read_text_csv(saved)
    assert "HYPERLINK" in sheet["note"][1] and (sheet["shard_version"].str.len() == 16).all()
    cli.main(["apply", str(hostile), str(saved)])
    assert "-> " in capsys.readouterr().out
    removed = read_text_csv(hostile / "keys_remove.csv", restore_cells=["shard", "key"])
    expected = sorted(map(tuple, state["removed"]))
    assert sorted(zip(removed["shard"], removed["key"], strict=True)) == expected
    assert len(expected) >= 3 and not list(downloads.glob("keys_*"))  # not into Downloads
