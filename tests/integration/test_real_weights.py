"""Checks that need OpenAI's CLIP weights on disk (skipped unless Q16_WEIGHTS_DIR is set).

Q16_WEIGHTS_DIR is used as open_clip's cache_dir, so a machine that once downloaded the weights
(``open_clip.create_model_and_transforms("ViT-B-32-quickgelu", "openai", cache_dir=DIR)``) can
run these offline.
"""

from __future__ import annotations

import os

import pytest
import torch
from open_clip.transformer import QuickGELU

from q16.models.backbone import BackboneSpec, load_backbone
from q16.models.prompt_io import load_prompt


@pytest.mark.weights
def test_openai_weights_run_with_quickgelu_and_the_papers_prompt(reference_dir) -> None:
    spec = BackboneSpec("ViT-B-32", pretrained="openai", cache_dir=os.environ["Q16_WEIGHTS_DIR"])
    backbone = load_backbone(spec)
    activations = {type(m) for m in backbone.model.modules() if "GELU" in type(m).__name__}
    assert activations == {QuickGELU}
    head, _ = load_prompt(
        reference_dir / "q16_prompts" / "ViT-B-32.p",
        model=spec.name,
        pretrained=spec.pretrained,
        embed_dim=backbone.embed_dim,
    )
    p = head(backbone.encode_image(torch.rand(2, 3, 224, 224))).softmax(-1)[:, 1]
    assert ((p > 0) & (p < 1)).all()
