"""Every input file is bounded: concept sets, class lists, thresholds and prompt files are
refused in one short line when too large, too many or built from YAML aliases; so are review
sheets, and files that are not regular (a FIFO, /dev/zero) are refused, never read; an out_dir
q16 cannot write is one line too."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.errors import one_line
from q16 import spreadsheet
from q16.errors import MAX_MESSAGE, Q16Error
from q16.fileio import FileTooLarge, read_regular
from q16.models.concepts import MAX_CATEGORIES, MAX_TOTAL_PHRASES, read_concept_set
from q16.models.prompt_io import MAX_PROMPT_BYTES, load_prompt
from q16.models.prompt_threshold import threshold_from_json
from q16.review.sheet import read_review
from q16.sources.classnames import load_class_names
from q16.userfiles import read_user_text

LAUGHS = "\n".join(
    ["neutral: [a photo]", "lol: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    + ["categories: {boom: *l8}"]
)


def _refused(path: Path, expected: str) -> str:
    started = time.perf_counter()
    with pytest.raises(Q16Error) as err:
        read_concept_set(path)
    assert time.perf_counter() - started < 30  # never walks the expansion (not a speed claim)
    message = one_line(err, expected)
    assert len(message) <= MAX_MESSAGE
    return message


def test_billion_laughs_concept_set_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    assert path.stat().st_size < 1000
    _refused(path, "are not accepted")


@pytest.mark.parametrize(
    "text",
    [
        "neutral: &n [a photo]\ncategories: {x: *n}",  # one alias is already refused
        "neutral: [a]\ncategories: {x: &p [b], y: *p}",
        "base: &b {neutral: [a]}\n<<: *b\ncategories: {x: [c]}",  # merge keys are aliases
    ],
)
def test_any_alias_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    _refused(path, "not accepted")


def test_too_many_categories_or_phrases_are_refused(tmp_path: Path) -> None:
    many = tmp_path / "many.yaml"
    lines = [f"  c{i}: [phrase {i}]" for i in range(MAX_CATEGORIES + 1)]
    many.write_text("neutral: [a photo]\ncategories:\n" + "\n".join(lines))
    _refused(many, f"at most {MAX_CATEGORIES}")
    total = tmp_path / "total.yaml"
    per = MAX_TOTAL_PHRASES // 20 + 1  # under the per-category cap, over the total
    cats = [f"  c{i}: [{', '.join(f'p{i}_{j}' for j in range(per))}]" for i in range(20)]
    total.write_text("neutral: [a photo]\ncategories:\n" + "\n".join(cats))
    _refused(total, "phrases in all")


def test_a_huge_name_makes_a_short_message(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text("neutral: [a]\ncategories:\n  x:\n    - [" + "y, " * 30_000 + "z]\n")
    message = _refused(path, "every phrase must be text")
    assert "[...]" in message


@pytest.mark.parametrize("content", [b"\xff\xfe\x00not text", b"neutral: [\x80]"])
def test_a_concept_set_that_is_not_text_is_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(content)
    _refused(path, "UTF-8")


def test_oversized_files_are_refused_before_reading(tmp_path: Path) -> None:
    """Sparse files: their size is what counts, not a byte is read."""
    concept = tmp_path / "big.yaml"
    with concept.open("wb") as f:
        f.truncate(11_000_000)
    _refused(concept, "bytes, over the")
    classes = tmp_path / "classes.json"
    with classes.open("wb") as f:
        f.truncate(11_000_000)
    with pytest.raises(Q16Error) as err:
        load_class_names(classes)
    one_line(err, "class list")
    thresholds = tmp_path / "thresholds.json"
    with thresholds.open("wb") as f:
        f.truncate(11_000_000)
    with pytest.raises(Q16Error) as err:
        threshold_from_json(thresholds)
    one_line(err, "thresholds.json")
    for suffix in (".safetensors", ".npy", ".p"):
        prompt = tmp_path / f"big{suffix}"
        with prompt.open("wb") as f:
            f.truncate(MAX_PROMPT_BYTES + 1)
        with pytest.raises(Q16Error) as err:
            load_prompt(prompt)
        one_line(err, "prompt file may have")


def test_a_billion_laughs_head_is_one_line_at_the_cli_edge(make_cfg, tmp_path: Path) -> None:
    from conftest import infer_overrides
    from q16 import infer

    concepts = tmp_path / "laughs.yaml"
    concepts.write_text(LAUGHS)
    shards = tmp_path / "imgs" / "c"
    shards.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (16, 16)).save(shards / "a.png")
    cfg = make_cfg(
        *infer_overrides(tmp_path / "out", "data=folder", f"data.path={shards.parent}"),
        f"heads=[{{name: boom, prompt: {concepts}}}]",
        config_name="infer",
    )
    with pytest.raises(Q16Error) as err:
        infer.run(cfg)
    one_line(err, "not accepted")


def test_messages_are_one_short_line() -> None:
    message = str(Q16Error("first\nsecond\r\n" + "x" * 10_000))
    assert "\n" not in message and "\r" not in message and len(message) <= MAX_MESSAGE
    assert message.startswith("first\\nsecond") and message.endswith("x")


@pytest.mark.parametrize("where", ["under_a_file", "read_only", "name_too_long"])
def test_an_out_dir_q16_cannot_write_is_one_line(make_cfg, tmp_path: Path, where: str) -> None:
    from conftest import infer_overrides
    from q16 import infer

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = {
        "under_a_file": blocker / "out",
        "read_only": Path("/proc/q16-out"),  # not writable even as root
        "name_too_long": tmp_path / ("n" * 300),
    }[where]
    shards = tmp_path / "imgs" / "c"
    shards.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (16, 16)).save(shards / "a.png")
    cfg = make_cfg(
        *infer_overrides(out, "data=folder", f"data.path={shards.parent}"), config_name="infer"
    )
    with pytest.raises(Q16Error) as err:
        infer.run(cfg)
    one_line(err, "infer.out_dir")


def _refused_without_blocking(fifo: Path, read: Callable[[], object]) -> BaseException:
    """``read()``'s exception; fails (after unblocking it) when it blocks on the FIFO."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            read()
            outcome.append(None)
        except BaseException as err:  # handed to the test
            outcome.append(err)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():  # a writer that closes at once: the blocked open/read returns
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(20)
        pytest.fail("reading a FIFO blocked instead of being refused")
    assert outcome and outcome[0] is not None, "a FIFO was read as an empty file"
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("kind", ["class list", "review sheet"])
def test_a_fifo_is_refused_not_read(tmp_path: Path, kind: str) -> None:
    """A FIFO reports size 0: judged by size alone it was opened and read, and blocked."""
    fifo = tmp_path / ("names.txt" if kind == "class list" else "review.csv")
    os.mkfifo(fifo)
    if kind == "class list":
        error = _refused_without_blocking(fifo, lambda: read_user_text(fifo, kind))
    else:
        error = _refused_without_blocking(fifo, lambda: read_review(fifo))
    assert isinstance(error, Q16Error), repr(error)
    assert "not a regular file (FIFO)" in str(error) and "\n" not in str(error)


