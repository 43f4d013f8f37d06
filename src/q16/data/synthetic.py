"""Synthetic SMID-style data, generated on the fly, for tests and the offline demo.

Images are written in SMID's layout (``SMID_norms.csv`` + ``img/``) so the real reader is
exercised. The moral rating is tied to a visual signal (the balance of red vs. blue and a
stripe pattern) that even a randomly initialised CLIP encoder carries linearly, so prompt
tuning has something to learn while zero-shot prompts (random text tower) sit near chance.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from q16.data.labeled import LabeledImages
from q16.data.smid import IMAGE_DIR, NORMS_FILE, SMIDDataset
from q16.fileio import atomic_csv, atomic_write_text

log = logging.getLogger(__name__)

MARKER = "synthetic.json"
SIGNAL_NOISE = 0.15


def make_synthetic_smid(
    root: str | Path, n_images: int = 400, image_size: int = 64, seed: int = 0
) -> Path:
    """Write a synthetic SMID to ``root`` (reused when already there with the same settings)."""
    root = Path(root).expanduser()
    settings = {"n_images": n_images, "image_size": image_size, "seed": seed, "version": 2}
    marker = root / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == settings:
        return root
    rng = np.random.default_rng(seed)
    (root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    # moral means spread over 1..5; about a fifth fall between the thresholds and are dropped
    moral = np.clip(rng.uniform(1.0, 5.0, n_images), 1.0, 5.0)
    rows = []
    for i, score in enumerate(moral):
        name = f"synthetic_{i:05d}"
        _render(score, image_size, rng).save(root / IMAGE_DIR / f"{name}.jpg", quality=90)
        rows.append({"img_name": name, "moral_mean": round(float(score), 3), "moral_sd": 0.5})
    atomic_csv(pd.DataFrame(rows), root / NORMS_FILE)
    atomic_write_text(marker, json.dumps(settings))  # last: the images before it are whole
    log.info("wrote %d synthetic SMID images to %s", n_images, root)
    return root


def _render(moral_mean: float, size: int, rng: np.random.Generator) -> Image.Image:
    """Low moral mean -> reddish, horizontally striped; high -> bluish, vertically striped.

    The visible cue is the rating plus noise, so some images near the thresholds look like the
    other class: accuracy stays below 100 % and grows with the number of training images.
    """
    badness = (5.0 - moral_mean) / 4.0 + rng.normal(0.0, SIGNAL_NOISE)  # ~1 = worst, ~0 = best
    noise = rng.normal(0.0, 40.0, (size, size, 3))
    nuisance = rng.uniform(-60.0, 60.0, 3)  # lighting/colour cast unrelated to the rating
    base = np.empty((size, size, 3))
    base[..., 0] = 90 + 90 * badness
    base[..., 1] = 110
    base[..., 2] = 180 - 90 * badness
    base += nuisance
    stripes = (np.arange(size) // 4 % 2) * 50.0
    pattern = stripes[:, None] if badness > 0.5 else stripes[None, :]
    image = base + noise + pattern[..., None]
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


@dataclass
class SyntheticSMID:
    """SMID-shaped synthetic data, generated into ``root`` if missing."""

    root: str = "data/synthetic_smid"
    n_images: int = 400
    image_size: int = 64
    seed: int = 0
    t_low: float = 2.5
    t_high: float = 3.5

    def load(self) -> LabeledImages:
        make_synthetic_smid(self.root, self.n_images, self.image_size, self.seed)
        data = SMIDDataset(self.root, self.t_low, self.t_high).load()
        data.name = "synthetic"
        return data
