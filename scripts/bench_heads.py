"""What each extra head costs per batch of features, against one head.

    python scripts/bench_heads.py [--batch 256] [--repeats 50] [--threads 1]

768-d features (ViT-L-14's width), scored by ``Scorer.score_features`` with 1, 2, 4 and 8
class-embedding heads (the paper's ViT-L-14 prompts, then random (2, 768) prompts) and with one
concept head (3 categories x 10 phrases, 10 neutral phrases; random unit vectors: the cost does
not depend on the phrases). Random features, no CLIP weights. The configurations take turns
(round robin), so load from other processes falls on all of them alike; the minimum and the
median of ``--repeats`` turns are reported. Writes ``results/bench/heads-cpu.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from q16.benchmarks import write_result
from q16.inference.scorer import Scorer
from q16.models.backbone import BackboneSpec
from q16.models.concepts import ConceptHead
from q16.models.prompt_head import PromptHead
from q16.models.prompt_io import load_prompt
from q16.models.prompts import ClassEmbeddingHead
from q16.models.space import embedding_space_backbone

REPO = Path(__file__).resolve().parents[1]

DIM = 768


def timed_ms(scorer: Scorer, features: torch.Tensor) -> float:
    start = time.perf_counter()
    scorer.score_features(features)
    return 1000 * (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backbone = embedding_space_backbone(BackboneSpec("ViT-L-14"), "cpu")
    paper, _ = load_prompt("paper", model="ViT-L-14")
    heads: list[PromptHead] = [paper] + [
        ClassEmbeddingHead(torch.randn(2, DIM), trainable=False) for _ in range(7)
    ]
    concept = ConceptHead(torch.randn(10, DIM), {f"c{i}": torch.randn(10, DIM) for i in range(3)})
    scorers = {
        f"{k}_class_embedding_heads": Scorer(
            backbone, paper, (0.0,), (1.0,), heads={f"h{i}": h for i, h in enumerate(heads[:k])}
        )
        for k in (1, 2, 4, 8)
    }
    scorers["paper_plus_1_concept_head"] = Scorer(
        backbone, paper, (0.0,), (1.0,), heads={"q16": paper, "c": concept}
    )
    features = torch.randn(args.batch, DIM)
    times: dict[str, list[float]] = {name: [] for name in scorers}
    for turn in range(args.repeats + 1):
        for name, scorer in scorers.items():
            ms = timed_ms(scorer, features)
            if turn:  # the first turn warms up
                times[name].append(ms)
    result = {
        "what": "Scorer.score_features per batch (ms), random 768-d features",
        "batch": args.batch,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "ms_per_batch_min": {k: round(min(v), 3) for k, v in times.items()},
        "ms_per_batch_median": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "note": "compare rows of this file only (one run, side by side)",
        "load_1m": round(os.getloadavg()[0], 2),
    }
    path = write_result(REPO / "results" / "bench", "heads-cpu.json", result)
    print(path.read_text())


if __name__ == "__main__":
    main()
