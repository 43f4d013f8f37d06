"""Active versus random selection of images to review, on synthetic embeddings.

    python scripts/bench_active_review.py            # -> results/audit/active_review.{json,png}

A simulated curator labels images by a rule that differs from the one the initial prompts
learned (the reviewer's decision direction is the training direction rotated by each of
``--angles`` degrees), so there is something to learn from the review. Embeddings are Gaussian
clusters in ``--dim`` dimensions (no CLIP model, no images). Each round the curator decides
``--batch`` more images, picked either at random or by ``q16.review.next_batch.pick`` with the
scores of the prompt re-trained in the previous round (what ``q16 next``
does: a shrinking share explores by k-means++ draws, the rest is uncertainty near the threshold
+ k-center diversity); ``active-no-explore`` is the same without the exploring share. The soft
prompt is then re-trained from the initial prompts on all decisions so far with ``fit_head``
and scored by ``evaluate`` (the functions ``train.py data=review`` runs) on a fixed held-out
labelled set. Goal (issue 13): active selection reaches random selection's final AUROC with at
most half the reviews. Every setting runs at every angle (the first is the headline ``runs``
and ``summary``); the JSON records each one's curves and whether it met the goal.
"""

from __future__ import annotations

import argparse
import functools
import logging
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import lightning as L
import numpy as np
import torch
from sklearn.metrics import precision_score

from q16.benchmarks import write_result
from q16.models.prompts import ClassEmbeddingHead
from q16.review.next_batch import POOL_FACTOR, pick
from q16.training.fit import evaluate, fit_head
from q16.training.settings import FitSettings
from q16.training.tuner import predict_proba

REPO = Path(__file__).resolve().parents[1]
THRESHOLD = 0.5
LOGIT_SCALE = 100.0


