"""Audit end to end: infer over a synthetic SMID folder, an audit sample, a scripted review
(the synthetic labels stand in for a person), q16 apply, the datasheet's estimates."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import infer_overrides
from helpers.page_checks import assert_only_q16_script
from q16 import cli
from q16.errors import Q16Error
from q16.report import apply_review_files, write_report

REPO = Path(__file__).resolve().parents[2]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path) -> Path:
    """One tiny-model run over the synthetic SMID images (threshold low enough to flag some)."""
    from conftest import compose_config
    from q16 import infer

    tmp = tmp_path_factory.mktemp("audit")
    out = tmp / "scored"
    cfg = compose_config(
        "infer",
        infer_overrides(out, "data=folder", f"data.path={synthetic_root / 'img'}",
                        "infer.threshold=0.5"),
        tmp,
    )  # fmt: skip
    infer.run(cfg)
    return out


@pytest.fixture
def run_copy(scored: Path, tmp_path: Path) -> Path:
    """A fresh copy of the run, so every test writes its own review."""
    target = tmp_path / "scored"
    shutil.copytree(scored, target)
    return target


def test_audit_review_estimates_in_datasheet(run_copy: Path, synthetic_root: Path, capsys) -> None:
    cli.main(["audit", str(run_copy), "-n", "120", "--seed", "3"])
    review = pd.read_csv(run_copy / "review.csv", dtype=str, keep_default_na=False)
    assert len(review) == 120
    assert {"stratum", "stratum_size", "inclusion_probability"} <= set(review.columns)
    audit = json.loads((run_copy / "audit.json").read_text())
    assert audit["seed"] == 3 and audit["sampled"] == 120 and audit["run_id"]
    page = (run_copy / "report.html").read_text()
    assert 'id="audit"' in page and page.count("audit-stratum") == len(audit["strata"])
    assert "No audit reviewed yet" in (run_copy / "datasheet_q16.md").read_text()

    _script("simulate_review").main([str(run_copy / "review.csv"), "--from-synthetic",
                                     str(synthetic_root)])  # fmt: skip
    decided = pd.read_csv(run_copy / "review.csv", dtype=str, keep_default_na=False)
    assert (decided["decision"] != "").all()
    assert decided.drop(columns="decision").equals(review.drop(columns="decision"))

    cli.main(["apply", str(run_copy), str(run_copy / "review.csv")])
    assert "estimated share inappropriate" in capsys.readouterr().out
    estimates = json.loads((run_copy / "estimates.json").read_text())
    prevalence = estimates["prevalence"]
    assert prevalence["low"] <= prevalence["share"] <= prevalence["high"]
    # the synthetic SMID's truth: moral mean < 2.5 among decided (2.5..3.5 is unsure)
    norms = pd.read_csv(synthetic_root / "SMID_norms.csv")
    decided_norms = norms[(norms.moral_mean < 2.5) | (norms.moral_mean > 3.5)]
    truth = float((decided_norms.moral_mean < 2.5).mean())
    assert prevalence["low"] - 0.15 < truth < prevalence["high"] + 0.15
    sheet = (run_copy / "datasheet_q16.md").read_text()
    assert "No audit reviewed yet" not in sheet
    assert "95 % CI" in sheet and "Clopper–Pearson" in sheet and "missed" in sheet
    assert (run_copy / "keys_keep.csv").is_file() and (run_copy / "keys_remove.csv").is_file()


def test_oversized_audit_takes_every_image(run_copy: Path) -> None:
    write_report(run_copy, audit=10_000)
    audit = json.loads((run_copy / "audit.json").read_text())
    assert audit["all_taken"] and audit["sampled"] == audit["population"]
    review = pd.read_csv(run_copy / "review.csv", dtype=str, keep_default_na=False)
    assert len(review) == audit["population"]
    assert set(review["inclusion_probability"].astype(float)) == {1.0}
    assert 'id="audit-all"' in (run_copy / "report.html").read_text()


def test_review_with_no_decisions_is_refused(run_copy: Path) -> None:
    write_report(run_copy, audit=40)
    with pytest.raises(Q16Error, match="no keep/remove decision") as err:
        apply_review_files(run_copy, run_copy / "review.csv")
    assert "\n" not in str(err.value)
    assert not (run_copy / "keys_keep.csv").exists()


def test_review_from_another_run_is_refused(run_copy: Path, tmp_path: Path) -> None:
    write_report(run_copy, audit=40)
    review = pd.read_csv(run_copy / "review.csv", dtype=str, keep_default_na=False)
    review["decision"] = "keep"
    review.to_csv(run_copy / "review.csv", index=False)
    other = tmp_path / "other"
    shutil.copytree(run_copy, other)
    summary = json.loads((other / "summary.json").read_text())
    summary["threshold"] = 0.6  # another run over the same images
    (other / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(Q16Error, match="another run") as err:
        apply_review_files(other, run_copy / "review.csv")
    assert "\n" not in str(err.value)
    # a review whose rows are not in the audit's sample: a newer audit, another seed
    fresh = tmp_path / "fresh"
    write_report(run_copy, report_dir=fresh, audit=40, seed=99)
    new_keys = json.loads((fresh / "audit.json").read_text())["sample"]["key"]
    assert set(new_keys) != set(review["key"])
    shutil.copy(run_copy / "review.csv", fresh / "review.csv")
    with pytest.raises(Q16Error, match="not in the audit sample") as err:
        apply_review_files(run_copy, fresh / "review.csv")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad", ["0", "-3", "x", "2.5"])
def test_bad_audit_size_is_one_line(run_copy: Path, bad: str, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["audit", str(run_copy), "-n", bad])
    assert stop.value.code != 0
    message = capsys.readouterr().err.strip().splitlines()
    assert message and "audit" in message[-1]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda a: "not json {",
        lambda a: json.dumps([1, 2]),
        lambda a: json.dumps(
            {**a, "strata": [{**a["strata"][0], "sampled": -5}, *a["strata"][1:]]}
        ),
        lambda a: json.dumps({**a, "sample": {**a["sample"], "stratum": [99] * 40}}),
        # a size no integer holds, and nesting no parser survives
        lambda a: json.dumps(a).replace('"size": ', '"size": 1e400, "was": ', 1),
        lambda a: "[" * 100_000 + "]" * 100_000,
    ],
)
def test_tampered_audit_json_is_one_line(run_copy: Path, tamper) -> None:
    write_report(run_copy, audit=40)
    review = pd.read_csv(run_copy / "review.csv", dtype=str, keep_default_na=False)
    review["decision"] = "keep"
    review.to_csv(run_copy / "review.csv", index=False)
    audit = json.loads((run_copy / "audit.json").read_text())
    (run_copy / "audit.json").write_text(tamper(audit))
    with pytest.raises(Q16Error, match="audit") as err:
        apply_review_files(run_copy, run_copy / "review.csv")
    assert "\n" not in str(err.value)


def test_hostile_run_audit_is_spreadsheet_safe_and_escaped(tmp_path: Path) -> None:
    """Keys and class names full of formulas, NA-likes, bidi and markup: the audit's
    review.csv has no formula cell and gives back the exact keys; the page stays text."""
    from test_report_hostile import FORMULA_KEYS, _assert_no_formula_cells, make_hostile_out_dir

    from q16.spreadsheet import read_text_csv

    out = make_hostile_out_dir(tmp_path)
    files = write_report(out, audit=10_000)
    _assert_no_formula_cells(files.review)
    review = read_text_csv(files.review, restore_cells=["key", "shard"])
    assert set(FORMULA_KEYS) <= set(review["key"])
    page = files.html.read_text()
    assert_only_q16_script(page)
    assert "\u202e" not in page and 'id="audit"' in page
    review["decision"] = "keep"
    review.loc[review["key"] == FORMULA_KEYS[0], "decision"] = "remove"
    from q16.spreadsheet import write_text_csv

    write_text_csv(review, files.review, ["key", "shard", "class_name", "source", "file_name"])
    outcome = apply_review_files(out, files.review)
    assert outcome.estimates is not None and outcome.remove == 1
    sheet = (out / "datasheet_q16.md").read_text()
    assert "95 % CI" in sheet and "<script>" not in sheet  # markdown-escaped
