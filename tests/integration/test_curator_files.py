"""A curator's files are sacred: what a spreadsheet saves is read back (or refused with "save it
as CSV UTF-8"), a sheet that may hold decisions is never replaced, an audit's design and
estimates are never deleted, the report's folders follow out_dir's rule, and the commands hold
OUT's lock and write atomically."""

from __future__ import annotations

import codecs
import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_report import make_out_dir

from q16 import cli
from q16.errors import Q16Error
from q16.folders import folder_lock
from q16.report import apply_review_files, write_report
from q16.spreadsheet import SAVE_AS, read_text_csv

DECISIONS = ["remove", "keep", "Remove ", "unsure", ""]  # the five flagged images, in order
NOTE = "café – naïve “quoted”"  # every character is in Windows-1252


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run and its report (its inputs, a tar and a folder, beside it); tests get a copy."""
    out = make_out_dir(tmp_path_factory.mktemp("curator"))
    write_report(out)
    return out


@pytest.fixture
def run(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "infer_out"))


def _filled(out: Path) -> pd.DataFrame:
    review = read_text_csv(out / "review.csv")
    review["decision"] = DECISIONS
    review.loc[1, "note"] = NOTE
    return review


def _save(frame: pd.DataFrame, path: Path, codec: str, separator: str, bom: bytes = b"") -> Path:
    """As a spreadsheet saves it: its encoding, separator, CRLF, and quotes around text."""
    text = frame.to_csv(index=False, sep=separator, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    path.write_bytes(bom + text.encode(codec))
    return path


SAVED_FORMS = [
    ("utf-8", ",", b""),
    ("utf-8", ";", codecs.BOM_UTF8),  # Excel "CSV UTF-8" in a decimal-comma locale
    ("utf-8", ",", codecs.BOM_UTF8),  # BOM, and the first header cell quoted
    ("cp1252", ";", b""),  # Excel "CSV" on Windows in a decimal-comma locale
    ("cp1252", ",", b""),
    ("utf-16-le", "\t", codecs.BOM_UTF16_LE),  # Excel "Unicode text"
    ("utf-16-le", ",", codecs.BOM_UTF16_LE),
    ("utf-16-be", ";", codecs.BOM_UTF16_BE),
    ("utf-32-le", ",", codecs.BOM_UTF32_LE),
]


@pytest.mark.parametrize(("codec", "separator", "bom"), SAVED_FORMS)
def test_what_a_spreadsheet_saves_comes_back(
    run: Path, tmp_path: Path, codec: str, separator: str, bom: bytes
) -> None:
    sheet = _save(_filled(run), run / "review.csv", codec, separator, bom)
    before = sheet.read_bytes()
    outcome = apply_review_files(run, sheet)
    assert (outcome.remove, outcome.keep, outcome.unsure, outcome.undecided) == (2, 1, 1, 1)
    removed = read_text_csv(run / "keys_remove.csv")
    assert removed["key"].tolist() == ["000000", "000002"]
    # a report never replaces it: it holds decisions, and is not stored as q16 writes
    with pytest.raises(Q16Error, match=r"holds 5 filled-in|not a blank sheet as q16 writes"):
        write_report(run)
    assert sheet.read_bytes() == before


@pytest.mark.parametrize(
    ("codec", "separator", "bom"), [f for f in SAVED_FORMS if f[1:] != (",", b"")]
)
def test_a_blank_sheet_a_spreadsheet_saved_is_not_replaced(
    run: Path, codec: str, separator: str, bom: bytes
) -> None:
    """Not provably q16's own: refused too (the curator may have meant something by it). An
    ASCII sheet with commas is byte for byte what q16 writes, whatever the encoding chosen."""
    sheet = _save(read_text_csv(run / "review.csv"), run / "review.csv", codec, separator, bom)
    before = sheet.read_bytes()
    with pytest.raises(Q16Error, match="not a blank sheet as q16 writes it"):
        write_report(run)
    assert sheet.read_bytes() == before


def test_q16s_own_blank_sheet_is_replaced(run: Path) -> None:
    before = (run / "review.csv").read_bytes()
    write_report(run)
    assert (run / "review.csv").read_bytes() == before


@pytest.mark.parametrize(
    "content",
    [
        b"\x81\x8d\x8f\x90\x9d not text in any encoding a spreadsheet writes",
        "decision,shard,key\r\nremove,shard-000000,000000\r\n".encode("utf-16-le"),  # no BOM
        codecs.BOM_UTF8 + b"\xff\xfe broken after the mark",
        b"PK\x03\x04 an .xlsx saved under the csv name",
    ],
)
def test_unreadable_sheets_are_refused_not_replaced(run: Path, content: bytes) -> None:
    sheet = run / "review.csv"
    sheet.write_bytes(content)
    with pytest.raises(Q16Error) as err:
        apply_review_files(run, sheet)
    message = str(err.value)
    assert "\n" not in message and SAVE_AS in message
    with pytest.raises(Q16Error, match=r"may hold decisions|not a blank sheet") as err:
        write_report(run)
    assert "\n" not in str(err.value) and sheet.read_bytes() == content


@pytest.mark.parametrize("what", ["a folder", "a column of the curator's"])
def test_other_things_at_the_sheet_path_are_not_replaced(run: Path, what: str) -> None:
    sheet = run / "review.csv"
    if what == "a folder":
        sheet.unlink()
        sheet.mkdir()
    else:
        review = read_text_csv(sheet)
        review["my verdict"] = ""
        review.to_csv(sheet, index=False)
    with pytest.raises(Q16Error, match=r"not a file|column\(s\) q16 does not write"):
        write_report(run)


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("1.23457E+11", "1.23457E+11"),  # a 12-digit key, as Excel shows and saves it
        ("1,23457E+11", "1,23457E+11"),  # the same in a decimal-comma locale
        ("2.0", "2.0"),  # an integer key turned into a float
        ("2", "2 is shard-000000/000002 without its leading zeros"),
    ],
)
def test_keys_turned_into_numbers_are_said_so(run: Path, key: str, shown: str) -> None:
    review = _filled(run)
    review.loc[2, "key"] = key
    sheet = _save(review, run / "review.csv", "utf-8", ",")
    with pytest.raises(Q16Error) as err:
        apply_review_files(run, sheet)
    message = str(err.value)
    assert "turned into numbers" in message and shown in message, message
    assert "another run" not in message


def test_a_plain_report_keeps_the_audit_and_its_estimates(run: Path) -> None:
    """The filled audit renamed, a plain report, then the audit applied: its design is there;
    a new audit would replace it, so it is refused while that sheet holds decisions."""
    (run / "review.csv").unlink()
    write_report(run, audit=6, seed=1)
    design = (run / "audit.json").read_bytes()
    audit = read_text_csv(run / "review.csv")
    audit["decision"] = ["remove", "keep"] * (len(audit) // 2) + ["keep"] * (len(audit) % 2)
    audit.to_csv(run / "audit_done.csv", index=False)
    (run / "review.csv").unlink()
    write_report(run)  # the flagged review again
    assert (run / "audit.json").read_bytes() == design
    outcome = apply_review_files(run, run / "audit_done.csv")
    assert outcome.estimates is not None and (run / "estimates.json").is_file()
    estimates = (run / "estimates.json").read_bytes()
    write_report(run)
    assert (run / "audit.json").read_bytes() == design
    assert (run / "estimates.json").read_bytes() == estimates
    with pytest.raises(Q16Error, match=r"audit_done\.csv may hold decisions"):
        write_report(run, audit=6, seed=2)
    assert (run / "audit.json").read_bytes() == design
    # the flagged review (no stratum column) is applied as a review, whatever lies beside it
    assert apply_review_files(run, run / "review.csv").estimates is None


def _folders(run: Path, inputs: Path) -> dict[str, Path]:
    user = run.parent / "my-documents"
    user.mkdir()
    (user / "thesis.docx").write_text("years of work")
    (run.parent / "a-file").write_text("x")
    return {
        "a user's folder": user,
        "a file": run.parent / "a-file",
        "inside the scored folder": inputs / "folder" / "report",
        "holding the inputs": inputs,
    }


def _snapshot(path: Path) -> object:
    if path.is_file():
        return path.read_bytes()
    return sorted((str(p), p.stat().st_size) for p in path.rglob("*")) if path.is_dir() else None


@pytest.mark.parametrize(
    "which", ["a user's folder", "a file", "inside the scored folder", "holding the inputs"]
)
@pytest.mark.parametrize("option", ["--report-dir", "--keys-dir"])
def test_report_and_keys_folders_follow_out_dirs_rule(
    run: Path, pristine: Path, which: str, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _folders(run, pristine.parent)[which]
    before = _snapshot(folder)
    if option == "--report-dir":
        argv = ["report", str(run), option, str(folder)]
    else:
        _filled(run).to_csv(run / "review.csv", index=False)
        argv = ["apply", str(run), str(run / "review.csv"), option, str(folder)]
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and option in err, err
    assert _snapshot(folder) == before  # nothing written there
    assert (run.parent / "my-documents" / "thesis.docx").read_text() == "years of work"


@pytest.mark.parametrize("option", ["--report-dir", "--keys-dir"])
def test_an_unwritable_folder_is_one_line(
    run: Path, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = "/proc/q16-cannot-write-here"  # read-only for root too
    _filled(run).to_csv(run / "review.csv", index=False)
    argv = (
        ["report", str(run), option, target]
        if option == "--report-dir"
        else ["apply", str(run), str(run / "review.csv"), option, target]
    )
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err, err


def test_a_new_report_folder_is_marked_and_reused(run: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "report"
    write_report(run, report_dir=elsewhere)
    assert (elsewhere / "report.html").is_file() and (elsewhere / ".q16.lock").is_file()
    write_report(run, report_dir=elsewhere)  # q16's own folder now


@pytest.mark.parametrize("command", ["report", "audit", "apply", "next"])
def test_commands_hold_the_out_dirs_lock(
    run: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = {"audit": ["-n", "4"], "apply": [str(run / "review.csv")], "next": ["-n", "2"]}
    with folder_lock(run, "infer.out_dir"), pytest.raises(SystemExit) as stop:
        cli.main([command, str(run), *extra.get(command, [])])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "in use by another q16 run or command" in err
    assert not (run / "keys_remove.csv").exists()


def test_a_failed_write_leaves_the_last_report_whole(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from q16.report import datasheet, page

    write_report(run)  # this copy's own report (the page names its out_dir)
    files = {name: (run / name).read_bytes() for name in ("report.html", "datasheet_q16.md")}

    def cut(*args: object, **kwargs: object) -> str:
        raise OSError(28, "No space left on device")

    for module, name in ((page, "render_page"), (datasheet, "datasheet_markdown")):
        with monkeypatch.context() as patch:
            patch.setattr(module, name, cut)
            with pytest.raises(OSError):
                write_report(run)
    assert {name: (run / name).read_bytes() for name in files} == files
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("length", [131_073, 1_000_000])
def test_no_field_length_blocks_the_report(tmp_path: Path, length: int) -> None:
    """A caption (or any field) longer than the csv module's 131,072-character limit."""
    out = make_out_dir(tmp_path)
    flagged = read_text_csv(out / "flagged.csv")
    flagged["meta_caption"] = ["c" * length] + [""] * (len(flagged) - 1)
    flagged.to_csv(out / "flagged.csv", index=False)
    files = write_report(out)
    review = read_text_csv(files.review)
    assert len(review["meta_caption"][0]) == length
    review["decision"] = DECISIONS
    review.to_csv(files.review, index=False)
    assert apply_review_files(out, files.review).remove == 2


