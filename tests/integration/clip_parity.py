"""What the parity tests share: real photographs, OpenAI's original recipe, q16's three input
paths, and the gap between them. Used by test_openai_parity.py (a random ViT-B/32 in OpenAI's
format) and test_real_weights.py (OpenAI's released weights)."""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from hydra.core.global_hydra import GlobalHydra
from PIL import Image
from safetensors.torch import load_file
from sklearn.datasets import load_sample_images

from q16 import infer
from q16.models.paper_assets import paper_prompt_file
from q16.sources.wds import write_shards

with warnings.catch_warnings():  # clip imports pkg_resources, deprecated in setuptools
    warnings.simplefilter("ignore")
    import clip
    import skimage.data
    from clip.model import convert_weights

log = logging.getLogger(__name__)

STRICT = {
    "china.jpg": "scikit-learn's temple, the JPEG as shipped",
    "flower.jpg": "scikit-learn's flower, the JPEG as shipped",
    "camera.png": "scikit-image's cameraman, grayscale (L)",
    "rocket.jpg": "scikit-image's rocket launch",
    "astronaut-portrait.png": "a 256x512 portrait crop",
    "china-panorama.jpg": "a 640x160 panorama crop",
    "coffee-tiny.png": "16x12 pixels",
    "chelsea-large.jpg": "3000x2000, upscaled",
}
"""Photographs that must match the original recipe exactly."""
DEPARTURES = {
    "flower-palette.png": "P: 256 adaptive colours",
    "camera-1bit.png": "1: dithered black and white",
    "astronaut-alpha.png": "RGBA: alpha falling from 255 to 0 across the image",
}
"""Modes whose pixels the original resizes before converting them to RGB, where q16 converts
first (docs/parity.md): held to q16's documented recipe."""
NAMES = sorted({**STRICT, **DEPARTURES})


@dataclass(frozen=True)
class Setting:
    """Where both sides run, in which precision, and the tolerance on |Δp| and on the relative
    embedding difference."""

    device: str
    precision: str
    tol: float


CPU_FP32 = Setting("cpu", "fp32", 1e-4)
# float16 as the paper ran it: its rounding alone moves the random model's embeddings by about
# 1.2e-3 (float16 against float32, docs/parity.md), so two float16 implementations agree only
# to about that
CPU_FP16 = Setting("cpu", "fp16", 3e-3)
CUDA_FP16 = Setting("cuda", "fp16", 3e-3)


def write_photos(folder: Path) -> Path:
    """Real photographs shipped inside scikit-learn and scikit-image, in the shapes and modes
    users send: grayscale, portrait, panorama, tiny, large, palette, 1-bit, alpha."""
    folder.mkdir(parents=True, exist_ok=True)
    sample = load_sample_images()
    for file in sample.filenames:  # china.jpg, flower.jpg, byte for byte
        shutil.copyfile(file, folder / Path(file).name)
    china, flower = (Image.fromarray(a) for a in sample.images)
    camera = Image.fromarray(skimage.data.camera())
    astronaut = Image.fromarray(skimage.data.astronaut())
    alpha = np.tile(np.linspace(255, 0, astronaut.width).astype(np.uint8), (astronaut.height, 1))
    coffee = Image.fromarray(skimage.data.coffee())
    chelsea = Image.fromarray(skimage.data.chelsea())
    made = {
        "camera.png": camera,
        "rocket.jpg": Image.fromarray(skimage.data.rocket()),
        "astronaut-portrait.png": astronaut.crop((128, 0, 384, 512)),
        "china-panorama.jpg": china.crop((0, 150, 640, 310)),
        "coffee-tiny.png": coffee.resize((16, 12), Image.Resampling.LANCZOS),
        "chelsea-large.jpg": chelsea.resize((3000, 2000), Image.Resampling.BICUBIC),
        "flower-palette.png": flower.convert("P", palette=Image.Palette.ADAPTIVE, colors=256),
        "camera-1bit.png": camera.convert("1"),
        "astronaut-alpha.png": Image.fromarray(np.dstack([np.asarray(astronaut), alpha])),
    }
    for name, image in made.items():
        image.save(folder / name, **({"quality": 90} if name.endswith(".jpg") else {}))
    assert sorted(p.name for p in folder.iterdir()) == NAMES
    return folder


def write_photo_shards(photos: Path, folder: Path) -> Path:
    """The same files, byte for byte, as WebDataset tar shards."""
    samples = ({"__key__": p.stem, p.suffix[1:]: p.read_bytes()} for p in sorted(photos.iterdir()))
    write_shards(samples, str(folder / "photos-%06d.tar"), maxcount=6)
    return folder