def test_dev_zero_is_refused_not_read(tmp_path: Path) -> None:
    link = tmp_path / "thresholds.json"
    link.symlink_to("/dev/zero")
    with pytest.raises(Q16Error) as err:
        read_user_text(link, "thresholds.json")
    one_line(err, "not a regular file (character device)")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc")
def test_a_file_that_says_size_0_is_read_only_up_to_the_bound() -> None:
    """/proc files say st_size 0 and hold more: never more than the bound + 1 bytes are read."""
    status = Path("/proc/self/status")
    assert status.stat().st_size == 0 and len(status.read_bytes()) > 64
    with pytest.raises(Q16Error) as err:
        read_user_text(status, "class list", max_bytes=64)
    one_line(err, "over the 64 a class list may have")
    with pytest.raises(FileTooLarge):
        read_regular(status, 64)


def test_a_review_sheet_over_the_cap_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sheet = tmp_path / "review.csv"
    sheet.write_text("decision,key,shard\n" + "keep,k,s\n" * 200)
    assert len(read_review(sheet)) == 200
    monkeypatch.setattr(spreadsheet, "MAX_SHEET_BYTES", 1000)
    with pytest.raises(Q16Error) as err:
        read_review(sheet)
    one_line(err, f"{sheet.stat().st_size:,} bytes, over the 1,000 a review sheet may have")
