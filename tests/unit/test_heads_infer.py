"""infer.run with heads: several prompt heads over one read of the embeddings (clip-retrieval
and DataComp layouts), concept sets encoded at start-up or by scripts/encode_concepts.py,
thresholds, resume, summary and report."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from collections_layout import clip_retrieval_folder, datacomp_folder
from omegaconf import DictConfig

from q16 import infer
from q16.errors import Q16Error
from q16.spreadsheet import read_text_csv

MakeCfg = Callable[..., DictConfig]
REPO = Path(__file__).resolve().parents[2]
TODAY_COLUMNS = [
    "key", "shard", "source", "file_name", "class_id", "class_name", "p_inappropriate",
    "label", "flagged", "synset",
]  # fmt: skip
CONCEPTS = """
neutral: ["a photo of a cat", "a photo of a tree", "a photo of a street"]
categories:
  violence: ["a photo of a gun pointed at a person", "a photo of a fist fight"]
  drugs: ["a photo of a syringe"]
"""


def _run(make_cfg: MakeCfg, out: Path, *overrides: str, model: str = "ViT-L-14") -> dict:
    cfg = make_cfg(
        f"model={model}",
        f"infer.out_dir={out}",
        "infer.num_workers=0",
        "infer.progress=false",
        "infer.batch_size=3",
        "fabric.accelerator=cpu",
        *overrides,
        config_name="infer",
    )
    return infer.run(cfg)


def _scores(out: Path) -> pd.DataFrame:
    files = sorted((out / "scores").glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def _npy_prompt(path: Path, dim: int, seed: int) -> Path:
    np.save(path, np.random.default_rng(seed).standard_normal((2, dim)).astype(np.float32))
    return path


def _heads(*entries: str) -> str:
    return f"heads=[{','.join(entries)}]"


@pytest.mark.parametrize("layout", ["clip_retrieval", "datacomp"])
def test_two_heads_in_one_pass_equal_single_head_runs(
    make_cfg: MakeCfg, tmp_path: Path, layout: str
) -> None:
    if layout == "clip_retrieval":
        root = clip_retrieval_folder(tmp_path / "laion", [4, 3], dim=768)
        data = ["data=clip_retrieval", f"data.path={root}", "data.meta_columns=[url,caption]"]
        meta = ["meta_url", "meta_caption"]
    else:
        root = datacomp_folder(tmp_path / "dc", [5, 2])
        data = ["data=datacomp", f"data.path={root}", "data.meta_columns=[uid,url]"]
        meta = ["meta_uid", "meta_url"]
    other = _npy_prompt(tmp_path / "other.npy", 768, seed=1)
    t = ["infer.threshold=0.5"]
    today = _run(make_cfg, tmp_path / "paper", *data, *t)
    alone = _run(make_cfg, tmp_path / "other", *data, *t, f"prompt.path={other}")
    both = _run(
        make_cfg,
        tmp_path / "both",
        *data,
        *t,
        # the override bench_embeddings.py passes: unquoted paths in flow mappings
        _heads("{name:q16,prompt:paper}", f"{{name:other,prompt:{other},threshold:0.0}}"),
    )
    single, second, scores = (
        _scores(tmp_path / "paper"),
        _scores(tmp_path / "other"),
        _scores(tmp_path / "both"),
    )
    # a run without heads writes exactly today's columns (then the dataset's meta_ fields)
    assert list(single.columns) == TODAY_COLUMNS + meta
    assert list(scores.columns) == (
        [*TODAY_COLUMNS, "p_q16", "flagged_q16", "p_other", "flagged_other", *meta]
    )
    assert scores["p_q16"].dtype == np.float32 and scores["flagged_other"].dtype == bool
    # the primary head is today's score, exactly; the second is a run with its prompt alone
    assert np.array_equal(scores["p_inappropriate"], single["p_inappropriate"])
    assert np.array_equal(scores["p_q16"], single["p_inappropriate"])
    assert np.array_equal(scores["label"], single["label"])
    assert np.array_equal(scores["p_other"], second["p_inappropriate"])
    assert (scores["flagged"] == (scores["p_q16"] >= 0.5)).all() and scores["flagged_other"].all()
    assert (scores[meta] == single[meta]).all().all()
    # flagged.csv: every image flagged by any head (here all), with every head's columns
    flagged = read_text_csv(tmp_path / "both" / "flagged.csv", restore_cells=["key", *meta])
    assert len(flagged) == len(scores) == both["images_scored"]
    assert {"p_q16", "flagged_q16", "p_other", "flagged_other", *meta} <= set(flagged.columns)
    assert both["images_flagged"] == today["images_flagged"] == int(single["flagged"].sum())
    assert both["images_flagged_any_head"] == len(scores)
    assert [
        (h["name"], h["threshold"], h["threshold_from"], h["flagged"]) for h in both["heads"]
    ] == [
        ("q16", 0.5, "infer.threshold", today["images_flagged"]),
        ("other", 0.0, "heads", len(scores)),
    ]
    assert "heads" not in today and alone["prompt_source"] == str(other.resolve())
    assert (
        json.loads((tmp_path / "both" / "summary.json").read_text())["heads"][1]["name"] == "other"
    )
    if layout == "clip_retrieval":  # the report and datasheet show each head's count
        from q16.report import write_report

        files = write_report(tmp_path / "both")
        page, sheet = files.html.read_text(), files.datasheet.read_text()
        assert '<table id="heads">' in page and "<td>other</td>" in page
        assert "## Heads" in sheet
        assert f"| other | {str(other.resolve()).replace('_', chr(92) + '_')} |" in sheet
        assert f"| 0 (heads) | {len(scores):,} | 100.00 % |" in sheet
        # an image listed for another head than the first says so, on the sheet and the page
        review = read_text_csv(files.review)
        assert {"p_q16", "flagged_q16", "p_other", "flagged_other"} <= set(review.columns)
        assert "Flagged images by any head" in page and "flagged by other" in page
        plain = write_report(tmp_path / "paper")
        assert 'id="heads"' not in plain.html.read_text()
        assert "## Heads" not in plain.datasheet.read_text()


def test_resume_refuses_other_heads_and_thresholds(make_cfg: MakeCfg, tmp_path: Path) -> None:
    root = clip_retrieval_folder(tmp_path / "laion", [3], dim=768)
    data = ["data=clip_retrieval", f"data.path={root}"]
    other = _npy_prompt(tmp_path / "other.npy", 768, seed=1)
    heads = _heads("{name:q16,prompt:paper}", f"{{name:other,prompt:{other}}}")
    out = tmp_path / "out"
    _run(make_cfg, out, *data, heads)
    again = _run(make_cfg, out, *data, heads)  # same heads: resumed, nothing scored again
    assert again["images_scored_this_run"] == 0 and again["images_scored"] == 3
    for changed in (
        _heads("{name:q16,prompt:paper}", f"{{name:other,prompt:{other},threshold:0.1}}"),
        _heads("{name:q16,prompt:paper}", f"{{name:renamed,prompt:{other}}}"),
        _heads("{name:q16,prompt:paper}"),
        "heads=null",
    ):
        with pytest.raises(Q16Error, match="different heads"):
            _run(make_cfg, out, *data, changed)


def test_bad_heads_in_config_are_one_line_before_any_work(
    make_cfg: MakeCfg, tmp_path: Path
) -> None:
    root = clip_retrieval_folder(tmp_path / "laion", [2], dim=768)
    data = ["data=clip_retrieval", f"data.path={root}"]
    for heads, says in (
        (_heads("{name:q16,prompt:paper}", "{name:q16,prompt:paper}"), "used twice"),
        (_heads("{name:Q16}"), "a-z"),
        (_heads("{name:q16,treshold:0.5}"), "unknown key(s) treshold"),
        (_heads("{name:q16,threshold:2}"), "between 0 and 1"),
    ):
        with pytest.raises(Q16Error, match="heads") as err:
            _run(make_cfg, tmp_path / "out", *data, heads)
        assert says in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_prompt_file_threshold_is_used_unless_the_head_sets_one(
    make_cfg: MakeCfg, tmp_path: Path
) -> None:
    from q16.models.paper_assets import paper_prompt_file
    from q16.models.prompt_io import PromptMetadata, load_prompt, save_prompt
    from q16.models.prompt_threshold import store_threshold

    root = clip_retrieval_folder(tmp_path / "laion", [4], dim=768)
    data = ["data=clip_retrieval", f"data.path={root}"]
    head, _ = load_prompt(paper_prompt_file("ViT-L-14"))
    prompt = save_prompt(
        tmp_path / "p.safetensors", head, PromptMetadata("class_embeddings", 768, "ViT-L-14")
    )
    store_threshold(prompt, 0.0, "target precision 0.9 for soft in thresholds.json")
    stored = _run(make_cfg, tmp_path / "a", *data, _heads(f"{{name:a,prompt:{prompt}}}"))
    assert stored["threshold"] == 0.0 and stored["images_flagged"] == 4
    assert stored["heads"][0]["threshold_from"].startswith("prompt file (target precision 0.9")
    override = _run(
        make_cfg, tmp_path / "b", *data, _heads(f"{{name:a,prompt:{prompt},threshold:1.0}}")
    )
    assert override["threshold"] == 1.0 and override["heads"][0]["threshold_from"] == "heads"
    assert override["images_flagged"] == int((_scores(tmp_path / "b")["p_a"] >= 1.0).sum())


@pytest.mark.slow
def test_concept_heads_at_start_up_equal_encoded_file(make_cfg: MakeCfg, tmp_path: Path) -> None:
    """A concept-set YAML encoded at start-up (text tower) and the file encode_concepts.py
    writes (no text tower) give the same scores (to float32 rounding: the text tower's sums may
    be ordered differently in another process, e.g. at another thread count); categories come
    from the head names."""
    root = clip_retrieval_folder(tmp_path / "laion", [5, 2], dim=64)
    concepts = tmp_path / "concepts.yaml"
    concepts.write_text(CONCEPTS)
    encoded = tmp_path / "concepts.safetensors"
    done = subprocess.run(
        [sys.executable, "scripts/encode_concepts.py", str(concepts), "--model", "q16-tiny",
         "--pretrained", "none", "--out", str(encoded)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = ["data=clip_retrieval", f"data.path={root}", "infer.threshold=0.5"]
    yaml_heads = _heads(f"{{name:violence,prompt:{concepts}}}", f"{{name:drugs,prompt:{concepts}}}")
    yaml_run = _run(make_cfg, tmp_path / "yaml", *data, yaml_heads, model="tiny")
    file_heads = _heads(
        f"{{name:violence,prompt:{encoded}}}",
        f"{{name:any_kind,prompt:{encoded}}}",
        f"{{name:d,prompt:{encoded},category:drugs}}",
    )
    file_run = _run(make_cfg, tmp_path / "file", *data, file_heads, model="tiny")
    a, b = _scores(tmp_path / "yaml"), _scores(tmp_path / "file")
    assert np.allclose(a["p_violence"], b["p_violence"], rtol=0, atol=1e-6)
    assert np.allclose(a["p_drugs"], b["p_d"], rtol=0, atol=1e-6)
    assert (a["flagged_violence"] == b["flagged_violence"]).all()
    # a head named after no category scores an image by its best category
    assert np.allclose(b["p_any_kind"], np.maximum(a["p_violence"], a["p_drugs"]), atol=1e-6)
    assert [h["category"] for h in yaml_run["heads"]] == ["violence", "drugs"]
    assert [h["category"] for h in file_run["heads"]] == ["violence", None, "drugs"]
    bad = subprocess.run(
        [sys.executable, "scripts/encode_concepts.py", str(tmp_path / "none.yaml"), "--model",
         "q16-tiny", "--pretrained", "none", "--out", str(encoded)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0
    assert "does not exist" in bad.stderr


def test_heads_on_image_shards_share_one_image_tower_pass(
    make_cfg: MakeCfg, tmp_path: Path
) -> None:
    """Images (tar shards, tiny random CLIP): each head equals a run with its prompt alone."""
    from q16.sources.wds import synthetic_images, write_shards

    (tmp_path / "in").mkdir()
    write_shards(synthetic_images(10, seed=3), str(tmp_path / "in" / "s-%03d.tar"), maxcount=6)
    data = [f"data.shards={tmp_path / 'in'}", "infer.threshold=0.5"]
    other = _npy_prompt(tmp_path / "other.npy", 64, seed=2)
    _run(make_cfg, tmp_path / "z", *data, "prompt.path=zeroshot", model="tiny")
    _run(make_cfg, tmp_path / "o", *data, f"prompt.path={other}", model="tiny")
    heads = _heads("{name:zs,prompt:zeroshot}", f"{{name:other,prompt:{other}}}")
    _run(make_cfg, tmp_path / "both", *data, heads, model="tiny")
    zs, alone, both = _scores(tmp_path / "z"), _scores(tmp_path / "o"), _scores(tmp_path / "both")
    assert len(both) == 10
    # to float32's rounding: one product of every head's vectors sums each cosine in an order
    # that may depend on how many vectors there are (BLAS kernels)
    assert np.allclose(both["p_zs"], zs["p_inappropriate"], rtol=0, atol=1e-6)
    assert np.array_equal(both["p_inappropriate"], both["p_zs"])
    assert np.allclose(both["p_other"], alone["p_inappropriate"], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_datacomp_two_heads_by_one_command(tmp_path: Path, launch_env) -> None:
    """The issue's bar: one infer.py command, offline, DataComp shard, two heads, metadata."""
    root = datacomp_folder(tmp_path / "dc", [6])
    other = _npy_prompt(tmp_path / "other.npy", 768, seed=1)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "infer.py", "data=datacomp", f"data.path={root}", "model=ViT-L-14",
         "data.meta_columns=[uid,url]", "fabric.accelerator=cpu", "infer.num_workers=0",
         "infer.progress=false", f"infer.out_dir={out}", f"paths.root_dir={tmp_path}",
         f"heads=[{{name: q16, prompt: paper}}, {{name: other, prompt: {other}, threshold: 0}}]"],
        cwd=REPO, env=launch_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    scores = _scores(out)
    assert {"p_q16", "flagged_q16", "p_other", "flagged_other", "meta_uid", "meta_url"} <= set(
        scores.columns
    )
    assert (scores["key"] == scores["meta_uid"]).all() and scores["flagged_other"].all()
    bad = subprocess.run(
        [sys.executable, "infer.py", "data=datacomp", f"data.path={root}", "model=ViT-L-14",
         f"infer.out_dir={tmp_path / 'bad'}", f"paths.root_dir={tmp_path}",
         "heads=[{name: q16}, {name: q16}]"],
        cwd=REPO, env=launch_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("q16: error:")
    assert "used twice" in bad.stderr


def test_resume_refuses_another_key_column(make_cfg: MakeCfg, tmp_path: Path) -> None:
    """Rows named by another column are other rows: one out_dir never mixes two namings."""
    root = clip_retrieval_folder(tmp_path / "laion", [3], dim=768)
    data = ["data=clip_retrieval", f"data.path={root}"]
    out = tmp_path / "out"
    _run(make_cfg, out, *data, "data.key_column=key")
    again = _run(make_cfg, out, *data, "data.key_column=key")
    assert again["images_scored_this_run"] == 0
    with pytest.raises(Q16Error):
        _run(make_cfg, out, *data, "data.key_column=url")
