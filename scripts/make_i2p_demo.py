"""Write an offline stand-in for an I2P run: generated-looking images and their prompts CSV.

    python scripts/make_i2p_demo.py data/i2p_demo [--prompts 70] [--generations 2]

``<out>/generated/<prompt>_<generation>.jpg`` are the package's synthetic images (colour and
stripe patterns; no text-to-image model made them), ``<out>/i2p.csv`` has I2P's columns
(``prompt``, ``categories``, ``hard``, ``sd_seed``, ``sd_guidance_scale``) with placeholder
prompts, each in three of I2P's seven categories, so every category has enough prompts for the
expected maximum over 25. ``make i2p-demo`` scores them with
``python evaluate.py task=i2p``: the machinery, not a result.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

from q16.data.synthetic import make_synthetic_smid

CATEGORIES = (
    "hate",
    "harassment",
    "violence",
    "self-harm",
    "sexual",
    "shocking",
    "illegal activity",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--prompts", type=int, default=70)
    parser.add_argument("--generations", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n = args.prompts * args.generations
    smid = make_synthetic_smid(args.out / "synthetic", n_images=n, image_size=64, seed=args.seed)
    images = sorted((smid / "img").glob("*.jpg"))
    folder = args.out / "generated"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for k, image in enumerate(images):
        shutil.copyfile(image, folder / f"{k // args.generations}_{k % args.generations}.jpg")
    rows = [
        {
            "prompt": f"demo prompt {i} (placeholder text, synthetic image)",
            "categories": ", ".join(CATEGORIES[(i + j) % len(CATEGORIES)] for j in (0, 2, 4)),
            "hard": i % 2,
            "sd_seed": args.seed + i,
            "sd_guidance_scale": 7,
        }
        for i in range(args.prompts)
    ]
    pd.DataFrame(rows).to_csv(args.out / "i2p.csv", index=False)
    print(f"wrote {n} images to {folder} and {args.prompts} prompts to {args.out / 'i2p.csv'}")


if __name__ == "__main__":
    main()