def test_keys_go_into_a_new_folder_or_beside_a_q16_sheet(run: Path, tmp_path: Path) -> None:
    """--keys-dir: a new folder, marked as q16's; without it, beside the sheet only when that
    folder is q16's (a sheet saved in a downloads folder puts nothing there)."""
    keys = tmp_path / "keys"
    _filled(run).to_csv(run / "review.csv", index=False)
    apply_review_files(run, run / "review.csv", keys)
    assert (keys / "keys_remove.csv").is_file() and (keys / ".q16.lock").is_file()
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    (downloads / "holiday.jpg").write_bytes(b"mine")
    shutil.copy(run / "review.csv", downloads / "review.csv")
    (run / "keys_remove.csv").unlink(missing_ok=True)
    apply_review_files(run, downloads / "review.csv")
    assert sorted(p.name for p in downloads.iterdir()) == ["holiday.jpg", "review.csv"]
    assert (run / "keys_remove.csv").is_file()


def test_a_failed_write_is_one_line(
    run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from q16.report import page

    def full(*args: object, **kwargs: object) -> str:
        raise OSError(28, "No space left on device", str(run / "report.html"))

    monkeypatch.setattr(page, "render_page", full)
    with pytest.raises(SystemExit) as stop:
        cli.main(["report", str(run)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1
    assert "No space left on device" in err and "report.html" in err


@pytest.mark.parametrize("edit", ["appended", "changed", "mark removed", "not q16's"])
def test_an_edited_datasheet_draft_is_never_replaced(run: Path, edit: str) -> None:
    """The curator writes the answer in datasheet_q16.md: q16 rewrites its own draft only."""
    draft = run / "datasheet_q16.md"
    write_report(run)  # an unedited draft is q16's to rewrite
    text = draft.read_text(encoding="utf-8")
    edited = {
        "appended": text + "\nOur answer: we removed 12 images.\n",
        "changed": text.replace("humans decide", "we decided", 1),
        "mark removed": text.rsplit("<!-- q16 draft", 1)[0],
        "not q16's": "# Datasheet\n\nWritten by hand.\n",
    }[edit]
    assert edited != text
    draft.write_text(edited, encoding="utf-8")
    with pytest.raises(Q16Error, match="was edited since q16 wrote it"):
        write_report(run)
    (run / "review.csv").unlink()
    with pytest.raises(Q16Error, match="was edited since q16 wrote it"):
        write_report(run, audit=6)
    assert draft.read_text(encoding="utf-8") == edited
    write_report(run, report_dir=run.parent / "fresh")  # elsewhere: a new draft
    assert (run.parent / "fresh" / "datasheet_q16.md").read_text(encoding="utf-8") != edited


def test_a_report_dir_beside_class_folders_is_inside_the_inputs(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ImageNet-style ``data.path=/d/imgs`` with images in ``/d/imgs/cat/``: the run's
    recorded input keeps ``/d/imgs/report`` out (its flagged_classes.png would be scored next)."""
    import json

    import pyarrow.parquet as pq

    imgs = tmp_path / "imgs"
    (imgs / "cat").mkdir(parents=True)
    scores = run / "scores" / "folder-0.parquet"
    table = pq.read_table(scores).to_pandas()
    image = imgs / "cat" / "a.png"
    shutil.copy(table["source"][0], image)
    table["source"] = str(image)
    table.to_parquet(scores, index=False)
    summary = json.loads((run / "summary.json").read_text())
    summary["inputs"] = [summary["inputs"][0], str(imgs)]
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(SystemExit) as stop:
        cli.main(["report", str(run), "--report-dir", str(imgs / "report")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "inside the input folder" in err, err
    assert sorted(p.name for p in imgs.iterdir()) == ["cat"]


def test_the_report_checks_its_folder_under_the_lock(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Check, then write, under one lock: no other command writes a decided sheet between."""
    import fcntl
    import os

    from q16.review import sheet

    folder = tmp_path / "report"
    held = []
    check = sheet.check_replaceable

    def checking(path: Path) -> None:
        fd = os.open(folder / ".q16.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.append(False)
        except BlockingIOError:
            held.append(True)
        finally:
            os.close(fd)
        check(path)

    write_report(run, report_dir=folder)  # the folder is q16's now
    monkeypatch.setattr(sheet, "check_replaceable", checking)
    write_report(run, report_dir=folder)
    assert held == [True]


def test_a_new_audit_reads_only_the_header_of_each_csv(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Key lists of 10^8 rows beside the audit are not parsed to learn their columns, and a
    FIFO named ``*.csv`` is skipped, not waited on for ever."""
    import os
    import signal

    from q16 import spreadsheet

    (run / "review.csv").unlink()
    write_report(run, audit=6, seed=1)
    (run / "keys_keep.csv").write_text("shard,key\r\n" + "s,k\r\n" * 1000)
    os.mkfifo(run / "pipe.csv")
    parsed: list[str] = []
    whole = spreadsheet.read_sheet

    def read_sheet(path: Path, *args: object, **kwargs: object) -> object:
        parsed.append(Path(path).name)
        return whole(path, *args, **kwargs)  # type: ignore[arg-type]

    def hang(*_: object) -> None:
        raise AssertionError("waited on the FIFO")

    monkeypatch.setattr(spreadsheet, "read_sheet", read_sheet)
    monkeypatch.setattr("q16.review.sheet.read_sheet", read_sheet)
    signal.signal(signal.SIGALRM, hang)
    signal.alarm(30)
    try:
        write_report(run, audit=6, seed=2)
    finally:
        signal.alarm(0)
    assert "keys_keep.csv" not in parsed and "pipe.csv" not in parsed, parsed


def test_a_header_is_read_as_the_sheet_reader_reads_it(tmp_path: Path) -> None:
    from q16.spreadsheet import HEADER_BYTES, read_header, read_sheet

    for codec, separator, bom in SAVED_FORMS:
        frame = pd.DataFrame({"decision": ["x" * 300] * 5000, "stratum": ["1"] * 5000})
        path = _save(frame, tmp_path / "s.csv", codec, separator, bom)
        assert path.stat().st_size > HEADER_BYTES  # the header is read from a cut prefix
        expected = [str(c) for c in read_sheet(path, ["decision"]).frame.columns]
        assert read_header(path, ["decision"]) == expected == ["decision", "stratum"], codec
