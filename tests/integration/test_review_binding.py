"""A review is bound to what was reviewed: sheets and audits record each shard's version, and
decisions on a shard scored again since (other images under the same keys) are refused."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import DictConfig
from test_report import make_out_dir

from conftest import infer_overrides
from q16.data.review import ReviewDecisions
from q16.errors import Q16Error
from q16.outdir import SHARD_INPUT_KEY, SHARD_STAMP_KEY
from q16.report import apply_review_files, write_report
from q16.review import load_run, write_next_batch
from q16.review.audit_files import run_identity
from q16.review.versions import VERSION_COLUMN, shard_version
from q16.spreadsheet import read_text_csv, write_text_csv
from review_runs import make_run

SCORED_AGAIN = "scored again"


def _rescore(out: Path, shard: str, stamp: bytes | None = b"size:mtime of other bytes") -> None:
    """What resume does to a shard whose tar was replaced: a new parquet, a new stamp (or,
    for a parquet without q16's metadata, other scores)."""
    path = out / "scores" / f"{shard}.parquet"
    table = pq.read_table(path)
    if stamp is None:
        column = table.schema.get_field_index("p_inappropriate")
        flipped = pa.compute.subtract(1.0, table.column("p_inappropriate"))
        table = table.set_column(column, "p_inappropriate", flipped.cast(pa.float32()))
    else:
        meta = {
            **(table.schema.metadata or {}),
            SHARD_INPUT_KEY: b"same path",
            SHARD_STAMP_KEY: stamp,
        }
        table = table.replace_schema_metadata(meta)
    pq.write_table(table, path)


def _decide(path: Path, decision: str = "remove") -> None:
    sheet = read_text_csv(path)
    sheet["decision"] = decision
    write_text_csv(sheet, path)


@pytest.mark.parametrize("stamp", [b"size:mtime of other bytes", None])
def test_decisions_on_a_shard_scored_again_are_refused(tmp_path: Path, stamp) -> None:
    out = make_out_dir(tmp_path)
    if stamp is not None:
        _rescore(out, "shard-000000", b"as first scored")  # as the inference writer leaves it
    files = write_report(out)
    sheet = read_text_csv(files.review)
    assert (sheet[VERSION_COLUMN].str.len() == 16).all()
    _decide(files.review)
    _rescore(out, "shard-000000", stamp)
    with pytest.raises(Q16Error, match=SCORED_AGAIN) as err:
        apply_review_files(out, files.review)
    assert "\n" not in str(err.value) and "'shard-000000'" in str(err.value)
    assert not (out / "keys_remove.csv").exists()
    with pytest.raises(Q16Error, match=SCORED_AGAIN):
        write_next_batch(load_run(out), 2)
    # decisions on the shard that did not change still apply
    only_folder = sheet[sheet["shard"] == "folder-0"].assign(decision="remove")
    write_text_csv(only_folder, out / "review_folder.csv")
    assert apply_review_files(out, out / "review_folder.csv").remove == 1


def test_an_unchanged_run_keeps_its_versions(tmp_path: Path) -> None:
    out = make_out_dir(tmp_path)
    files = write_report(out)
    before = read_text_csv(files.review)[VERSION_COLUMN].tolist()
    (files.review).unlink()
    write_report(out)  # the same scores: the same versions, the review still applies
    assert read_text_csv(files.review)[VERSION_COLUMN].tolist() == before
    _decide(files.review)
    assert apply_review_files(out, files.review).remove == 5


def test_an_audit_of_a_shard_scored_again_is_refused(tmp_path: Path) -> None:
    out = make_out_dir(tmp_path)
    run = load_run(out)
    n = len(run.scores())
    identity = run_identity(run, n)
    write_report(out, audit=6)
    _decide(out / "review.csv", "keep")
    _rescore(out, "folder-0")
    assert run_identity(load_run(out), n) != identity
    with pytest.raises(Q16Error, match="scored again since this audit was drawn") as err:
        apply_review_files(out, out / "review.csv")
    assert "\n" not in str(err.value)


def test_training_on_decisions_of_a_shard_scored_again_is_refused(tmp_path: Path) -> None:
    out = make_run(tmp_path, n_per_shard=6, shards=("shard-a", "shard-b"))
    versions = {s: shard_version(out / "scores" / f"{s}.parquet") for s in ("shard-a", "shard-b")}
    rows = [
        {"decision": d, "shard": s, "key": f"{i:06d}", VERSION_COLUMN: versions[s]}
        for s in versions
        for i, d in enumerate(["keep", "remove"] * 3)
    ]
    import pandas as pd

    write_text_csv(pd.DataFrame(rows), out / "review.csv")
    assert len(ReviewDecisions(str(out / "review.csv")).load_features().data) == 12
    _rescore(out, "shard-b", None)
    with pytest.raises(Q16Error, match=SCORED_AGAIN):
        ReviewDecisions(str(out / "review.csv")).load_features()


def test_a_sheet_without_versions_applies_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Hand-made sheets (decision, shard, key) cannot be checked: said, not refused."""
    out = make_out_dir(tmp_path)
    files = write_report(out)
    sheet = read_text_csv(files.review).drop(columns=VERSION_COLUMN).assign(decision="keep")
    write_text_csv(sheet, files.review)
    with caplog.at_level("WARNING"):
        assert apply_review_files(out, files.review).keep == 5
    assert "has no shard_version column" in caplog.text


def test_a_cleared_version_cell_is_refused_not_skipped(tmp_path: Path) -> None:
    """A sheet with the column whose cells a spreadsheet user cleared: the rows cannot be
    bound to a scoring, so they are refused, not applied to whatever the shard now holds."""
    out = make_out_dir(tmp_path)
    files = write_report(out)
    sheet = read_text_csv(files.review).assign(decision="remove")
    sheet.loc[1, VERSION_COLUMN] = ""
    write_text_csv(sheet, files.review)
    with pytest.raises(Q16Error, match="blank shard_version") as err:
        apply_review_files(out, files.review)
    assert "\n" not in str(err.value)
    assert not (out / "keys_remove.csv").exists()


def _same_names_other_images(tar_path: Path) -> None:
    """The tar rewritten at its path: every member kept, every image another picture."""
    import io
    import tarfile

    from PIL import Image

    with tarfile.open(tar_path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]
    replaced = tar_path.with_suffix(".new")
    with tarfile.open(replaced, "w") as tar:
        for i, (name, data) in enumerate(members):
            if name.endswith(".jpg"):
                buffer = io.BytesIO()
                Image.new("RGB", (96, 80), (20 * i, 255 - 20 * i, 128)).save(buffer, "JPEG")
                data = buffer.getvalue()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    os.replace(replaced, tar_path)


@pytest.mark.slow
def test_a_tar_replaced_and_resumed_voids_its_review(
    make_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    """End to end: infer over tars, review, one tar replaced at the same path with other images
    under the same keys, resume (which scores it again): the review no longer applies."""
    from q16 import infer
    from q16.sources.wds import synthetic_images, write_shards

    shards, out = tmp_path / "shards", tmp_path / "out"
    write_shards(synthetic_images(8, seed=1), str(shards / "s-%04d.tar"), maxcount=4)
    overrides = infer_overrides(out, f"data.shards={shards}", "infer.threshold=0.0")
    infer.run(make_cfg(*overrides, config_name="infer"))
    files = write_report(out)
    _decide(files.review)
    first = shards / "s-0000.tar"
    _same_names_other_images(first)
    infer.run(make_cfg(*overrides, config_name="infer"))
    with pytest.raises(Q16Error, match=SCORED_AGAIN) as err:
        apply_review_files(out, files.review)
    assert "'s-0000'" in str(err.value) and "4 row(s)" in str(err.value)
