"""The CLIP backbone is frozen, speaks open_clip, and fails clearly without weights."""

from __future__ import annotations

import pytest
import torch

from q16.errors import Q16Error
from q16.models.backbone import BackboneSpec, load_backbone, resolve_model_name


def test_tiny_backbone_is_frozen_and_in_eval(tiny_backbone) -> None:
    assert not any(p.requires_grad for p in tiny_backbone.model.parameters())
    assert not tiny_backbone.model.training
    assert tiny_backbone.embed_dim == 64


def test_encoders_return_embed_dim(tiny_backbone) -> None:
    text = tiny_backbone.encode_text(["a photo", "another photo"])
    images = tiny_backbone.encode_image(torch.rand(3, 3, 32, 32))
    assert text.shape == (2, 64) and images.shape == (3, 64)
    assert text.dtype == images.dtype == torch.float32


def test_openai_weights_use_quickgelu_configs() -> None:
    assert resolve_model_name("ViT-L-14", "openai") == "ViT-L-14-quickgelu"
    assert resolve_model_name("RN50", "openai") == "RN50-quickgelu"
    assert resolve_model_name("ViT-L-14", "laion2b_s32b_b82k") == "ViT-L-14"


def test_offline_weights_fail_with_one_clear_message(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Q16Error) as info:
        load_backbone(BackboneSpec("ViT-B-32", pretrained="openai"))
    message = str(info.value)
    assert "ViT-B-32-quickgelu" in message and "'openai'" in message
    assert "model.pretrained=/path/to" in message and "\n" not in message


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (BackboneSpec("ViT-B-99"), "unknown open_clip model"),
        (BackboneSpec("ViT-B-32", pretrained="no_such_tag"), "not a known tag for ViT-B-32"),
        (BackboneSpec("ViT-B-32", pretrained="/nonexistent/ckpt.pt"), "no such checkpoint file"),
        (BackboneSpec("q16-tiny", pretrained=None, precision="fp8"), "model.precision"),
    ],
)
def test_bad_model_settings_fail_clearly(spec: BackboneSpec, match: str) -> None:
    with pytest.raises(Q16Error, match=match):
        load_backbone(spec)


def test_local_checkpoint_path_loads(tmp_path, tiny_backbone) -> None:
    path = tmp_path / "tiny.pt"
    torch.save(tiny_backbone.model.state_dict(), path)
    loaded = load_backbone(BackboneSpec("q16-tiny", pretrained=str(path)))
    images = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded.encode_image(images), tiny_backbone.encode_image(images))
    assert loaded.spec.weights_id.startswith("file:")
