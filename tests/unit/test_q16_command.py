"""``q16 report|audit|apply|next``: each subcommand takes only its own options (one that does
not apply is refused, never ignored) and its ``--help`` says what it writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from q16 import cli

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "OUT", "--seed", "1"],
        ["report", "OUT", "-n", "5"],
        ["report", "OUT", "--keys-dir", "k"],
        ["audit", "OUT"],  # -n is required: an audit of how many?
        ["audit", "OUT", "-n", "5", "--keys-dir", "k"],
        ["apply", "OUT", "r.csv", "--max-images", "3"],
        ["apply", "OUT", "r.csv", "--report-dir", "x"],
        ["apply", "OUT", "r.csv", "--seed", "0"],
        ["apply", "OUT"],
        ["next", "OUT", "-n", "5", "--report-dir", "x"],
        ["next", "OUT", "-n", "5", "--strata", "2"],
        ["next", "OUT", "-n", "five"],
        ["OUT"],  # the old form: a subcommand is required
        ["report", "OUT", "--apply-review", "r.csv"],  # old mode flags are not options
    ],
)
def test_options_that_do_not_apply_are_refused(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    assert "usage: q16" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "writes"),
    [
        ("report", ["report.html", "flagged_classes.png", "datasheet_q16.md", "review.csv"]),
        ("audit", ["review.csv", "audit.json", "report.html"]),
        ("apply", ["keys_remove.csv", "keys_keep.csv", "estimates.json", "datasheet_q16.md"]),
        ("next", ["review_next.csv"]),
    ],
)
def test_help_says_what_each_command_writes(command: str, writes: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main([command, "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in writes), text


def test_seed_means_one_thing_per_command(capsys) -> None:
    helps = {}
    for command in ("audit", "next"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        helps[command] = " ".join(capsys.readouterr().out.split())
    assert "the sample's random seed" in helps["audit"]
    assert "random draws and ties" in helps["next"]


def test_console_script_is_declared() -> None:
    text = (REPO / "pyproject.toml").read_text()  # tomllib is 3.11+; q16 supports 3.10
    scripts = text.split("[project.scripts]\n", 1)[1].split("\n[", 1)[0]
    assert 'q16 = "q16.cli:main"' in scripts.splitlines()


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "OUT", "--max-images", "-1"],
        ["report", "OUT", "--max-images", "0"],
        ["audit", "OUT", "-n", "0"],
        ["audit", "OUT", "-n", "5", "--strata", "-2"],
        ["audit", "OUT", "-n", "5", "--seed", "-1"],
        ["next", "OUT", "-n", "-3"],
        ["remove", "OUT", "--keys", "k.txt", "--pdq", "-1"],
        ["remove", "OUT", "--keys", "k.txt", "--cosine", "1.5"],
    ],
)
def test_counts_and_thresholds_out_of_range_are_one_line(argv: list[str], capsys) -> None:
    """``--max-images -1`` would drop the lowest row from a page that says "the top N"."""
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("q16 ")


def test_next_help_names_the_files_it_writes(tmp_path: Path, capsys) -> None:
    from q16.review.next_batch import NEXT_FILE, next_free_sheet

    (tmp_path / NEXT_FILE).write_text("taken")
    second = next_free_sheet(tmp_path).name
    with pytest.raises(SystemExit):
        cli.main(["next", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert NEXT_FILE in text and second in text, text


def test_a_folder_that_is_not_an_out_dir_is_left_as_it_was(tmp_path: Path, capsys) -> None:
    """A mistyped ``q16 report ~/Documents`` leaves no lock file that would mark the folder
    as q16's (and so open it to --report-dir and --keys-dir)."""
    from q16.errors import Q16Error
    from q16.folders import check_folder

    documents = tmp_path / "Documents"
    documents.mkdir()
    (documents / "notes.txt").write_text("mine")
    (documents / "review.csv").write_text("decision,key\nremove,a\n")
    for argv in (
        ["report", str(documents)],
        ["audit", str(documents), "-n", "3"],
        ["apply", str(documents), str(documents / "review.csv")],
        ["next", str(documents), "-n", "2"],
        ["release", str(documents), str(tmp_path / "dest")],
        ["remove", str(documents), "--keys", str(documents / "notes.txt")],
    ):
        with pytest.raises(SystemExit) as stop:
            cli.main(argv)
        assert stop.value.code == 2, argv
        capsys.readouterr()
    assert sorted(p.name for p in documents.iterdir()) == ["notes.txt", "review.csv"]
    with pytest.raises(Q16Error, match="did not make"):
        check_folder(documents, [], "--report-dir")
