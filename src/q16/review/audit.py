"""The audit sample: which scored images a person reviews so that prevalence can be estimated.

The flagged list alone says how many images crossed the threshold, not how many are
inappropriate: false alarms sit among the flags and misses sit below. An audit is a
stratified random sample over *every* scored image, with known inclusion probabilities, so
that decisions on it estimate precision, prevalence and misses without bias.

Design (``design_audit``):

- stratum ``flagged``: every image scoring at or above the run's threshold. It gets
  ``ceil(flagged_share * n)`` of the ``n`` audit places (half by default); when it has no
  more images than that it is taken whole (inclusion probability 1), else a simple random
  sample (random, not the top ones, so the precision estimate is unbiased).
- strata ``below-1`` ... ``below-K``: the images below the threshold, cut by score rank at the
  quantiles ``1 - 2**-j`` (j = 1..K-1): the lowest half, the next quarter, ..., the top
  ``2**-(K-1)`` twice. Thinner strata near the threshold, where misses concentrate, with
  equal allocation of the remaining places, oversample high scores ``2**(K-2)``-fold over the
  lowest half. Places a stratum cannot use (too few images) go to the others.

Images without a finite score are outside every stratum (they were not scored). An audit of
at least as many images as were scored takes every image (``AuditPlan.all_taken``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from q16.errors import Q16Error

FLAGGED = "flagged"
DEFAULT_STRATA = 4
DEFAULT_FLAGGED_SHARE = 0.5

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stratum:
    """One stratum: its score range, how many images it holds and how many were drawn."""

    name: str
    lower: float
    upper: float
    size: int
    sampled: int

    @property
    def inclusion_probability(self) -> float:
        return self.sampled / self.size if self.size else 0.0


@dataclass(frozen=True)
class AuditPlan:
    """The design, as recorded in ``audit.json`` (with the run's identity)."""

    requested: int
    seed: int
    threshold: float
    strata: list[Stratum]
    flagged_share: float = DEFAULT_FLAGGED_SHARE
    run_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sampled(self) -> int:
        return sum(s.sampled for s in self.strata)

    @property
    def population(self) -> int:
        return sum(s.size for s in self.strata)

    @property
    def all_taken(self) -> bool:
        return self.sampled == self.population

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["strata"] = [
            {**asdict(s), "inclusion_probability": s.inclusion_probability} for s in self.strata
        ]
        record |= {"sampled": self.sampled, "population": self.population}
        record["all_taken"] = self.all_taken
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> AuditPlan:
        strata = [
            Stratum(
                str(s["name"]),
                float(s["lower"]),
                float(s["upper"]),
                int(s["size"]),
                int(s["sampled"]),
            )
            for s in record["strata"]
        ]
        return cls(
            requested=int(record["requested"]),
            seed=int(record["seed"]),
            threshold=float(record["threshold"]),
            strata=strata,
            flagged_share=float(record.get("flagged_share", DEFAULT_FLAGGED_SHARE)),
            run_id=str(record.get("run_id", "")),
            extra=dict(record.get("extra") or {}),
        )


@dataclass(frozen=True)
class AuditSample:
    """The drawn images: positions in the run's score order, their stratum, the plan."""

    plan: AuditPlan
    index: np.ndarray
    stratum: np.ndarray

    @property
    def inclusion_probability(self) -> np.ndarray:
        probs = np.array([s.inclusion_probability for s in self.plan.strata])
        return probs[self.stratum]


def check_audit_size(n: object) -> int:
    """``q16 audit -n N`` as a positive integer, or a one-line error."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise Q16Error(
            f"q16 audit -n {n!r}: give the number of images to audit, a whole number ≥ 1"
        )
    if n < 1:
        raise Q16Error(f"q16 audit -n {n}: give the number of images to audit, at least 1")
    return int(n)


def check_audit_settings(n: object, seed: object, n_strata: object) -> None:
    """``q16 audit -n N --seed S --strata K`` usable, or a one-line error (before any file is
    written)."""
    check_audit_size(n)
    for flag, value, least in (("--seed", seed, 0), ("--strata", n_strata, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise Q16Error(f"{flag} {value!r}: give a whole number ≥ {least}")


def stratum_of(scores: np.ndarray, threshold: float, n_strata: int) -> tuple[np.ndarray, list]:
    """Each image's stratum (-1: no finite score) and the strata's score bounds."""
    scores = np.asarray(scores, dtype=np.float64)
    if n_strata < 1:
        raise Q16Error(f"--strata {n_strata}: give at least 1 stratum below the threshold")
    finite = np.isfinite(scores)
    stratum = np.full(scores.size, -1, dtype=np.int64)
    # compared as the writer flags them (float32 scores and threshold), so the flagged stratum
    # is exactly the run's flagged images, also for a score equal to the threshold
    flagged = scores.astype(np.float32) >= np.float32(threshold)
    stratum[finite & flagged] = 0
    below = np.flatnonzero(finite & ~flagged)
    order = below[np.argsort(scores[below], kind="stable")]
    cuts = [0, *(round(len(order) * (1 - 2.0**-j)) for j in range(1, n_strata)), len(order)]
    top = scores[stratum == 0]
    bounds = [(float(top.min()), float(top.max())) if top.size else (threshold, threshold)]
    for h in range(n_strata):
        members = order[cuts[h] : cuts[h + 1]]
        stratum[members] = h + 1
        values = scores[members]
        bounds.append((float(values.min()), float(values.max())) if values.size else (0.0, 0.0))
    return stratum, bounds


def allocate(sizes: list[int], n: int, flagged_share: float) -> list[int]:
    """Places per stratum: the flagged stratum's share, then equal places for the rest."""
    taken = [0] * len(sizes)
    taken[0] = min(sizes[0], math.ceil(flagged_share * n))
    left = n - taken[0]
    open_ = [h for h in range(1, len(sizes)) if sizes[h] > 0]
    while left > 0 and open_:
        share, extra = divmod(left, len(open_))
        for rank, h in enumerate(reversed(open_)):  # a spare place goes nearer the threshold
            taken[h] += share + (1 if rank < extra else 0)
        left = sum(max(0, taken[h] - sizes[h]) for h in open_)
        taken = [min(t, s) for t, s in zip(taken, sizes, strict=True)]
        open_ = [h for h in open_ if taken[h] < sizes[h]]
    if left > 0 and taken[0] < sizes[0]:  # the strata below could not use their places
        taken[0] = min(sizes[0], taken[0] + left)
    return taken


def design_audit(
    scores: np.ndarray,
    threshold: float,
    n: int,
    seed: int = 0,
    n_strata: int = DEFAULT_STRATA,
    flagged_share: float = DEFAULT_FLAGGED_SHARE,
) -> AuditSample:
    """Draw the audit sample (see the module docstring); the same seed, the same sample."""
    check_audit_settings(n, seed, n_strata)
    if not 0.0 <= flagged_share <= 1.0:
        raise Q16Error(f"flagged share {flagged_share}: give a fraction between 0 and 1")
    stratum, bounds = stratum_of(scores, threshold, n_strata)
    names = [FLAGGED, *(f"below-{h}" for h in range(1, n_strata + 1))]
    members = [np.flatnonzero(stratum == h) for h in range(len(names))]
    sizes = [len(m) for m in members]
    if not sum(sizes):
        raise Q16Error("no image of this run has a finite score: there is nothing to audit")
    taken = allocate(sizes, min(n, sum(sizes)), flagged_share)
    unsampled = [h for h in range(1, len(sizes)) if sizes[h] > 0 and taken[h] == 0]
    if unsampled:  # a stratum without a place would leave prevalence inestimable for good
        places = sum(taken[1:])
        if places < 1:
            raise Q16Error(
                f"q16 audit -n {n}: too small to sample the images below the threshold as well as "
                "the flagged ones; give a larger N"
            )
        log.warning(
            "q16 audit -n %d leaves %d place(s) below the threshold, fewer than --strata %d: "
            "using %d strata there, so each one is sampled",
            *(n, places, n_strata, places),
        )
        return design_audit(scores, threshold, n, seed, places, flagged_share)
    rng = np.random.default_rng(seed)
    picked = [rng.choice(m, size=k, replace=False) for m, k in zip(members, taken, strict=True)]
    index = np.concatenate(picked).astype(np.int64)
    which = np.concatenate([np.full(k, h, dtype=np.int64) for h, k in enumerate(taken)])
    strata = [
        Stratum(name, lo, hi, size, k)
        for name, (lo, hi), size, k in zip(names, bounds, sizes, taken, strict=True)
    ]
    plan = AuditPlan(n, seed, float(threshold), strata, flagged_share)
    return AuditSample(plan, index, which)
