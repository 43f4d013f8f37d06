"""What the nudity head (NudeNet 320n, onnxruntime) costs per image on this machine, beside
CLIP's image tower.

    python scripts/bench_nudity.py [--repeats 5] [--threads 1] [--batch 8] [--clip ViT-L-14]

Four real photographs (scikit-image's astronaut, coffee, chelsea, rocket; 300-640 px), decoded
once, repeated to a batch. Measured per image: the view a reader worker makes (NudeNet's
letterbox to 320), then ``NudeNetDetector.detect`` on the views (pad, ONNX forward pass,
candidates, NMS, boxes); and CLIP's preprocessing + ``encode_image`` for the same images with
seeded random weights (speed does not depend on their values). The two
take turns (round robin), so load from other processes falls on both alike; minimum and median
of ``--repeats`` turns. Writes ``results/bench/nudity-cpu.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image

from q16.benchmarks import write_result
from q16.detectors.nudenet import NudeNetDetector, NudeNetSettings
from q16.models.backbone import BackboneSpec, load_backbone

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--clip", default="ViT-L-14")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photos = [getattr(skimage.data, name)() for name in PHOTOS]
    arrays = [photos[i % len(photos)] for i in range(args.batch)]
    pil = [Image.fromarray(a) for a in arrays]
    detector = NudeNetDetector(NudeNetSettings(threads=args.threads, batch_size=args.batch), "cpu")
    torch.manual_seed(0)
    backbone = load_backbone(BackboneSpec(args.clip, pretrained=None), "cpu")

    view = detector.viewer()

    def nudenet_view() -> None:
        for a in arrays:
            view(a)

    def nudenet_detect() -> None:
        detector.detect(views)

    views = [view(a) for a in arrays]

    def clip() -> None:
        backbone.encode_image(torch.stack([backbone.preprocess(image) for image in pil]))

    runs = {
        "nudenet_view": nudenet_view,
        "nudenet_detect": nudenet_detect,
        f"clip_{args.clip}_image_tower": clip,
    }
    for fn in runs.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(1000 * (time.perf_counter() - start) / args.batch)
    times["nudenet_total"] = [
        a + b for a, b in zip(times["nudenet_view"], times["nudenet_detect"], strict=True)
    ]
    per_image_min = {k: round(min(v), 2) for k, v in times.items()}
    per_image_median = {k: round(statistics.median(v), 2) for k, v in times.items()}
    clip_key = f"clip_{args.clip}_image_tower"
    result = {
        "what": "ms per image, decoded RGB in memory -> NudeNet view, detections / CLIP features",
        "images": f"{', '.join(PHOTOS)} (scikit-image), {args.batch} per batch",
        "sizes": sorted({f"{a.shape[1]}x{a.shape[0]}" for a in photos}),
        "threads": args.threads,
        "repeats": args.repeats,
        "detector": detector.settings(),
        "clip": f"{args.clip}, random init (pretrained=null), float32, 224 px",
        "ms_per_image_min": per_image_min,
        "ms_per_image_median": per_image_median,
        "nudenet_total_over_clip_median": round(
            per_image_median["nudenet_total"] / per_image_median[clip_key], 3
        ),
        "note": (
            "one run, side by side, on the shared 2-core machine (other work was running); "
            "compare rows of this file only"
        ),
        "load_1m": round(os.getloadavg()[0], 2),
    }
    path = write_result(args.out, "nudity-cpu.json", result)
    print(path.read_text())


if __name__ == "__main__":
    np.random.seed(0)
    main()
