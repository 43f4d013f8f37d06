"""heads: entries, concept sets and prompt-file thresholds, below infer.run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from helpers.errors import one_line
from q16.errors import Q16Error
from q16.inference.head import RunHeads
from q16.inference.scorer import Scorer
from q16.inference.settings import HeadSpec, parse_heads
from q16.models.backbone import Backbone
from q16.models.concepts import ConceptHead, encode_concept_set, read_concept_set
from q16.models.prompt_io import PromptMetadata, load_prompt, save_prompt
from q16.models.prompt_threshold import store_threshold, threshold_from_json
from q16.models.prompts import ClassEmbeddingHead

CONCEPTS = """
neutral: ["a photo of a cat", "a photo of a tree"]
categories:
  violence: ["a photo of a gun pointed at a person", "a photo of a fist fight"]
  drugs: ["a photo of a syringe"]
"""


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ([{"name": "A"}], "a-z"),
        ([{"name": "a b"}], "a-z"),
        ([{"name": "inappropriate"}], "not 'inappropriate'"),
        ([{"name": "x"}, {"name": "x"}], "used twice"),
        ([{"name": "x", "promt": "paper"}], "unknown key(s) promt"),
        ([{"name": "x", "threshold": 1.5}], "between 0 and 1"),
        ([{"name": "x", "threshold": "high"}], "between 0 and 1"),
        ([{"name": "x", "threshold": float("nan")}], "between 0 and 1"),
        ([{"name": "x", "prompt": 3}], "text or null"),
        (["paper"], "mapping"),
        ([], "non-empty list"),
        ({"name": "x"}, "non-empty list"),
    ],
)
def test_bad_heads_are_one_line(value: object, says: str) -> None:
    with pytest.raises(Q16Error) as err:
        parse_heads(value)
    assert says in one_line(err)


def test_heads_parse_in_order() -> None:
    specs = parse_heads(
        [{"name": "q16", "prompt": "paper"}, {"name": "v_2", "prompt": None, "threshold": 0}]
    )
    assert specs == (HeadSpec("q16", "paper"), HeadSpec("v_2", None, 0.0))
    assert parse_heads(None) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[1, 2]", "mapping"),
        ("neutral: [a]\n", "categories"),
        ("neutral: [a]\ncategories: {Violence: [b]}\n", "category name"),
        ("neutral: [a]\ncategories: {v: []}\n", "non-empty list"),
        ("neutral: [a]\ncategories: {v: [1]}\n", "must be text"),
        ("neutral: []\ncategories: {v: [b]}\n", "neutral must be"),
        ("neutral: [a]\ncategories: {v: [b]}\nextra: 1\n", "unknown key"),
        ("neutral: [a\n", "not a readable YAML"),
        ("!!python/object/apply:os.system ['echo hi']", "not a readable YAML"),
        ("categories: " + "[" * 20_000 + "]" * 20_000, "nested too deeply"),
    ],
)
def test_hostile_concept_files_are_one_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(Q16Error) as err:
        read_concept_set(path)
    assert says in one_line(err)


def test_concept_head_scores_its_own_phrase_highest(
    tmp_path: Path, tiny_backbone: Backbone
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONCEPTS)
    concepts = read_concept_set(path)
    head = encode_concept_set(tiny_backbone, concepts)
    assert head.names == ["violence", "drugs"]
    # an image whose embedding is exactly a violence phrase's text embedding
    image = tiny_backbone.encode_text(["a photo of a fist fight"]).float()
    p = {n: head.category(n)(image).softmax(-1)[0, 1].item() for n in head.names}
    assert p["violence"] > p["drugs"]
    # its score is the two-way softmax of the nearest phrases, at CLIP's scale
    unit = F.normalize(image, dim=-1)
    near = (unit @ head.phrases("violence").t()).max()
    neutral = (unit @ head.neutral.t()).max()
    expected = torch.softmax(100 * torch.stack([neutral, near]), 0)[1].item()
    assert p["violence"] == pytest.approx(expected, abs=1e-6)
    # the whole set scores an image by its best category
    whole = head(image).softmax(-1)[0, 1].item()
    assert whole == pytest.approx(max(p.values()), abs=1e-6)
    with pytest.raises(Q16Error, match="no category 'nudity'"):
        head.category("nudity")


def test_concept_file_round_trip(tmp_path: Path, tiny_backbone: Backbone) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONCEPTS)
    head = encode_concept_set(tiny_backbone, read_concept_set(path))
    meta = PromptMetadata(kind=head.kind, embed_dim=head.embed_dim, model="q16-tiny")
    saved = save_prompt(tmp_path / "c.safetensors", head, meta)
    loaded, _ = load_prompt(saved, model="q16-tiny", pretrained=None)
    assert isinstance(loaded, ConceptHead) and loaded.names == head.names
    x = torch.randn(5, head.embed_dim)
    assert torch.equal(loaded(x), head(x))
    # a tampered category name (it becomes a column name) is refused as one line
    tensors = load_file(str(saved))
    tensors["category.001.bad name"] = tensors.pop("category.001.drugs")
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta.to_strings())
    with pytest.raises(Q16Error) as err:
        load_prompt(tmp_path / "bad.safetensors")
    assert "missing or bad tensors" in one_line(err)


def _prompt_file(tmp_path: Path, dim: int = 64, seed: int = 0) -> Path:
    g = torch.Generator().manual_seed(seed)
    head = ClassEmbeddingHead(torch.randn(2, dim, generator=g), trainable=False)
    return save_prompt(
        tmp_path / f"p{seed}.safetensors", head, PromptMetadata("class_embeddings", dim)
    )


def test_threshold_in_prompt_file(tmp_path: Path) -> None:
    prompt = _prompt_file(tmp_path)
    points = {"soft": {"target_precision": 0.9, "threshold": 0.73, "precision": 0.91}}
    (tmp_path / "thresholds.json").write_text(json.dumps(points))
    threshold, note = threshold_from_json(tmp_path / "thresholds.json")
    assert threshold == 0.73 and "target precision 0.9 for soft" in note
    store_threshold(prompt, threshold, note)
    _, meta = load_prompt(prompt)
    assert meta.threshold == 0.73 and meta.threshold_from == note
    # a threshold outside [0, 1] written by hand is refused on load, as one line
    tensors = load_file(str(prompt))
    fields = json.loads(PromptMetadata("class_embeddings", 64).to_strings()["q16"])
    for bad in (1.5, -0.1, "0.5", True):
        strings = {"q16": json.dumps({**fields, "threshold": bad}), "q16_version": "x"}
        save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=strings)
        with pytest.raises(Q16Error) as err:
            load_prompt(tmp_path / "bad.safetensors")
        assert "threshold must be a number in [0, 1]" in one_line(err)


@pytest.mark.parametrize(
    ("points", "says"),
    [
        ({"a": {"threshold": 0.5}, "b": {"threshold": 0.6}}, "several methods"),
        ({"soft": {"threshold": None, "target_precision": 0.99}}, "reached no threshold"),
        ({"soft": {"threshold": 7}}, "between 0 and 1"),
        ([1, 2], "expected thresholds per method"),
    ],
)
def test_bad_thresholds_json_is_one_line(tmp_path: Path, points: object, says: str) -> None:
    (tmp_path / "t.json").write_text(json.dumps(points))
    with pytest.raises(Q16Error) as err:
        threshold_from_json(tmp_path / "t.json")
    assert says in one_line(err)


def test_store_threshold_refuses_files_without_metadata(tmp_path: Path) -> None:
    import numpy as np

    np.save(tmp_path / "p.npy", np.ones((2, 8), np.float32))
    with pytest.raises(Q16Error, match=r"only q16 prompts\.safetensors"):
        store_threshold(tmp_path / "p.npy", 0.5, "x")


def test_run_heads_thresholds_and_scores(tmp_path: Path, tiny_backbone: Backbone) -> None:
    plain, stored = _prompt_file(tmp_path, seed=0), _prompt_file(tmp_path, seed=1)
    store_threshold(stored, 0.42, "chosen on labelled data")
    specs = parse_heads(
        [
            {"name": "a", "prompt": str(plain)},
            {"name": "b", "prompt": str(stored)},
            {"name": "c", "prompt": str(stored), "threshold": 0.8},
            {"name": "z", "prompt": "zeroshot"},
        ]
    )
    heads = RunHeads.load(specs, None, tiny_backbone, threshold=0.9, warn=False)
    assert heads.thresholds() == (("a", 0.9), ("b", 0.42), ("c", 0.8), ("z", 0.9))
    assert [h["threshold_from"] for h in heads.summary() or ()] == [
        "infer.threshold",
        "prompt file (chosen on labelled data)",
        "heads",
        "infer.threshold",
    ]
    assert heads.threshold == 0.9 and heads.source == str(plain.resolve())
    scorer = Scorer(tiny_backbone, heads.head, (0.0,), (1.0,), heads=heads.named())
    features = torch.randn(6, 64)
    scores = scorer.score_features(features)
    assert list(scores.heads) == ["a", "b", "c", "z"]
    assert torch.equal(scores.heads["a"], scores.p_inappropriate)
    alone = Scorer(tiny_backbone, load_prompt(stored)[0], (0.0,), (1.0,))
    assert torch.equal(scores.heads["b"], alone.score_features(features).p_inappropriate)
    with pytest.raises(Q16Error, match="not a concept set"):
        RunHeads.load(
            parse_heads([{"name": "a", "prompt": str(plain), "category": "violence"}]),
            None,
            tiny_backbone,
            0.9,
        )


def test_heads_table_treats_summary_as_hostile() -> None:
    from q16.report.heads_table import head_rows, heads_html, heads_markdown

    summary = {
        "heads": [
            {"name": "<script>x</script>", "prompt_source": "a|b\n# h", "threshold": "0.5"},
            "not a mapping",
            {"name": "ok", "threshold": 0.25, "threshold_from": "heads", "flagged": 3},
        ]
    }
    rows = head_rows(summary)
    assert [(r.name, r.threshold, r.flagged) for r in rows] == [
        ("<script>x</script>", "?", None),
        ("?", "?", None),
        ("ok", "0.25", 3),
    ]
    page = "\n".join(heads_html(summary, scored=10))
    assert "<script>" not in page and "&lt;script&gt;" in page
    sheet = heads_markdown(summary, scored=10)
    table = [line for line in sheet if line.startswith("|")]
    assert table and all(len(re.findall(r"(?<!\\)\|", line)) == 7 for line in table)
    assert "| ok | ? |  | 0.25 (heads) | 3 | 30.00 % |" in sheet
    assert heads_markdown({"heads": "x"}, 1) == [] and heads_html({}, 1) == []


def test_writer_and_collect_per_head_flags(tmp_path: Path) -> None:
    """Each head is flagged at its own threshold; a NaN in any head is an error record, not a
    row; collect re-derives every head's flags at this run's thresholds and lists the images
    flagged by any head."""
    import pyarrow.parquet as pq

    from q16.inference.collect import collect
    from q16.inference.reader import Batch
    from q16.inference.scorer import Scores
    from q16.inference.writer import ShardWriter
    from q16.spreadsheet import read_text_csv

    keys = ["k0", "k1", "k2", "k3"]
    batch = Batch("s", keys, ["/d"] * 4, [None] * 4, [-1] * 4, [None] * 4, [None] * 4)
    a = torch.tensor([0.9, 0.2, 0.1, 0.6])
    b = torch.tensor([0.1, 0.95, float("nan"), 0.3])
    writer = ShardWriter(tmp_path, 0.5, background=False, heads=(("a", 0.5), ("b", 0.9)))
    writer.add(batch, Scores(a, (a > 0.5).to(torch.int8), heads={"a": a, "b": b}))
    writer.finish("s", [])
    table = pq.read_table(tmp_path / "scores" / "s.parquet").to_pandas()
    assert table["key"].tolist() == ["k0", "k1", "k3"]
    assert table["flagged_a"].tolist() == [True, False, True]
    assert table["flagged_b"].tolist() == [False, True, False]
    errors = (tmp_path / "errors" / "s.jsonl").read_text()
    assert '"k2"' in errors and "p_b=nan" in errors
    counts = collect(tmp_path, ["s"], threshold=0.5, heads=(("a", 0.5), ("b", 0.25)))
    assert counts.heads_flagged == {"a": 2, "b": 2} and counts.images_flagged == 2
    assert counts.images_flagged_any_head == 3
    rewritten = pq.read_table(tmp_path / "scores" / "s.parquet").to_pandas()
    assert rewritten["flagged_b"].tolist() == [False, True, True]
    flagged = read_text_csv(tmp_path / "flagged.csv", restore_cells=["key"])
    assert sorted(flagged["key"]) == ["k0", "k1", "k3"]
    assert {"p_a", "flagged_a", "p_b", "flagged_b"} <= set(flagged.columns)
