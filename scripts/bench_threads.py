"""Torch threads against busy cores on the CPU: why infer.py sets threads = cores - workers.

    python scripts/bench_threads.py --batches 20

The tiny model's forward pass (random weights, batch 64, uint8 images as infer.py hands them
to the scorer) timed at each thread count from 1 to the core count, with the machine idle and
with one core kept busy by a spinning process per DataLoader worker (as a decoding worker keeps
it). Medians of ``--batches`` timed batches after a warm-up, all in one run, so the ratios
compare like with like. Writes ``results/bench/threads-cpu.json``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from pathlib import Path

import torch
from PIL import Image

from q16.benchmarks import random_weight_scorer, write_result
from q16.inference.settings import cpu_threads, usable_cores

REPO = Path(__file__).resolve().parents[1]


def _spin(stop: mp.synchronize.Event) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def _median_ms(scorer, images: torch.Tensor, threads: int, batches: int) -> float:
    torch.set_num_threads(threads)
    scorer.score_images(images)  # warm-up at this thread count
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        scorer.score_images(images)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out-dir", type=Path, default=REPO / "results" / "bench")
    args = parser.parse_args()
    device = torch.device("cpu")
    _, scorer, pre = random_weight_scorer("q16-tiny", device)
    one = pre(Image.new("RGB", (256, 256), (90, 120, 30)))
    images = one.unsqueeze(0).repeat(args.batch_size, 1, 1, 1)
    cores = usable_cores()
    counts = list(range(1, cores + 1))
    results: dict[str, dict[str, float]] = {}
    for busy in (0, 1):
        stop = mp.Event()
        spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(busy)]
        for p in spinners:
            p.start()
        try:
            results[f"busy_cores_{busy}"] = {
                f"threads_{t}": _median_ms(scorer, images, t, args.batches) for t in counts
            }
        finally:
            stop.set()
            for p in spinners:
                p.join()
    busy = results["busy_cores_1"]
    result = {
        "what": "median ms per forward pass of a batch, tiny model, by torch threads",
        "model": "q16-tiny",
        "weights": "random init (speed does not depend on their values)",
        "batch_size": args.batch_size,
        "batches": args.batches,
        "cores": cores,
        "ms_per_batch": results,
        "ratio_all_threads_over_1_with_a_busy_core": round(
            busy[f"threads_{cores}"] / busy["threads_1"], 3
        ),
        "threads_infer_sets_with_one_worker": cpu_threads(1, 1),
        "setup": "a shared 2-core machine: other work (other sessions' tests) ran beside it",
    }
    print(write_result(args.out_dir, "threads-cpu.json", result))


if __name__ == "__main__":
    main()
