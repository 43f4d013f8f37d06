"""Provenance is checked, not assumed: the prompt behind every committed shard is recorded in
its parquet and checked on resume, with or without fingerprint.json; a saved-embeddings
folder's sources are limited to the inputs the run that saved it recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import DictConfig
from PIL import Image

from conftest import infer_overrides
from helpers.errors import one_line
from q16 import infer
from q16.errors import Q16Error
from q16.inference.writer import SCORING_KEY
from q16.sources.wds import synthetic_images, write_shards

MakeCfg = Callable[..., DictConfig]


def _prompt(path: Path, seed: int) -> Path:
    rows = np.random.default_rng(seed).standard_normal((2, 64)).astype(np.float32)
    np.save(path, rows)
    return path


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    write_shards(synthetic_images(8), str(tmp_path / "shards" / "s-%04d.tar"), 4)
    return tmp_path / "shards"


def _run(make_cfg: MakeCfg, out: Path, *extra: str) -> dict:
    return infer.run(make_cfg(*infer_overrides(out, *extra), config_name="infer"))


@pytest.mark.parametrize("lost", ["fingerprint", "nothing"])
def test_another_prompt_is_refused_on_resume_even_without_the_fingerprint(
    make_cfg: MakeCfg, tmp_path: Path, shards: Path, lost: str
) -> None:
    a, b = _prompt(tmp_path / "a.npy", 0), _prompt(tmp_path / "b.npy", 1)
    out = tmp_path / "out"
    first = _run(make_cfg, out, f"data.shards={shards}", f"prompt.path={a}")
    if lost == "fingerprint":
        (out / "fingerprint.json").unlink()
    with pytest.raises(Q16Error) as err:
        _run(make_cfg, out, f"data.shards={shards}", f"prompt.path={b}")
    one_line(err, "another prompt" if lost == "fingerprint" else "different")
    # the same prompt resumes: nothing scored twice, nothing mixed
    again = _run(make_cfg, out, f"data.shards={shards}", f"prompt.path={a}")
    assert again["images_scored"] == first["images_scored"] and again["images_scored_this_run"] == 0


def test_a_prompt_file_edited_in_place_is_another_prompt(
    make_cfg: MakeCfg, tmp_path: Path, shards: Path
) -> None:
    prompt = _prompt(tmp_path / "p.npy", 0)
    out = tmp_path / "out"
    _run(make_cfg, out, f"data.shards={shards}", f"prompt.path={prompt}")
    (out / "fingerprint.json").unlink()
    _prompt(prompt, 5)  # same path, other vectors
    with pytest.raises(Q16Error) as err:
        _run(make_cfg, out, f"data.shards={shards}", f"prompt.path={prompt}")
    one_line(err, "another prompt")


def test_other_heads_are_refused_without_the_fingerprint_other_thresholds_not(
    make_cfg: MakeCfg, tmp_path: Path, shards: Path
) -> None:
    a = _prompt(tmp_path / "a.npy", 0)
    out = tmp_path / "out"
    heads = f"heads=[{{name: q16, prompt: {a}, threshold: 0.5}}]"
    _run(make_cfg, out, f"data.shards={shards}", heads)
    (out / "fingerprint.json").unlink()
    for changed in (
        f"heads=[{{name: q16, prompt: {a}, threshold: 0.5}}, {{name: zs, prompt: zeroshot}}]",
        "heads=[{name: q16, prompt: zeroshot, threshold: 0.5}]",
    ):
        with pytest.raises(Q16Error) as err:
            _run(make_cfg, out, f"data.shards={shards}", changed)
        one_line(err, "scores made with")
    # a threshold only moves the flags, derived from the stored scores: resumed, re-flagged
    again = f"heads=[{{name: q16, prompt: {a}, threshold: 0.7}}]"
    summary = _run(make_cfg, out, f"data.shards={shards}", again)
    assert summary["images_scored_this_run"] == 0 and summary["threshold"] == 0.7


def test_a_shard_that_does_not_say_its_prompt_needs_the_fingerprint(
    make_cfg: MakeCfg, tmp_path: Path, shards: Path
) -> None:
    """A parquet from before q16 recorded the prompt per shard: trusted while fingerprint.json
    vouches for the out_dir, refused once it is gone."""
    a = _prompt(tmp_path / "a.npy", 0)
    out = tmp_path / "out"
    _run(make_cfg, out, f"data.shards={shards}", f"prompt.path={a}")
    for path in (out / "scores").glob("*.parquet"):
        table = pq.read_table(path)
        meta = {k: v for k, v in (table.schema.metadata or {}).items() if k != SCORING_KEY}
        pq.write_table(table.replace_schema_metadata(meta), path)
    again = _run(make_cfg, out, f"data.shards={shards}", f"prompt.path={a}")
    assert again["images_scored_this_run"] == 0
    (out / "fingerprint.json").unlink()
    with pytest.raises(Q16Error) as err:
        _run(make_cfg, out, f"data.shards={shards}", f"prompt.path={a}")
    one_line(err, "no recorded prompt")


def _saved_run(make_cfg: MakeCfg, tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "inputs" / "n00000001"
    images.mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (24, 24), (i * 60, 20, 200)).save(images / f"{i}.png")
    saved = tmp_path / "saved"
    _run(
        make_cfg,
        saved,
        "data=folder",
        f"data.path={images.parent}",
        "infer.save_embeddings=true",
    )
    return saved, images


@pytest.mark.parametrize(
    "forged",
    [
        "{private}",  # a local file the saving run never read
        "{inputs}/../private.jpg",  # inside the inputs, lexically: it is not
        "private.jpg",  # relative: resolved against whoever reads it
        "{inputs}2/x.png",  # a sibling folder whose name starts like the input's
    ],
)
def test_saved_embeddings_cannot_point_the_report_at_other_files(
    make_cfg: MakeCfg, tmp_path: Path, forged: str
) -> None:
    saved, images = _saved_run(make_cfg, tmp_path)
    private = tmp_path / "private.jpg"
    Image.new("RGB", (24, 24), (255, 0, 0)).save(private)
    source = forged.format(private=private, inputs=images.parent)
    (parquet,) = (saved / "scores").glob("*.parquet")
    table = pq.read_table(parquet)
    sources = table.column("source").to_pylist()
    sources[0] = source
    table = table.set_column(table.schema.get_field_index("source"), "source", pa.array(sources))
    pq.write_table(table, parquet)
    out = tmp_path / "again"
    roots = f"data.image_roots=['{images.parent}']"
    _run(make_cfg, out, "data=embeddings", f"data.path={saved}", roots, "infer.threshold=0")
    rescored = pq.read_table(next((out / "scores").glob("*.parquet"))).to_pandas()
    assert source not in set(rescored["source"]) and len(rescored) == 4
    assert set(rescored["source"][1:]) <= {str(images / f"{i}.png") for i in range(4)}
    records = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert any("outside the inputs" in r["reason"] for r in records)


def test_saved_embeddings_inside_their_inputs_keep_their_sources(
    make_cfg: MakeCfg, tmp_path: Path
) -> None:
    saved, images = _saved_run(make_cfg, tmp_path)
    meta = json.loads((saved / "embeddings" / "meta.json").read_text())
    assert meta["inputs"] == [str(images.parent.resolve())]
    for root in (images.parent, images):  # the input folder, or a folder inside it
        out = tmp_path / f"again-{root.name}"
        _run(make_cfg, out, "data=embeddings", f"data.path={saved}", f"data.image_roots=['{root}']")
        rescored = pq.read_table(next((out / "scores").glob("*.parquet"))).to_pandas()
        assert set(rescored["source"]) == {str(images / f"{i}.png") for i in range(4)}
        assert (out / "errors.jsonl").read_text() == ""


def _rescored_sources(make_cfg: MakeCfg, saved: Path, out: Path, *extra: str) -> set[str]:
    _run(make_cfg, out, "data=embeddings", f"data.path={saved}", "infer.threshold=0", *extra)
    return set(pq.read_table(next((out / "scores").glob("*.parquet"))).column("source").to_pylist())


def _forge(saved: Path, source: str, inputs: list[str] | None = None) -> None:
    """A folder made elsewhere: row 0 names ``source``; its meta.json lists ``inputs``."""
    (parquet,) = (saved / "scores").glob("*.parquet")
    table = pq.read_table(parquet)
    sources = table.column("source").to_pylist()
    sources[0] = source
    table = table.set_column(table.schema.get_field_index("source"), "source", pa.array(sources))
    pq.write_table(table, parquet)
    if inputs is not None:
        meta_file = saved / "embeddings" / "meta.json"
        meta = json.loads(meta_file.read_text())
        meta_file.write_text(json.dumps({**meta, "inputs": inputs}))


def test_without_image_roots_no_source_is_carried(make_cfg: MakeCfg, tmp_path: Path) -> None:
    """The folder's own meta.json is no proof: unless this run's user names the folders,
    no thumbnail of any local file is shown."""
    saved, _ = _saved_run(make_cfg, tmp_path)
    out = tmp_path / "again"
    assert _rescored_sources(make_cfg, saved, out) <= {
        str(p) for p in (saved / "embeddings").glob("*.npy")
    }
    reasons = (out / "errors.jsonl").read_text()
    assert "outside the inputs" in reasons and "data.image_roots=[...]" in reasons


@pytest.mark.parametrize("listed", ["/", "~", "{tmp}"])
def test_a_meta_json_listing_a_broad_input_does_not_widen_what_is_shown(
    make_cfg: MakeCfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listed: str
) -> None:
    """meta.json says the saving run read ``/`` (or the home folder, or a folder above the
    images): sources there outside what the user named stay unshown."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    saved, images = _saved_run(make_cfg, tmp_path)
    private = home / "private.jpg"
    Image.new("RGB", (24, 24), (255, 0, 0)).save(private)
    inputs = [str(Path(listed.format(tmp=tmp_path)).expanduser()), str(images.parent)]
    _forge(saved, str(private), inputs)
    roots = f"data.image_roots=['{images.parent}']"
    carried = _rescored_sources(make_cfg, saved, tmp_path / "again", roots)
    assert str(private) not in carried
    assert set(carried) & {str(images / f"{i}.png") for i in range(4)}


