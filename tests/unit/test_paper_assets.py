"""The paper's prompts and figures carried into the package (scripts/convert_paper_assets.py)
are the released originals, with their provenance beside them."""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from q16 import CLASS_NAMES
from q16.errors import Q16Error
from q16.infer import load_head
from q16.models.backbone import Backbone, BackboneSpec
from q16.models.paper_assets import default_prompt_file, paper_prompt_file
from q16.models.prompt_io import load_prompt

PAPER = Path(str(resources.files("q16") / "paper"))
MODELS = ("ViT-B-16", "ViT-B-32", "ViT-L-14")


def provenance() -> dict:
    return json.loads((PAPER / "PROVENANCE.json").read_text())


@pytest.mark.parametrize("model", MODELS)
def test_packaged_prompt_says_where_it_comes_from(model: str) -> None:
    head, meta = load_prompt(PAPER / "prompts" / f"{model}.safetensors")
    assert meta.model == model and meta.pretrained == "openai"
    assert meta.source == "ml-research/Q16" and meta.extra["license"] == "MIT"
    assert meta.class_names == list(CLASS_NAMES) and meta.logit_scale == 100.0
    recorded = {f["file"]: f["original_sha256"] for f in provenance()["files"]}
    assert meta.extra["original_sha256"] == recorded[f"prompts/{model}.safetensors"]
    assert head.embed_dim == (768 if model == "ViT-L-14" else 512)


@pytest.mark.parametrize("model", MODELS)
def test_packaged_prompt_equals_the_original_rows(reference_dir: Path, model: str) -> None:
    original = reference_dir / "q16_prompts" / f"{model}.p"
    with original.open("rb") as handle:
        rows = pickle.load(handle)  # the trusted original, read here only to compare
    head, meta = load_prompt(PAPER / "prompts" / f"{model}.safetensors")
    assert meta.extra["original_sha256"] == hashlib.sha256(original.read_bytes()).hexdigest()
    expected = torch.from_numpy(np.asarray(rows, dtype=np.float32))
    assert torch.equal(head.class_embeddings, expected)  # float16 -> float32 is exact


def test_packaged_reference_table_is_the_original(reference_dir: Path) -> None:
    original = reference_dir / "q16_smid_reference.csv"
    assert (PAPER / "q16_smid_reference.csv").read_bytes() == original.read_bytes()
    recorded = {f["file"]: f["original_sha256"] for f in provenance()["files"]}
    digest = hashlib.sha256(original.read_bytes()).hexdigest()
    assert recorded["q16_smid_reference.csv"] == digest


def stub_backbone(spec: BackboneSpec, dim: int) -> Backbone:
    """Enough of a backbone to choose and check a prompt file (no weights needed)."""
    model = SimpleNamespace(visual=SimpleNamespace(output_dim=dim))
    return Backbone(spec=spec, model=model, preprocess=lambda x: x, tokenizer=lambda x: x)


def test_infer_defaults_to_the_papers_prompts_with_openai_weights(tmp_path, caplog) -> None:
    local_copy = tmp_path / "vit-b-32-openai.pt"
    local_copy.write_bytes(b"")  # a local copy of OpenAI's weights, declared with quick_gelu
    for spec in (
        BackboneSpec("ViT-B-32", "openai"),
        BackboneSpec("ViT-B-32-quickgelu", "openai"),
        BackboneSpec("ViT-B-32", str(local_copy), quick_gelu=True),
    ):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="q16"):
            head, source = load_head(None, stub_backbone(spec, 512))
        assert Path(source) == paper_prompt_file("ViT-B-32").resolve()
        expected, _ = load_prompt(paper_prompt_file("ViT-B-32"))
        assert torch.equal(head.class_embeddings, expected.class_embeddings)
        said = [r.getMessage() for r in caplog.records]
        assert any("paper's learned prompts for ViT-B-32" in m for m in said)
        assert not any("unreliable" in m or "make sure" in m for m in said), said


def test_no_paper_default_for_other_models_or_weights(tmp_path) -> None:
    local_copy = tmp_path / "ckpt.pt"
    local_copy.write_bytes(b"")
    assert default_prompt_file(BackboneSpec("RN50", "openai")) is None  # none released
    assert default_prompt_file(BackboneSpec("q16-tiny", None)) is None
    assert default_prompt_file(BackboneSpec("ViT-B-32", "laion2b_s34b_b79k")) is None
    assert default_prompt_file(BackboneSpec("ViT-B-32", str(local_copy))) is None  # not declared
    assert default_prompt_file(BackboneSpec("ViT-L-14", "openai")) == paper_prompt_file("ViT-L-14")


def test_prompt_path_paper_picks_the_models_file_or_says_there_is_none() -> None:
    head, meta = load_prompt("paper", model="ViT-L-14-quickgelu", pretrained="openai")
    assert meta.model == "ViT-L-14" and head.embed_dim == 768
    with pytest.raises(Q16Error, match="released prompts for ViT-B-16, ViT-B-32, ViT-L-14 only"):
        load_prompt("paper", model="RN50", pretrained="openai")
    with pytest.raises(Q16Error, match=r"ViT-L-14\.safetensors: prompt embedding dim 768"):
        load_head("paper", stub_backbone(BackboneSpec("ViT-L-14", "openai"), 512))


def test_paper_prompts_with_other_weights_still_warn(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="q16"):
        load_prompt("paper", model="ViT-B-32", pretrained="/x/laion.safetensors", embed_dim=512)
    assert any("unreliable" in r.getMessage() for r in caplog.records)