def make_data(dim: int, clusters: int, n: int, angle: float, seed: int):
    """Clustered embeddings, reviewer labels, and the training rule's direction."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=2.0, size=(clusters, dim))
    x = centers[rng.integers(clusters, size=n)] + rng.normal(size=(n, dim))
    reviewer = np.zeros(dim)
    reviewer[0] = 1.0
    other = np.zeros(dim)
    other[1] = 1.0
    rad = np.deg2rad(angle)
    trained = np.cos(rad) * reviewer + np.sin(rad) * other
    y = (x @ reviewer > 0).astype(np.int64)
    return torch.tensor(x, dtype=torch.float32), y, trained


def initial_head(direction: np.ndarray) -> ClassEmbeddingHead:
    rows = torch.tensor(np.stack([-direction, direction]), dtype=torch.float32)
    return ClassEmbeddingHead(rows, LOGIT_SCALE, trainable=True)


def fit_settings(epochs: int, seed: int) -> FitSettings:
    trainer = functools.partial(
        L.Trainer,
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        enable_checkpointing=False,
        deterministic=True,
    )
    optimizer = functools.partial(torch.optim.AdamW, lr=0.01, weight_decay=0.0)
    return FitSettings(optimizer=optimizer, batch_size=32, trainer=trainer, seed=seed)


STRATEGIES = ("random", "active", "active-no-explore")


def run_strategy(
    strategy: str, args: argparse.Namespace, angle: float, seed: int
) -> list[dict[str, float]]:
    x, y, trained = make_data(args.dim, args.clusters, args.pool + args.test, angle, seed)
    pool, test = np.arange(args.pool), np.arange(args.pool, args.pool + args.test)
    rng = np.random.default_rng(seed + 1000)
    head = initial_head(trained)
    reviewed = np.array([], dtype=np.int64)
    curve = [_point(0, head, x[test], y[test])]
    for _ in range(args.rounds):
        open_rows = np.setdiff1d(pool, reviewed)
        if strategy == "random":
            new = rng.choice(open_rows, size=args.batch, replace=False)
        else:
            with torch.no_grad():
                probs = torch.softmax(head(x[open_rows]), dim=-1)[:, 1].numpy()
            vectors = x[open_rows].numpy()
            chosen = pick(
                probs,
                THRESHOLD,
                args.batch,
                rng,
                embeddings=vectors.__getitem__,
                pool_factor=args.pool_factor,
                reviewed=None if strategy == "active-no-explore" else len(reviewed),
            )
            new = open_rows[chosen.rows]
        reviewed = np.concatenate([reviewed, new])
        if len(np.unique(y[reviewed])) == 2:  # as data=review: both classes needed to train
            head = fit_head(
                initial_head(trained),
                x[reviewed],
                y[reviewed],
                fit_settings(args.epochs, seed),
                quiet=True,
            )
        curve.append(_point(len(reviewed), head, x[test], y[test]))
    return curve


def _task(task: tuple[argparse.Namespace, str, float, int]) -> list[dict[str, float]]:
    args, strategy, angle, seed = task
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    return run_strategy(strategy, args, angle, seed)


def _point(n: int, head: ClassEmbeddingHead, x: torch.Tensor, y: np.ndarray) -> dict[str, float]:
    metrics = evaluate(head, x, y, THRESHOLD)
    flagged = predict_proba(head, x).numpy() >= THRESHOLD
    precision = precision_score(y, flagged, zero_division=0)
    return {"reviews": n, "auroc": metrics["auroc"], "precision": float(precision)}


def summarise(runs: dict[str, list[list[dict[str, float]]]], active: str = "active") -> dict:
    """Mean curves and the goal for selection ``active`` against random."""
    mean = {
        s: {
            m: np.round(np.mean([[p[m] for p in c] for c in curves], axis=0), 4).tolist()
            for m in ("auroc", "precision")
        }
        for s, curves in runs.items()
    }
    reviews = [p["reviews"] for p in runs["random"][0]]
    target = mean["random"]["auroc"][-1]
    reached = [n for n, a in zip(reviews, mean[active]["auroc"], strict=True) if a >= target]
    needed = reached[0] if reached else None
    return {
        "selection": active,
        "random_final_auroc": target,
        "active_reviews_to_reach_it": needed,
        "random_reviews": reviews[-1],
        "goal": "active reaches random's final AUROC with at most half the reviews",
        "goal_met": needed is not None and needed <= reviews[-1] / 2,
        "reviews": reviews,
        "mean": mean,
    }


def plot(by_angle: dict[float, dict[str, list[list[dict[str, float]]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(by_angle), 2, figsize=(10, 3.6 * len(by_angle)), squeeze=False)
    for row, (angle, runs) in zip(axes, by_angle.items(), strict=True):
        for strategy, curves in runs.items():
            reviews = [p["reviews"] for p in curves[0]]
            for ax, metric in zip(row, ("auroc", "precision"), strict=True):
                values = np.array([[p[metric] for p in c] for c in curves])
                ax.plot(reviews, values.mean(axis=0), marker="o", label=strategy)
                ax.fill_between(reviews, values.min(axis=0), values.max(axis=0), alpha=0.2)
                ax.set_xlabel("reviewed images")
                at = " at threshold" if metric == "precision" else ""
                ax.set_ylabel(f"held-out {metric}{at}")
                ax.set_title(f"reviewer's rule rotated {angle:g} deg", fontsize=9)
        row[0].legend()
    fig.suptitle("learning from reviews: active vs random selection (synthetic embeddings)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--clusters", type=int, default=12)
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument(
        "--angles", type=float, nargs="+", default=[60.0, 30.0, 90.0], help="first: headline"
    )
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pool-factor", type=int, default=POOL_FACTOR, help="as q16 next")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "audit")
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    tasks = [(s, a, seed) for a in args.angles for s in STRATEGIES for seed in range(args.seeds)]
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("fork")) as pool:
        done = dict(zip(tasks, pool.map(_task, [(args, *t) for t in tasks]), strict=True))
    by_angle = {
        a: {s: [done[(s, a, seed)] for seed in range(args.seeds)] for s in STRATEGIES}
        for a in args.angles
    }
    args.out.mkdir(parents=True, exist_ok=True)
    runs = by_angle[args.angles[0]]
    plot(by_angle, args.out / "active_review.png")
    setup = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result = {
        "setup": {
            **setup,
            "model": "none: synthetic Gaussian-cluster embeddings, no CLIP, no images",
            "head": "soft prompt (class embeddings, logit scale 100) trained with fit_head",
            "reviewer_rule": "training rule rotated by each of `angles` degrees",
            "strategies": list(STRATEGIES),
        },
        "summary": summarise(runs),
        "settings": {
            f"{s}@{angle:g}": summarise(r, s)
            for angle, r in by_angle.items()
            for s in STRATEGIES[1:]
        },
        "goal_met_at_every_angle": all(summarise(r)["goal_met"] for r in by_angle.values()),
        "runs": {s: runs[s] for s in STRATEGIES[:2]},
        "runs_by_angle": {f"{a:g}": r for a, r in by_angle.items()},
    }
    path = write_result(args.out, "active_review.json", result)
    print(path, result["summary"])


if __name__ == "__main__":
    main()
