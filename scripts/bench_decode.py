"""Decoding per core: JPEG bytes -> a uint8 (N, 3, 224, 224) batch, PIL path vs fast path
(vs GPU decoding when CUDA is there), and the workers needed to feed a GPU.

    python scripts/bench_decode.py --images 64 --repeats 3

The JPEGs are made from real photographs shipped by scikit-image and scikit-learn (astronaut,
chelsea, coffee, rocket, camera (grayscale), china, flower), centre-cropped to 4:3 and resized
(PIL bicubic): "imagenet-like" 500x375 at quality 95 (ImageNet's typical size), "img2dataset-like"
341x256 at quality 95 (img2dataset's usual resize_mode=keep_ratio, 256 px). Each image is decoded
with ``q16.pixels.ImageDecoder`` and open_clip's 224-px preprocessing (ViT-B/16 and ViT-L/14's),
one thread (``torch.set_num_threads(1)``), best of ``--repeats`` passes. Writes
``results/bench/decode-<cpu|cuda>.json``.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_infer import REPO, write_result  # scripts/ is on sys.path when run as a script
from PIL import Image
from sklearn.datasets import load_sample_images

from q16.pixels import ImageDecoder, UInt8Preprocess

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import skimage.data

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")
KINDS = {"imagenet_like": ((500, 375), 95), "img2dataset_like": ((341, 256), 95)}
FEED = {"ViT-L-14": 3000, "ViT-B-16": 12000}
"""Images/s one H100/H200 runs (issue 20): ViT-L/14 in bf16, ViT-B/16 at its lower bound."""


def photographs() -> list[Image.Image]:
    images = [Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS]
    images += [Image.fromarray(a) for a in load_sample_images().images]
    return [image.convert("RGB") if image.mode != "L" else image for image in images]


def to_4_3(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    w, h = image.size
    cw, ch = (w, round(w * 3 / 4)) if w * 3 <= h * 4 else (round(h * 4 / 3), h)
    box = ((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)
    return image.crop(box).resize(size, Image.Resampling.BICUBIC)


def make_jpegs(n: int, size: tuple[int, int], quality: int) -> list[bytes]:
    base = [to_4_3(p, size) for p in photographs()]
    out = []
    for i in range(n):  # each photo mirrored or not, so that the bytes differ per image
        image = base[i % len(base)]
        if (i // len(base)) % 2:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        out.append(buffer.getvalue())
    return out


def rates(
    fns: dict[str, Callable[[], Any]], n: int, repeats: int, sync: Callable[[], None]
) -> dict[str, float]:
    """Images/s of each ``fn`` (each handles ``n`` images), run in turn ``repeats`` times after a
    warm-up (so that other work on the machine disturbs them alike); the best run of each."""
    best = dict.fromkeys(fns, 0.0)
    for fn in fns.values():
        fn()
    sync()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            best[name] = max(best[name], n / (time.perf_counter() - start))
    return {name: round(value, 1) for name, value in best.items()}


def pixel_gap(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    gap = (a.int() - b.int()).abs()
    return {
        "mean_levels": round(float(gap.float().mean()), 5),
        "max_levels": int(gap.max()),
        "share_of_values_differing": round(float((gap > 0).float().mean()), 5),
    }


def cpu_figures(jpegs: list[bytes], pre: UInt8Preprocess, repeats: int) -> dict[str, Any]:
    decoders = {mode: ImageDecoder(pre, mode=mode) for mode in ("pil", "fast")}
    batches = {m: torch.stack([d(x) for x in jpegs]) for m, d in decoders.items()}
    runs = {
        f"{m}_images_per_s": lambda d=d: torch.stack([d(x) for x in jpegs])
        for m, d in decoders.items()
    }
    runs["pil_decode_only_images_per_s"] = lambda: [
        Image.open(io.BytesIO(x)).convert("RGB") for x in jpegs
    ]
    measured = rates(runs, len(jpegs), repeats, lambda: None)
    ratio = measured["fast_images_per_s"] / measured["pil_images_per_s"]
    return {
        "mean_bytes": round(float(np.mean([len(x) for x in jpegs]))),
        **measured,
        "fast_over_pil": round(ratio, 3),
        "pixels_fast_vs_pil": pixel_gap(batches["fast"], batches["pil"]),
        "workers_needed": {
            f"{model} at {need}/s": {
                mode: math.ceil(need / measured[f"{mode}_images_per_s"]) for mode in decoders
            }
            for model, need in FEED.items()
        },
    }


def gpu_figures(
    jpegs: list[bytes], pre: UInt8Preprocess, repeats: int, device: torch.device | None
) -> dict[str, Any]:
    """Batched decoding + resize on ``device`` (``q16.inference.gpu_decode``): nvJPEG on CUDA;
    ``--batch-device cpu`` runs the same code on the CPU (a rehearsal)."""
    if device is None:
        return {"not measured": "no CUDA device on this machine"}
    try:
        from q16.inference.gpu_decode import BatchDecoder
    except ImportError as err:
        return {"not measured": f"q16.inference.gpu_decode not available ({err})"}
    decoder = BatchDecoder(pre, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    cpu = torch.stack([ImageDecoder(pre, mode="pil")(x) for x in jpegs])
    got = decoder.decode(jpegs)
    return {
        **rates(
            {"images_per_s": lambda: decoder.decode(jpegs)},
            len(jpegs),
            repeats,
            sync,
        ),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "pixels_gpu_vs_pil": pixel_gap(got.images.cpu(), cpu),
        "fallbacks": len(got.fallbacks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64, help="JPEGs per kind")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu-images", type=int, default=1024, help="JPEGs per GPU batch")
    parser.add_argument(
        "--batch-device", default=None, help="where to decode batches (default: cuda if there)"
    )
    parser.add_argument("--out-dir", type=Path, default=REPO / "results" / "bench")
    args = parser.parse_args()
    batch_device = args.batch_device or ("cuda" if torch.cuda.is_available() else None)
    torch.set_num_threads(1)
    import open_clip

    pre = UInt8Preprocess.from_transform(open_clip.image_transform(224, is_train=False))
    result: dict[str, Any] = {
        "setup": {
            "photographs": [*PHOTOS, "china", "flower"],
            "kinds": {k: {"size": list(s), "quality": q} for k, (s, q) in KINDS.items()},
            "images_per_kind": args.images,
            "preprocessing": "open_clip 224 px: Resize(224, bicubic), CenterCrop(224) "
            "(ViT-B-16 and ViT-L-14)",
            "torch_threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "summary": "best of the repeats; rates are per core (one thread)",
            "shared_machine": "the CPU is shared with other work; ratios are side by side",
            "load_average_1min_before": os.getloadavg()[0],
        },
    }
    for kind, (size, quality) in KINDS.items():
        jpegs = make_jpegs(args.images, size, quality)
        result[kind] = cpu_figures(jpegs, pre, args.repeats)
        gpu_jpegs = make_jpegs(args.gpu_images, size, quality)
        result[kind]["gpu"] = gpu_figures(
            gpu_jpegs, pre, args.repeats, torch.device(batch_device) if batch_device else None
        )
        print(kind, {k: v for k, v in result[kind].items() if "per_s" in k or "over" in k})
    result["setup"]["load_average_1min_after"] = os.getloadavg()[0]
    result["goals"] = {
        "fast_ge_1.8x_pil_imagenet_like": result["imagenet_like"]["fast_over_pil"] >= 1.8
    }
    name = f"decode-{'cuda' if torch.cuda.is_available() else 'cpu'}.json"
    print(f"wrote {write_result(args.out_dir, name, result)}")


if __name__ == "__main__":
    main()
