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
