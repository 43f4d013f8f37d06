"""Model-only throughput against batch size, to choose ``infer.batch_size`` for a device.

    python scripts/bench_batch_size.py --model ViT-L-14 --batch-sizes 1 4 8 16 32

The same uint8 images, already decoded and resized, scored at each batch size; sizes are
measured in interleaved rounds and each is summarised by its best round (least disturbed).
Weights are random: speed does not depend on their values.
Writes ``results/bench/batch-size-<model>-<device>.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from q16.benchmarks import model_only, random_weight_scorer, write_result
from q16.inference.reader import ImageDecoder
from q16.sources.wds import synthetic_images

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16, 32, 64])
    parser.add_argument("--images", type=int, default=64, help="scored at every batch size")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=REPO / "results" / "bench")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _, scorer, pre = random_weight_scorer(args.model, device)
    decoder = ImageDecoder(pre)
    images = torch.stack([decoder(s["jpg"]) for s in synthetic_images(args.images, seed=0)])

    runs: dict[int, list[float]] = {size: [] for size in args.batch_sizes}
    for _ in range(args.repeats):
        for size in args.batch_sizes:
            runs[size].append(model_only(scorer, images, size))
            print(f"batch {size:4d}: {runs[size][-1]:.2f} img/s", flush=True)
    best = {size: max(values) for size, values in runs.items()}
    result = {
        "model": args.model,
        "pretrained": None,
        "random_weights": True,
        "device": str(device),
        "autocast": scorer.autocast,
        "images": args.images,
        "torch_threads": torch.get_num_threads(),
        "images_per_s_by_batch_size": {str(k): round(v, 3) for k, v in best.items()},
        "runs": {str(k): [round(x, 3) for x in v] for k, v in runs.items()},
        "fastest_batch_size": max(best, key=lambda size: best[size]),
    }
    path = write_result(args.out_dir, f"batch-size-{args.model}-{device.type}.json", result)
    print(f"fastest: batch {result['fastest_batch_size']}; wrote {path}")


if __name__ == "__main__":
    main()
