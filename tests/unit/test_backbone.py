"""The CLIP backbone is frozen, speaks open_clip, and fails clearly without weights."""

from __future__ import annotations

import pytest
import torch

from q16.errors import Q16Error
from q16.models.backbone import BackboneSpec, load_backbone, open_clip_name


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
    assert open_clip_name(BackboneSpec("ViT-L-14", "openai")) == "ViT-L-14-quickgelu"
    assert open_clip_name(BackboneSpec("RN50", "openai")) == "RN50-quickgelu"
    assert open_clip_name(BackboneSpec("ViT-L-14", "laion2b_s32b_b82k")) == "ViT-L-14"
    # a local copy of OpenAI's weights: QuickGELU on request, since the file cannot tell
    assert (
        open_clip_name(BackboneSpec("ViT-B-32", "/ckpt/vit-b-32.pt", quick_gelu=True))
        == "ViT-B-32-quickgelu"
    )
    assert open_clip_name(BackboneSpec("ViT-B-32", "/ckpt/vit-b-32.pt")) == "ViT-B-32"


def test_quick_gelu_flag_reaches_the_model(tmp_path) -> None:
    import json

    import open_clip
    from open_clip.transformer import QuickGELU

    from q16.models.backbone import register_tiny_model

    register_tiny_model()
    config = json.loads(json.dumps(open_clip.get_model_config("q16-tiny")))
    config.pop("quick_gelu")
    (tmp_path / "q16-tiny-gelu.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "q16-tiny-gelu.json")
    path = tmp_path / "tiny.pt"
    plain = load_backbone(BackboneSpec("q16-tiny-gelu", pretrained=None))
    torch.save(plain.model.state_dict(), path)

    def activations(spec: BackboneSpec) -> set[type]:
        model = load_backbone(spec).model
        return {type(m) for m in model.modules() if "GELU" in type(m).__name__}

    assert QuickGELU not in activations(BackboneSpec("q16-tiny-gelu", pretrained=str(path)))
    quick = BackboneSpec("q16-tiny-gelu", pretrained=str(path), quick_gelu=True)
    assert activations(quick) == {QuickGELU}
    # separate feature-cache entries and fingerprints for the two activations
    assert quick.weights_id.endswith("+quickgelu")
    assert BackboneSpec("ViT-B-32", "openai", quick_gelu=False).weights_id == "openai+gelu"
    assert BackboneSpec("ViT-B-32", "openai").weights_id == "openai"


def test_hub_models_are_not_random_weights() -> None:
    # pretrained=openai inherited from a model config must not label hub weights as OpenAI's
    hub = BackboneSpec("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", pretrained="openai")
    assert hub.pretrained is None
    assert not hub.random_weights and hub.weights_id.startswith("hf-hub:")
    assert BackboneSpec("q16-tiny", pretrained=None).random_weights


def test_offline_weights_fail_with_one_clear_message(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Q16Error) as info:  # an empty cache, so no earlier download can help
        load_backbone(BackboneSpec("ViT-B-32", pretrained="openai", cache_dir=str(tmp_path)))
    message = str(info.value)
    assert "ViT-B-32-quickgelu" in message and "'openai'" in message
    assert "model.pretrained=/path/to" in message and "\n" not in message


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (BackboneSpec("ViT-B-99"), "unknown open_clip model"),
        (BackboneSpec("ViT-B-32", pretrained="no_such_tag"), "not a known tag for ViT-B-32"),
        (BackboneSpec("ViT-B-32", pretrained="/nonexistent/ckpt.pt"), "no such checkpoint file"),
        (BackboneSpec("ViT-B-32", pretrained="hf-hub:org/repo"), "model.name=hf-hub:org/repo"),
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


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_low_precision_encodes_images(precision: str) -> None:
    # open_clip keeps the class/position embeddings in float32 under fp16/bf16: the input's
    # dtype comes from the precision, not from the first parameter
    backbone = load_backbone(BackboneSpec("q16-tiny", pretrained=None, precision=precision))
    assert backbone.encode_image(torch.rand(2, 3, 32, 32)).dtype == torch.float32


def test_torchscript_archive_loads_like_openai_release_files(tmp_path, tiny_backbone) -> None:
    """OpenAI ships CLIP as TorchScript archives (what clip.load keeps in ~/.cache/clip)."""
    import copy
    import warnings

    from q16.models.backbone import is_torchscript_archive

    state_dict_file, archive = tmp_path / "tiny-state.pt", tmp_path / "tiny-jit.pt"
    torch.save(tiny_backbone.model.state_dict(), state_dict_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = torch.rand(2, 3, 32, 32)
        model = copy.deepcopy(tiny_backbone.model)
        del model.attn_mask  # a non-persistent buffer, which TorchScript would save
        torch.jit.save(torch.jit.trace_module(model, {"encode_image": images}), str(archive))
        loaded = load_backbone(BackboneSpec("q16-tiny", pretrained=str(archive)))
    assert is_torchscript_archive(archive) and not is_torchscript_archive(state_dict_file)
    assert torch.equal(loaded.encode_image(images), tiny_backbone.encode_image(images))
