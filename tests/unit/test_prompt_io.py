"""Prompt files: our safetensors round trip, the paper's pickles, .npy, and refusals."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from q16.errors import Q16Error
from q16.models.prompt_io import PromptMetadata, load_prompt, save_prompt
from q16.models.prompts import ClassEmbeddingHead, class_embedding_prompt, linear_probe


def test_soft_prompt_round_trip(tmp_path, tiny_backbone) -> None:
    head = class_embedding_prompt(tiny_backbone)
    with torch.no_grad():
        head.class_embeddings.add_(torch.randn_like(head.class_embeddings))
    meta = PromptMetadata(kind=head.kind, embed_dim=head.embed_dim, model="q16-tiny")
    path = save_prompt(tmp_path / "prompts.safetensors", head, meta)
    loaded, loaded_meta = load_prompt(path, model="q16-tiny", embed_dim=tiny_backbone.embed_dim)
    features = torch.randn(5, tiny_backbone.embed_dim)
    torch.testing.assert_close(loaded(features), head(features))
    assert loaded_meta.model == "q16-tiny" and loaded_meta.class_names == [
        "appropriate",
        "inappropriate",
    ]
    assert not any(p.requires_grad for p in loaded.parameters())


def test_linear_probe_round_trip(tmp_path, tiny_backbone) -> None:
    head = linear_probe(tiny_backbone, seed=3)
    meta = PromptMetadata(kind=head.kind, embed_dim=head.embed_dim)
    loaded, _ = load_prompt(save_prompt(tmp_path / "p.safetensors", head, meta))
    features = torch.randn(4, tiny_backbone.embed_dim)
    torch.testing.assert_close(loaded(features), head(features))


def test_prompt_file_holds_only_trainable_state(tmp_path, tiny_backbone) -> None:
    head = class_embedding_prompt(tiny_backbone)
    path = save_prompt(tmp_path / "p.safetensors", head, PromptMetadata("class_embeddings", 64))
    assert path.stat().st_size < 10_000  # two vectors plus metadata, no CLIP weights


@pytest.mark.parametrize(
    ("model", "dim"), [("ViT-B-32", 512), ("ViT-B-16", 512), ("ViT-L-14", 768)]
)
def test_papers_pickles_load(reference_dir, model: str, dim: int) -> None:
    head, meta = load_prompt(reference_dir / "q16_prompts" / f"{model}.p", embed_dim=dim)
    assert isinstance(head, ClassEmbeddingHead)
    assert head.class_embeddings.shape == (2, dim)
    assert meta.source == "q16-paper-pickle"
    assert head.logit_scale == 100.0
    # softmax(100 * cos) as in the paper: a class vector scores highest for its own class
    row1 = head.class_embeddings[1:2]
    assert head(row1).softmax(-1)[0, 1] > 0.5


def test_papers_pickle_with_wrong_dim_fails_clearly(reference_dir) -> None:
    with pytest.raises(Q16Error, match="embedding dim 768 does not match the model's 512"):
        load_prompt(reference_dir / "q16_prompts" / "ViT-L-14.p", embed_dim=512)


def test_npy_prompt_loads(tmp_path) -> None:
    array = np.random.default_rng(0).normal(size=(2, 512)).astype(np.float32)
    array /= np.linalg.norm(array, axis=1, keepdims=True)
    np.save(tmp_path / "violence_detection_vit_b_32.npy", array)
    head, meta = load_prompt(tmp_path / "violence_detection_vit_b_32.npy", embed_dim=512)
    np.testing.assert_allclose(head.class_embeddings.detach().numpy(), array)
    assert meta.source == "npy"


class _Evil:
    def __reduce__(self):  # would run a shell command when unpickled
        import os

        return (os.system, ("echo pwned",))


def test_malicious_pickle_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.p"
    path.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(Q16Error, match=r"refused to unpickle \(refusing to load .*system"):
        load_prompt(path)


def test_pickle_of_non_array_is_refused(tmp_path) -> None:
    path = tmp_path / "dict.p"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(Q16Error, match="expected a numpy array"):
        load_prompt(path)


def test_wrong_shape_is_refused(tmp_path) -> None:
    np.save(tmp_path / "three.npy", np.zeros((3, 64), dtype=np.float32))
    with pytest.raises(Q16Error, match=r"shape \(2, D\)"):
        load_prompt(tmp_path / "three.npy")


def test_model_mismatch_is_refused(tmp_path, tiny_backbone) -> None:
    head = class_embedding_prompt(tiny_backbone)
    meta = PromptMetadata(
        kind=head.kind, embed_dim=64, model="ViT-B-32-quickgelu", pretrained="openai"
    )
    path = save_prompt(tmp_path / "p.safetensors", head, meta)
    with pytest.raises(Q16Error, match="trained for model ViT-B-32-quickgelu, not ViT-L-14"):
        load_prompt(path, model="ViT-L-14", pretrained="openai")
    # the -quickgelu variant is the same model for prompt purposes
    load_prompt(path, model="ViT-B-32", pretrained="openai")
    with pytest.raises(Q16Error, match="pretrained='openai', not 'laion2b_s34b_b79k'"):
        load_prompt(path, model="ViT-B-32", pretrained="laion2b_s34b_b79k")


def test_missing_and_unknown_files(tmp_path) -> None:
    with pytest.raises(Q16Error, match="does not exist"):
        load_prompt(tmp_path / "nope.safetensors")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(Q16Error, match="unknown format"):
        load_prompt(tmp_path / "x.txt")


def test_local_copy_of_the_weights_is_not_refused(tmp_path, tiny_backbone, caplog) -> None:
    head = class_embedding_prompt(tiny_backbone)
    meta = PromptMetadata(kind=head.kind, embed_dim=64, model="ViT-B-32", pretrained="openai")
    path = save_prompt(tmp_path / "p.safetensors", head, meta)
    # trained with the tag, scored with a local checkpoint file: allowed, with a warning
    with caplog.at_level("WARNING", logger="q16.models.prompt_io"):
        load_prompt(path, model="ViT-B-32", pretrained="/ckpt/vit-b-32-openai.pt")
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(
        "trained with weights openai, now used with /ckpt/vit-b-32-openai.pt" in m for m in warned
    ), warned
