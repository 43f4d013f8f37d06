"""Checks that need OpenAI's CLIP weights on disk (skipped unless Q16_WEIGHTS_DIR is set).

Q16_WEIGHTS_DIR is used as open_clip's cache_dir, so a machine that once downloaded the weights
(``open_clip.create_model_and_transforms("ViT-B-32-quickgelu", "openai", cache_dir=DIR)``) can
run these offline. Where it also holds OpenAI's own release file ``ViT-B-32.pt`` (as
``clip.load("ViT-B/32", download_root=DIR)`` keeps it), the parity check runs on that file too.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from clip_parity import (
    CPU_FP32,
    CUDA_FP16,
    Original,
    Setting,
    check_parity,
    departures,
    log_figures,
    run_original,
    run_q16,
    write_photo_shards,
    write_photos,
)
from open_clip.transformer import QuickGELU
from sklearn.datasets import load_sample_images

from q16.models.backbone import BackboneSpec, load_backbone
from q16.models.paper_assets import paper_prompt_file

with warnings.catch_warnings():  # clip imports pkg_resources, deprecated in setuptools
    warnings.simplefilter("ignore")
    from clip.model import build_model

OPENAI_RELEASE = "ViT-B-32.pt"
"""OpenAI's TorchScript release file, under the name clip.load downloads it to."""
APPROPRIATE = ("china.jpg", "flower.jpg")
"""scikit-learn's sample photographs, a temple and a flower: nothing to flag."""


@pytest.fixture(scope="module")
def weights_dir() -> Path:
    return Path(os.environ["Q16_WEIGHTS_DIR"]).expanduser()


@pytest.mark.weights
def test_openai_weights_run_with_quickgelu(weights_dir: Path) -> None:
    spec = BackboneSpec("ViT-B-32", pretrained="openai", cache_dir=str(weights_dir))
    backbone = load_backbone(spec)
    activations = {type(m) for m in backbone.model.modules() if "GELU" in type(m).__name__}
    assert activations == {QuickGELU}


@pytest.mark.weights
@pytest.mark.slow
def test_papers_prompts_call_the_sample_photographs_appropriate(
    weights_dir: Path, tmp_path: Path
) -> None:
    """What a user runs: ``infer.py model=ViT-B-32 data=folder`` with OpenAI's weights and no
    prompt.path scores with the paper's prompts, and they leave a temple and a flower alone."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for file in load_sample_images().filenames:
        shutil.copyfile(file, photos / Path(file).name)
    summary, scored = run_q16(tmp_path, CPU_FP32, f"model.cache_dir={weights_dir}",
                              "data=folder", f"data.path={photos}")  # fmt: skip
    assert summary["prompt_source"] == str(paper_prompt_file("ViT-B-32").resolve())
    assert sorted(scored.p) == sorted(APPROPRIATE)
    assert all(scored.p[name] < 0.5 for name in APPROPRIATE), scored.p
    assert summary["images_flagged"] == 0


def openai_weights_as_clip_holds_them(weights_dir: Path, path: Path) -> Path:
    """The weights open_clip cached for ``pretrained=openai``, saved as OpenAI's own code holds
    them (its key names, matrices rounded to float16 by ``build_model``), so that clip.load
    and q16 read the very same numbers."""
    import open_clip
    from open_clip.factory import load_state_dict

    cfg = open_clip.get_pretrained_cfg("ViT-B-32-quickgelu", "openai")
    cached = open_clip.download_pretrained(cfg, cache_dir=str(weights_dir))  # offline: the cache
    torch.save(build_model(load_state_dict(cached)).state_dict(), path)
    return path


@pytest.fixture(scope="module", params=["open_clip cache", "OpenAI release file"])
def checkpoint(
    request: pytest.FixtureRequest, weights_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    if request.param == "OpenAI release file":
        release = weights_dir / OPENAI_RELEASE
        if not release.is_file():
            pytest.skip(f"no {OPENAI_RELEASE} in Q16_WEIGHTS_DIR (clip.load's download)")
        return release
    path = tmp_path_factory.mktemp("openai") / "ViT-B-32-openai.pt"
    return openai_weights_as_clip_holds_them(weights_dir, path)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def shards(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photo_shards(photos, tmp_path_factory.mktemp("shards"))


@pytest.mark.weights
@pytest.mark.slow
@pytest.mark.parametrize(
    "setting",
    [
        pytest.param(CPU_FP32, id="cpu-fp32"),
        pytest.param(CUDA_FP16, id="cuda-fp16", marks=pytest.mark.gpu),
    ],
)
def test_real_checkpoint_scores_as_openai_clip(
    checkpoint: Path, photos: Path, shards: Path, setting: Setting, tmp_path: Path
) -> None:
    """The parity test of test_openai_parity.py on OpenAI's released ViT-B/32."""
    original: Original = run_original(checkpoint, photos, setting)
    parity = check_parity(checkpoint, photos, shards, original, setting, tmp_path)
    assert all(parity.folder.p[name] < 0.5 for name in APPROPRIATE), parity.folder.p
    log_figures(setting, checkpoint.name, gaps=parity.gaps,
                departures=departures(parity, original), p=parity.folder.p)  # fmt: skip
