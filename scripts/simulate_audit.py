"""Do the audit's 95 % intervals cover the truth? Repeated audits of synthetic populations.

    python scripts/simulate_audit.py                      # -> results/audit/coverage.{json,md}
    python scripts/simulate_audit.py --reps 100 --population 20000 --out /tmp/cov   # quick look

Each setting is a synthetic population with a known share of inappropriate images (the
truth) and scores from a two-component mixture (inappropriate images score higher, with
overlap, so there are false alarms above the threshold and misses below). Every repetition
draws a fresh audit with the real design (``q16.review.audit.design_audit``), "reviews" it
with the true labels and runs the real estimator (``q16.review.estimates.estimate``); we count
how often each interval holds the true value and how wide it is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from q16.review.audit import design_audit
from q16.review.estimates import estimate

REPO = Path(__file__).resolve().parents[1]
SETTINGS = [  # (prevalence, audit size, separation of the two score components)
    (0.005, 400, 2.5),
    (0.02, 400, 2.5),
    (0.05, 400, 2.5),
    (0.2, 400, 2.5),
    (0.005, 1000, 2.5),
    (0.05, 200, 2.5),
    (0.05, 400, 0.3),  # a nearly blind classifier (e.g. random weights)
]
THRESHOLD = 0.5


def population(
    n: int, prevalence: float, separation: float, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """True labels and scores: logit score = separation * (2y - 1) - 1 + N(0, 1.5)."""
    y = rng.random(n) < prevalence
    logit = separation * (2 * y - 1) - 1.0 + rng.normal(0.0, 1.5, n)
    return y, 1 / (1 + np.exp(-logit))


def one_setting(
    prevalence: float, n_audit: int, separation: float, size: int, reps: int, seed: int
) -> dict:
    rng = np.random.default_rng(seed)
    y, scores = population(size, prevalence, separation, rng)
    flagged = scores >= THRESHOLD
    truth = {
        "prevalence": float(y.mean()),
        "precision": float(y[flagged].mean()) if flagged.any() else float("nan"),
        "missed_share": float(y[~flagged].mean()),
    }
    hits = {k: 0 for k in truth}
    widths: dict[str, list[float]] = {k: [] for k in truth}
    points: dict[str, list[float]] = {k: [] for k in truth}
    skipped = 0
    classes = ["x"] * n_audit
    for rep in range(reps):
        sample = design_audit(scores, THRESHOLD, n_audit, seed=seed * 100_000 + rep)
        decisions = np.where(y[sample.index], "remove", "keep").tolist()
        est = estimate(sample.plan, sample.stratum, decisions, classes[: len(decisions)])
        found = {
            "prevalence": est.prevalence,
            "precision": est.precision,
            "missed_share": est.missed,
        }
        if any(v is None for v in found.values()):
            skipped += 1
            continue
        for k, e in found.items():
            assert e is not None
            hits[k] += e.low <= truth[k] <= e.high
            widths[k].append(e.high - e.low)
            points[k].append(e.share)
    done = reps - skipped
    return {
        "prevalence_set": prevalence,
        "audit_size": n_audit,
        "separation": separation,
        "population": size,
        "flagged": int(flagged.sum()),
        "truth": truth,
        "repetitions": reps,
        "repetitions_without_estimate": skipped,
        "coverage": {k: hits[k] / done for k in truth},
        "mean_width": {k: float(np.mean(widths[k])) for k in truth},
        "mean_estimate": {k: float(np.mean(points[k])) for k in truth},
    }


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def markdown(record: dict) -> str:
    lines = [
        "# Coverage of the audit's 95 % intervals",
        "",
        f"Made by `{record['setup']['command']}` on {record['setup']['date']} "
        f"(git {record['setup']['git_commit'][:10]}, {record['setup']['machine']}, "
        f"{record['setup']['seconds']:.0f} s). Synthetic populations of "
        f"{record['settings'][0]['population']:,} images, threshold {THRESHOLD}, "
        f"{record['settings'][0]['repetitions']:,} audits per setting, real design and "
        "estimator; no model involved (scores are drawn from a mixture).",
        "",
        "| prevalence | audit | separation | flagged | coverage prevalence | precision "
        "| missed share | mean width prevalence | precision | missed share |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in record["settings"]:
        c, w = s["coverage"], s["mean_width"]
        lines.append(
            f"| {100 * s['truth']['prevalence']:.2f} % | {s['audit_size']} | {s['separation']} "
            f"| {s['flagged']:,} "
            f"| {100 * c['prevalence']:.1f} % | {100 * c['precision']:.1f} % "
            f"| {100 * c['missed_share']:.1f} % | {100 * w['prevalence']:.2f} pt "
            f"| {100 * w['precision']:.1f} pt | {100 * w['missed_share']:.2f} pt |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--population", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "audit")
    args = parser.parse_args(argv)
    start, commit = time.perf_counter(), _commit()  # the code that ran, not a later HEAD
    settings = [
        one_setting(p, n, sep, args.population, args.reps, seed=i + 1)
        for i, (p, n, sep) in enumerate(SETTINGS)
    ]
    record = {
        "setup": {
            "command": f"python scripts/simulate_audit.py --reps {args.reps} "
            f"--population {args.population}",
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "git_commit": commit,
            "machine": f"{platform.machine()}, {platform.python_implementation()} "
            f"{platform.python_version()}",
            "seconds": time.perf_counter() - start,
            "model": "none (synthetic scores from a logistic mixture)",
            "threshold": THRESHOLD,
            "goal": "coverage of each 95 % interval >= 93 %",
        },
        "settings": settings,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coverage.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.out / "coverage.md").write_text(markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
