"""q16 scores images as OpenAI's original CLIP code does, proven on real photographs.

A random ViT-B/32 is built with OpenAI's own code (``clip.model.CLIP`` from clip-anytorch) and
saved as OpenAI ships its weights: a TorchScript archive with float16 matrices. It is loaded
twice, by ``clip.load(path, device, jit=False)`` as the paper's code did and by q16 with
``model.pretrained=<file> model.quick_gelu=true``. Photographs that ship inside scikit-learn and
scikit-image go through q16's folder, tar-shard and saved-embeddings paths and through the
original recipe (its ``preprocess``, ``encode_image``, normalise, softmax of 100·cos with the
paper's ViT-B-32 rows); the two must agree. Negative controls in the same test show that the
comparison can fail: GELU instead of QuickGELU, and the two prompt rows swapped.

Palette, 1-bit and alpha images are where q16 departs on purpose (it converts to RGB before
resizing; the original resizes in the file's mode): they are held to q16's documented recipe,
and their distance to the original's is checked to be a real difference (docs/parity.md).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from clip_parity import (
    CPU_FP16,
    CPU_FP32,
    CUDA_FP16,
    NAMES,
    STRICT,
    Original,
    Setting,
    check_parity,
    departures,
    log_figures,
    paper_rows,
    run_original,
    run_q16,
    write_photo_shards,
    write_photos,
)

with warnings.catch_warnings():  # clip imports pkg_resources, deprecated in setuptools
    warnings.simplefilter("ignore")
    from clip.model import CLIP, convert_weights

SEED = 0
PATCH_GAIN = 2.0
"""conv1 (the patch embedding) is scaled so that the pixels, not the class and position
embeddings, dominate the tokens: different photographs then get clearly different embeddings."""


def build_openai_vit_b32(seed: int = SEED) -> CLIP:
    """OpenAI's ViT-B/32 architecture with random weights that are far from their defaults."""
    torch.manual_seed(seed)
    model = CLIP(
        embed_dim=512,
        image_resolution=224,
        vision_layers=12,
        vision_width=768,
        vision_patch_size=32,
        context_length=77,
        vocab_size=49408,
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=12,
    )
    gains = {
        f"{name}.weight"
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.LayerNorm)
    }
    noise = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            z = torch.randn(param.shape, generator=noise)
            if name in gains:
                param.copy_(1.0 + 0.1 * z)  # gains not 1
            elif name.endswith("bias") or param.numel() == 1:
                param.add_(0.05 * z)  # biases not 0 (most start at exactly 0)
            else:
                param.add_(0.1 * param.std() * z)
        model.visual.conv1.weight.mul_(PATCH_GAIN)
    return model.eval()


def save_as_openai_release(model: CLIP, path: Path) -> Path:
    """As OpenAI ships CLIP: float16 matrices (their ``convert_weights``), traced into a
    TorchScript archive that also carries ``input_resolution``, ``context_length`` and
    ``vocab_size`` (which both loaders must drop)."""
    convert_weights(model)
    for key, value in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408)):
        if key in vars(model):  # plain ints on the eager model; tensors in OpenAI's files
            delattr(model, key)
        model.register_buffer(key, torch.tensor(value))
    inputs = {
        "encode_image": torch.zeros(1, 3, 224, 224, dtype=torch.float16),
        "encode_text": torch.zeros(1, 77, dtype=torch.long),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace_module(model, inputs, check_trace=False)
        torch.jit.save(traced, str(path))
    return path


@pytest.fixture(scope="module")
def openai_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("openai") / "ViT-B-32-random.pt"
    return save_as_openai_release(build_openai_vit_b32(), path)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def shards(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photo_shards(photos, tmp_path_factory.mktemp("shards"))


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(CPU_FP32, id="cpu-fp32"),
        pytest.param(CPU_FP16, id="cpu-fp16"),
        pytest.param(CUDA_FP16, id="cuda-fp16", marks=pytest.mark.gpu),
    ],
)
def setting(request: pytest.FixtureRequest) -> Setting:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def original(openai_checkpoint: Path, photos: Path, setting: Setting) -> Original:
    return run_original(openai_checkpoint, photos, setting)


@pytest.mark.slow
def test_q16_scores_as_openai_clip(
    openai_checkpoint: Path, photos: Path, shards: Path, original: Original, setting: Setting,
    tmp_path: Path,
) -> None:  # fmt: skip
    rows = paper_rows()
    expected = original.expected(rows)
    # the random model is not degenerate: photographs differ in embedding and in p
    unit = F.normalize(torch.from_numpy(np.stack([expected.embeddings[n] for n in STRICT])), dim=-1)
    off_diagonal = (unit @ unit.T)[~torch.eye(len(STRICT), dtype=torch.bool)]
    assert off_diagonal.min() < 0.9, off_diagonal
    assert np.ptp([expected.p[n] for n in NAMES]) > 0.1

    parity = check_parity(openai_checkpoint, photos, shards, original, setting, tmp_path)

    # the departures are real: the original's own order gives other pixels, other embeddings;
    # for every other photograph the order makes no difference at all
    moved = departures(parity, original)
    for name, effect in moved.items():
        assert effect["rel_embedding"] > setting.tol, f"{name}: no departure, see docs/parity.md"
    assert all(np.array_equal(original.literal[n], original.rgb_first[n]) for n in STRICT)

    figures: dict[str, object] = {"gaps": parity.gaps, "departures": moved}
    if setting.precision == "fp16":  # float16's own rounding: the original, fp16 against fp32
        fp32 = run_original(openai_checkpoint, photos, CPU_FP32).expected(rows)
        figures["original fp16 vs fp32"] = expected.gap(fp32, NAMES)
    log_figures(setting, "random ViT-B/32 (TorchScript, float16 matrices)", **figures)


@pytest.mark.slow
def test_fast_decoding_gap_is_measured(
    openai_checkpoint: Path, photos: Path, shards: Path, tmp_path: Path
) -> None:
    """``infer.decode=fast`` (libjpeg-turbo, uint8 tensor resize) against the original recipe,
    CPU fp32, folder and tar paths: held under 1e-3 and logged for docs/parity.md. It is not the
    default because it misses the 1e-4 the default holds (about 0.4 % of the resized pixels
    differ from PIL's by one level)."""
    expected = run_original(openai_checkpoint, photos, CPU_FP32).expected(paper_rows())
    weights = [f"model.pretrained={openai_checkpoint}", "model.quick_gelu=true"]
    inputs = {
        "folder": ["data=folder", f"data.path={photos}"],
        "tar": ["data=imagenet", f"data.shards={shards}"],
    }
    gaps = {}
    for path, data in inputs.items():
        summary, scored = run_q16(tmp_path / path, CPU_FP32, *weights, *data, "infer.decode=fast")
        assert summary["decode"] == "fast" and summary["errors"] == 0
        gaps[path] = scored.gap(expected, NAMES)
        assert max(gaps[path]) <= 1e-3, (path, gaps[path])
    log_figures(CPU_FP32, "random ViT-B/32, infer.decode=fast", gaps=gaps)
