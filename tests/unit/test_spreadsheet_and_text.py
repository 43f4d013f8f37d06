"""Cells safe in spreadsheets and restored exactly; dataset text safe to show anywhere."""

from __future__ import annotations

import base64
import io
import random

import pandas as pd
import pytest
from PIL import Image

from q16.report.thumbnails import thumbnail_uri
from q16.spreadsheet import (
    FORMULA_STARTS,
    neutralise,
    read_text_csv,
    restore,
    write_text_csv,
)
from q16.text import clean, html_text, md_cell, plot_label

SAMPLES = [
    "",
    "plain",
    "=1+1",
    '=HYPERLINK("http://x","y")',
    "+SUM(1+1)",
    "-2",
    "@SUM(1)",
    "\tx",
    "\rx",
    "'",
    "''=",
    "'=1",
    "a=b",
    "NA",
    "000123",
    "a\nb",
    "c\r\n",
    '"quoted"',
    "x,y",
]


def _random_strings(n: int) -> list[str]:
    rng = random.Random(0)
    alphabet = "=+-@'\t\r\n ab0|\u202e中"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(n)]


@pytest.mark.parametrize("text", SAMPLES + _random_strings(300))
def test_neutralise_is_safe_and_restore_undoes_it(text: str) -> None:
    cell = neutralise(text)
    assert not cell.startswith(FORMULA_STARTS)
    assert restore(cell) == text


def test_csv_round_trip_keeps_exact_strings(tmp_path) -> None:
    frame = pd.DataFrame({"key": SAMPLES, "class_id": range(-1, len(SAMPLES) - 1)})
    write_text_csv(frame, tmp_path / "x.csv")
    back = read_text_csv(tmp_path / "x.csv", restore_cells=["key"])
    assert back["key"].tolist() == SAMPLES
    assert back["class_id"].iloc[0] == "-1"  # numbers are not quoted


def test_clean_gives_one_printable_line() -> None:
    assert clean("a\nb\r\tc") == "a b  c"
    assert clean("\u202eexe.jpg") == "[U+202E]exe.jpg"
    assert clean("\x00\x1b\ud800") == "\ufffd\ufffd\ufffd"
    assert clean("x" * 1000, limit=10) == "x" * 10 + "…"
    assert clean("中文 😀") == "中文 😀" and clean(None) == ""


def test_destination_escapes() -> None:
    assert html_text('<b a="1">') == "&lt;b a=&quot;1&quot;&gt;"
    assert md_cell("a|b <i>[x](y)</i>") == r"a\|b \<i\>\[x\](y)\</i\>"
    assert plot_label("$x^2$") == r"\$x^2\$"


def test_thumbnail_is_turned_as_a_viewer_shows_it() -> None:
    image = Image.new("RGB", (60, 20), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    uri = thumbnail_uri(buffer.getvalue(), size=30)
    assert uri is not None
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as thumb:
        assert thumb.size == (10, 30)  # portrait, as shown, not the stored landscape


def test_undecodable_thumbnail_is_none() -> None:
    assert thumbnail_uri(b"\xff\xd8\xff garbage") is None