def test_a_symbolic_link_out_of_the_named_folder_is_not_followed(
    make_cfg: MakeCfg, tmp_path: Path
) -> None:
    saved, images = _saved_run(make_cfg, tmp_path)
    secret = tmp_path / "secret"
    secret.mkdir()
    Image.new("RGB", (24, 24), (255, 0, 0)).save(secret / "private.jpg")
    (images / "link").symlink_to(secret, target_is_directory=True)
    forged = str(images / "link" / "private.jpg")  # lexically inside the inputs and the root
    _forge(saved, forged)
    roots = f"data.image_roots=['{images.parent}']"
    assert forged not in _rescored_sources(make_cfg, saved, tmp_path / "again", roots)


@pytest.mark.parametrize("root", ["/", "~", "{home}/.."])
def test_image_roots_that_hold_every_private_file_are_refused(
    make_cfg: MakeCfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root: str
) -> None:
    home = tmp_path / "users" / "me"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    saved, _ = _saved_run(make_cfg, tmp_path)
    with pytest.raises(Q16Error) as err:
        _run(
            make_cfg,
            tmp_path / "again",
            "data=embeddings",
            f"data.path={saved}",
            f"data.image_roots=['{root.format(home=home)}']",
        )
    one_line(err, "name the folder(s) the images are in")
    assert not (tmp_path / "again").exists()