def paper_rows() -> torch.Tensor:
    """The paper's learned ViT-B-32 prompts: row 0 appropriate, row 1 inappropriate."""
    return load_file(str(paper_prompt_file("ViT-B-32")))["class_embeddings"]


def paper_p(embeddings: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The paper's score: softmax over 100·cos(image, row), the inappropriate column."""
    cos = F.normalize(embeddings.float(), dim=-1) @ F.normalize(rows.float(), dim=-1).T
    return (100.0 * cos).softmax(dim=-1)[:, 1]


@dataclass
class Scored:
    """p(inappropriate) and image embeddings (float32, unnormalised) by file name."""

    p: dict[str, float]
    embeddings: dict[str, np.ndarray]

    def gap(self, reference: Scored, names: Iterable[str]) -> tuple[float, float]:
        """Largest |Δp| and largest relative embedding difference over ``names``."""
        dp, rel = 0.0, 0.0
        for name in names:
            dp = max(dp, abs(self.p[name] - reference.p[name]))
            if name in self.embeddings:
                mine, theirs = self.embeddings[name], reference.embeddings[name]
                rel = max(rel, float(np.linalg.norm(mine - theirs) / np.linalg.norm(theirs)))
        return dp, rel


@dataclass
class Original:
    """OpenAI's code on every photograph: as the paper ran it (``Image.open`` -> ``preprocess``)
    and in q16's documented order (``Image.open(...).convert("RGB")`` -> ``preprocess``)."""

    literal: dict[str, np.ndarray]
    rgb_first: dict[str, np.ndarray]
    pixel_gap: dict[str, float]
    """Mean |difference| of the two orders' 224x224 RGB inputs, in 8-bit levels."""

    def scored(self, rows: torch.Tensor, rgb_first: Iterable[str] = ()) -> Scored:
        """The recipe's scores, taking ``rgb_first`` images in q16's documented order."""
        first = set(rgb_first)
        chosen = {n: (self.rgb_first if n in first else self.literal)[n] for n in self.literal}
        names = sorted(chosen)
        p = paper_p(torch.from_numpy(np.stack([chosen[n] for n in names])), rows)
        return Scored(dict(zip(names, p.tolist(), strict=True)), chosen)

    def expected(self, rows: torch.Tensor) -> Scored:
        """What q16 promises: the original recipe, RGB conversion first for the departures."""
        return self.scored(rows, rgb_first=DEPARTURES)


def run_original(checkpoint: Path, photos: Path, setting: Setting) -> Original:
    """``clip.load(checkpoint, device, jit=False)``, its ``preprocess`` and ``encode_image``,
    in float16 for a float16 setting (clip.load keeps float16 on GPUs only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, preprocess = clip.load(str(checkpoint), device=setting.device, jit=False)
    if setting.precision == "fp16" and setting.device == "cpu":
        convert_weights(model)
    dtype = model.visual.conv1.weight.dtype
    assert dtype == (torch.float16 if setting.precision == "fp16" else torch.float32)
    files = sorted(photos.iterdir())
    std = torch.tensor(preprocess.transforms[-1].std).view(1, 3, 1, 1)

    def inputs(images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([preprocess(image) for image in images])

    @torch.no_grad()
    def encode(batch: torch.Tensor) -> dict[str, np.ndarray]:
        features = model.encode_image(batch.to(setting.device, dtype)).float().cpu().numpy()
        return {f.name: row for f, row in zip(files, features, strict=True)}

    literal = inputs([Image.open(f) for f in files])
    rgb_first = inputs([Image.open(f).convert("RGB") for f in files])
    levels = ((literal - rgb_first) * std * 255).abs().mean(dim=(1, 2, 3))
    return Original(
        literal=encode(literal),
        rgb_first=encode(rgb_first),
        pixel_gap={f.name: float(v) for f, v in zip(files, levels, strict=True)},
    )


def run_q16(root: Path, setting: Setting, *overrides: str) -> tuple[dict[str, Any], Scored]:
    """``python infer.py model=ViT-B-32 ...`` as the CLI composes it; scores and the saved
    embeddings (an image run saves them, a ``data=embeddings`` run re-scores them)."""
    from conftest import compose_config

    if setting.device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    out = root / "out"
    cfg = compose_config(
        "infer",
        [
            "model=ViT-B-32",
            f"model.precision={setting.precision}",
            f"fabric.accelerator={'gpu' if setting.device == 'cuda' else 'cpu'}",
            "infer.autocast=off",
            "infer.batch_size=8",
            "infer.num_workers=0",
            "infer.progress=false",
            "infer.save_embeddings=true",
            f"infer.out_dir={out}",
            *overrides,
        ],
        root,
    )
    try:
        summary = infer.run(cfg)
    finally:
        GlobalHydra.instance().clear()
    frames, embeddings = [], {}
    for path in sorted((out / "scores").glob("*.parquet")):
        frame = pq.read_table(path).to_pandas()
        saved = out / "embeddings" / f"{path.stem}.npy"
        if saved.is_file():
            embeddings.update(zip(frame.file_name, np.load(saved), strict=True))
        frames.append(frame)
    scores = pd.concat(frames, ignore_index=True)
    p = dict(zip(scores.file_name, scores.p_inappropriate.astype(float), strict=True))
    return summary, Scored(p, embeddings)


def assert_within(scored: Scored, expected: Scored, tol: float, what: str) -> None:
    dp, rel = scored.gap(expected, NAMES)
    assert sorted(scored.p) == NAMES, what
    assert dp <= tol and rel <= tol, f"{what}: |Δp| {dp:.2e}, relative embedding {rel:.2e}"


@dataclass
class Parity:
    """What :func:`check_parity` measured: the folder run's scores and, per comparison, the
    largest |Δp| and relative embedding difference."""

    folder: Scored
    gaps: dict[str, tuple[float, float]]


def check_parity(
    checkpoint: Path, photos: Path, shards: Path, original: Original, setting: Setting, root: Path
) -> Parity:
    """q16 on ``checkpoint`` (``model.pretrained=<file> model.quick_gelu=true``) through its
    folder, tar-shard and saved-embeddings paths against the original recipe, then the negative
    controls: the same comparison must fail without QuickGELU and with the rows swapped."""
    rows, tol = paper_rows(), setting.tol
    expected = original.expected(rows)
    weights = [f"model.pretrained={checkpoint}", "model.quick_gelu=true"]
    # no prompt.path: the paper's prompts are the default for OpenAI weights
    summary, folder = run_q16(root / "folder", setting, *weights, "data=folder",
                              f"data.path={photos}")  # fmt: skip
    assert summary["images_scored"] == len(NAMES) and summary["errors"] == 0
    assert summary["prompt_source"] == str(paper_prompt_file("ViT-B-32").resolve())
    _, tar = run_q16(root / "tar", setting, *weights, "data=imagenet", f"data.shards={shards}")
    _, saved = run_q16(root / "embeddings", setting, *weights, "data=embeddings",
                       f"data.path={root / 'folder' / 'out'}")  # fmt: skip
    runs = {"folder": folder, "tar": tar, "embeddings": saved}
    for path, scored in runs.items():
        assert_within(scored, expected, tol, path)
    assert saved.p == folder.p  # re-scoring saved embeddings is exact

    _, gelu = run_q16(root / "gelu", setting, f"model.pretrained={checkpoint}",
                      "model.quick_gelu=false", "prompt.path=paper", "data=folder",
                      f"data.path={photos}")  # fmt: skip
    swapped = original.scored(rows[[1, 0]], rgb_first=DEPARTURES)
    with pytest.raises(AssertionError):
        assert_within(gelu, expected, tol, "GELU instead of QuickGELU")
    with pytest.raises(AssertionError):
        assert_within(folder, swapped, tol, "rows swapped")
    gaps = {path: scored.gap(expected, NAMES) for path, scored in runs.items()}
    gaps["control: GELU"] = gelu.gap(expected, NAMES)
    gaps["control: rows swapped"] = folder.gap(swapped, NAMES)
    return Parity(folder, gaps)


def departures(parity: Parity, original: Original) -> dict[str, dict[str, float]]:
    """Per departure: how far q16's order lands from the original's own (pixels, embedding, p)."""
    literal = original.scored(paper_rows())
    figures = {}
    for name in DEPARTURES:
        dp, rel = parity.folder.gap(literal, [name])
        figures[name] = {"pixel_levels": original.pixel_gap[name], "rel_embedding": rel, "dp": dp}
    return figures


def log_figures(setting: Setting, checkpoint: str, **figures: Any) -> None:
    """One JSON line with what a parity test measured (docs/parity.md quotes them); shown with
    ``pytest -o log_cli=true --log-cli-level=INFO``."""
    record = {"setting": asdict(setting), "checkpoint": checkpoint, **figures}
    log.info("parity figures: %s", json.dumps(record, default=float))
