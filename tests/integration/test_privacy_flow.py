"""The curator's privacy flow on real photographs: score with faces, the report and datasheet
state the faces, an audit asks about identifiable people and its answers give an interval,
then the blurred release and a removal search through the q16 command."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import DictConfig
from PIL import Image

from q16 import infer
from q16.cli import main
from q16.privacy import photos
from q16.report import apply_review_files, write_report
from q16.spreadsheet import read_text_csv, write_text_csv

pytestmark = pytest.mark.slow
HEADS = "heads=[{name: q16, prompt: zeroshot}, {name: faces, detector: centerface}]"


def test_faces_report_audit_release_and_removal(
    make_cfg: Callable[..., DictConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    photos.write_folder(folder / "people")
    out = tmp_path / "out"
    cfg = make_cfg(
        "model=tiny", "data=folder", f"data.path={folder}", HEADS, "infer.hashes=true",
        f"infer.out_dir={out}", "infer.num_workers=0", "infer.progress=false",
        "fabric.accelerator=cpu", config_name="infer",
    )  # fmt: skip
    infer.run(cfg)
    files = write_report(out)
    datasheet = files.datasheet.read_text()
    assert "## People: faces (head `faces`)" in datasheet
    assert "found at least one face in 5 of the 10 scored images (50.00 %)" in datasheet
    assert "skin tone" in datasheet and "q16 audit OUT -n 400" in datasheet
    assert "People: faces" in files.html.read_text()

    audit = write_report(out, tmp_path / "audit", audit=10, seed=0)
    sheet = read_text_csv(audit.review)
    assert list(sheet.columns[:2]) == ["decision", "person"]
    scores = pd.concat(pd.read_parquet(p) for p in sorted((out / "scores").glob("*.parquet")))
    faces = dict(zip(scores["key"], scores["faces_n"], strict=True))
    sheet["decision"] = "keep"
    sheet["person"] = ["yes" if faces[k] else "no" for k in sheet["key"]]
    write_text_csv(sheet, audit.review)
    outcome = apply_review_files(out, audit.review)
    person = json.loads((tmp_path / "audit" / "estimates.json").read_text())["questions"]["person"]
    assert person["prevalence"]["share"] == pytest.approx(0.5)  # the whole run was audited
    assert "contains an identifiable person" in outcome.describe()
    assert (
        "an estimated 50.00 % of the scored images contain"
        in (tmp_path / "audit" / "datasheet_q16.md").read_text()
    )

    main(["release", str(out), str(tmp_path / "release"), "--boxes", str(tmp_path / "b.parquet")])
    assert "5 images with 11 faces blurred" in capsys.readouterr().out
    request = tmp_path / "request"
    request.mkdir()
    Image.open(folder / "people" / "astronaut.jpg").resize((300, 300)).save(request / "me.jpg")
    main(["remove", str(out), "--photos", str(request)])
    candidates = read_text_csv(out / "removal" / "candidates.csv")
    assert candidates["key"].tolist() == ["people/astronaut.jpg"]
    assert "people/astronaut.jpg" in (out / "removal" / "keys_remove.csv").read_text()


def test_an_audit_sheet_with_the_person_column_is_replaced_only_when_blank(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    from q16.errors import Q16Error

    folder = tmp_path / "photos"
    photos.write_folder(folder / "people")
    out = tmp_path / "out"
    cfg = make_cfg(
        "model=tiny", "data=folder", f"data.path={folder}", HEADS, f"infer.out_dir={out}",
        "infer.num_workers=0", "infer.progress=false", "fabric.accelerator=cpu",
        config_name="infer",
    )  # fmt: skip
    infer.run(cfg)
    first = write_report(out, audit=6, seed=0)
    again = write_report(out, audit=6, seed=1)  # q16's own blank sheet: replaced
    assert again.review == first.review
    sheet = read_text_csv(first.review)
    sheet.loc[0, "person"] = "yes"
    write_text_csv(sheet, first.review)
    with pytest.raises(Q16Error, match="filled-in"):
        write_report(out, audit=6, seed=2)
