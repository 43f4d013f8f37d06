"""Estimates from a reviewed audit: precision, prevalence, misses, with 95 % intervals.

Precision of the flags: the share of ``remove`` among the decided rows of the ``flagged``
stratum, Clopper–Pearson interval (``statsmodels`` ``proportion_confint(method="beta")``;
the finite-population correction is left out, so the interval is conservative).

Prevalence (share of inappropriate images among all scored), and the share among the images
below the threshold (times their number: the images the threshold missed): the stratified
estimator ``p = sum_h W_h p_h`` (``W_h = N_h / N``, ``p_h`` the share of ``remove`` among the
stratum's decided rows) with the usual stratified variance (finite-population corrected),
turned into an interval as Korn & Graubard (1998) do for survey proportions: a
Clopper–Pearson interval at the *effective* sample size ``n_eff = p(1 - p) / var(p)``, capped
at the number of decided rows ``n`` (and ``n`` when the variance estimate is 0). The cap
matters: with a rare prevalence most strata hold no ``remove`` at all, the variance estimate
collapses and an uncapped interval covered the truth in only 58-91 % of simulated audits;
capped, never below 93 % (``scripts/simulate_audit.py``, ``results/audit/``).

Per class: the same estimator within the class (its size per stratum estimated from the
sample), for classes with at least ``MIN_CLASS_DECIDED`` decided rows.

``unsure`` and blank rows count as not reviewed: the estimates assume they are missing at
random within their stratum. A stratum without any decided row makes the estimates that need
it impossible; they are reported as missing, never guessed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from q16.errors import Q16Error
from q16.review.audit import AuditPlan
from q16.review.questions import Q16, Question

ALPHA = 0.05
MIN_CLASS_DECIDED = 20
"""Decided rows a class needs before its own estimate is given."""
MAX_N_EFF = 1e9
"""Keeps the effective sample size finite."""


@dataclass(frozen=True)
class ShareEstimate:
    """A share with its 95 % interval, and the same as counts of images."""

    share: float
    low: float
    high: float
    population: int
    decided: int

    @property
    def count(self) -> float:
        return self.share * self.population

    @property
    def count_low(self) -> float:
        return self.low * self.population

    @property
    def count_high(self) -> float:
        return self.high * self.population


def stratified_share(
    sizes: np.ndarray, decided: np.ndarray, positives: np.ndarray, alpha: float = ALPHA
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Share, low, high of a stratified proportion (vectorised over leading axes; strata last).

    Strata with no decided row must have size 0 (the caller checks); sizes may be estimates.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    n = np.asarray(decided, dtype=np.float64)
    y = np.asarray(positives, dtype=np.float64)
    sizes = np.broadcast_to(sizes, n.shape)
    total = sizes.sum(axis=-1, keepdims=True)
    w = np.divide(sizes, total, out=np.zeros_like(n), where=total > 0)
    used = n > 0
    p_h = np.divide(y, n, out=np.zeros_like(n), where=used)
    # unbiased within-stratum variance; one decided row says nothing about it: take the maximum
    s2 = np.where(n > 1, p_h * (1 - p_h) * n / np.maximum(n - 1, 1), 0.25)
    fpc = np.clip(1 - np.divide(n, sizes, out=np.ones_like(n), where=sizes > 0), 0.0, 1.0)
    per = np.divide(w**2 * fpc, n, out=np.zeros_like(n), where=used)
    share = (w * p_h).sum(axis=-1)
    var = (per * s2).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        kg = np.where(var > 0, share * (1 - share) / var, np.inf)
    n_eff = np.clip(np.minimum(kg, n.sum(axis=-1)), 1.0, MAX_N_EFF)
    low, high = _clopper_pearson(share * n_eff, n_eff, alpha)
    low = np.where(share <= 0, 0.0, np.nan_to_num(np.asarray(low, dtype=np.float64)))
    high = np.where(share >= 1, 1.0, np.nan_to_num(np.asarray(high, dtype=np.float64), nan=1.0))
    return share, np.minimum(low, share), np.maximum(high, share)


def precision_interval(removed: int, decided: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Clopper–Pearson interval of the flags' precision (statsmodels)."""
    low, high = _clopper_pearson(removed, decided, alpha)
    return float(np.nan_to_num(low)), float(np.nan_to_num(high, nan=1.0))


@dataclass(frozen=True)
class Estimates:
    """What ``q16 apply`` states about the dataset (written to ``estimates.json``)."""

    audit_rows: int
    decided: int
    unsure: int
    blank: int
    scored: int
    flagged: int
    precision: ShareEstimate | None
    prevalence: ShareEstimate | None
    missed: ShareEstimate | None
    per_class: dict[str, ShareEstimate] = field(default_factory=dict)
    unreviewed_strata: list[str] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    questions: dict[str, Estimates] = field(default_factory=dict)
    """The audit's other questions (``person``), estimated from the same sample."""

    def to_json(self) -> dict[str, Any]:
        def one(e: ShareEstimate | None) -> dict[str, Any] | None:
            if e is None:
                return None
            return {
                **asdict(e),
                "count": e.count,
                "count_low": e.count_low,
                "count_high": e.count_high,
            }

        record = {k: v for k, v in asdict(self).items() if k not in ("per_class", "questions")}
        for name in ("precision", "prevalence", "missed"):
            record[name] = one(getattr(self, name))
        record["per_class"] = {k: one(v) for k, v in self.per_class.items()}
        if self.questions:
            record["questions"] = {k: v.to_json() for k, v in self.questions.items()}
        record["confidence"] = 1 - ALPHA
        record["min_class_decided"] = MIN_CLASS_DECIDED
        return record


def estimate(
    plan: AuditPlan,
    strata: np.ndarray,
    decisions: list[str],
    classes: list[str],
    question: Question = Q16,
) -> Estimates:
    """Estimates from the audit rows: their stratum index, answer to ``question`` (Q16's
    ``decision`` unless told) and class. For another question "prevalence" is the share of
    images it says yes to, "precision" that share among the flagged stratum."""
    strata = np.asarray(strata, dtype=np.int64)
    decisions_arr = np.asarray(decisions, dtype=object)
    decided = np.isin(decisions_arr, [question.yes, question.no])
    if not decided.any():
        what = "decision" if question == Q16 else f"answer in {question.column}"
        raise Q16Error(
            f"the audit review has no {question.no}/{question.yes} {what} yet: decide some rows "
            f"of review.csv ({question.no}, {question.yes}; {question.unsure} and blank rows are "
            "not counted), then apply it again"
        )
    y = (decisions_arr == question.yes).astype(np.float64)
    h_count = len(plan.strata)
    sizes = np.array([s.size for s in plan.strata], dtype=np.float64)
    n_h = np.bincount(strata[decided], minlength=h_count).astype(np.float64)
    y_h = np.bincount(strata[decided], weights=y[decided], minlength=h_count)
    missing = [s.name for s, n in zip(plan.strata, n_h, strict=True) if s.size and not n]
    flagged = plan.strata[0]

    def share(mask: np.ndarray) -> ShareEstimate | None:
        if not sizes[mask].sum() or any(sizes[mask] * (n_h[mask] == 0)):
            return None
        p, lo, hi = stratified_share(sizes[mask], n_h[mask], y_h[mask])
        return ShareEstimate(
            float(p), float(lo), float(hi), int(sizes[mask].sum()), int(n_h[mask].sum())
        )

    precision = None
    if flagged.size and n_h[0]:
        lo, hi = precision_interval(int(y_h[0]), int(n_h[0]))
        precision = ShareEstimate(y_h[0] / n_h[0], lo, hi, flagged.size, int(n_h[0]))
    everything = np.ones(h_count, dtype=bool)
    below = everything.copy()
    below[0] = False
    return Estimates(
        audit_rows=len(decisions),
        decided=int(decided.sum()),
        unsure=int((decisions_arr == question.unsure).sum()),
        blank=int((decisions_arr == "").sum()),
        scored=plan.population,
        flagged=flagged.size,
        precision=precision,
        prevalence=share(everything),
        missed=share(below),
        per_class=_per_class(sizes, strata[decided], y[decided], np.asarray(classes)[decided]),
        unreviewed_strata=missing,
        plan=plan.to_json(),
    )


def _per_class(
    sizes: np.ndarray, strata: np.ndarray, y: np.ndarray, classes: np.ndarray
) -> dict[str, ShareEstimate]:
    """Classes with enough decided rows: class size per stratum estimated from the sample."""
    out: dict[str, ShareEstimate] = {}
    n_h = np.bincount(strata, minlength=len(sizes)).astype(np.float64)
    for name in sorted(set(classes.tolist())):
        mine = classes == name
        if mine.sum() < MIN_CLASS_DECIDED:
            continue
        n_c = np.bincount(strata[mine], minlength=len(sizes)).astype(np.float64)
        y_c = np.bincount(strata[mine], weights=y[mine], minlength=len(sizes))
        size_c = np.divide(sizes * n_c, n_h, out=np.zeros_like(n_c), where=n_h > 0)
        p, lo, hi = stratified_share(size_c, n_c, y_c)
        out[str(name)] = ShareEstimate(
            float(p), float(lo), float(hi), round(float(size_c.sum())), int(mine.sum())
        )
    return out


def _clopper_pearson(count: Any, n: Any, alpha: float) -> tuple[Any, Any]:
    """statsmodels' ``proportion_confint(method="beta")`` (numbers or arrays), imported here:
    statsmodels (12 MB) is needed where intervals are computed, not to score or train
    (scripts/device_check.sh installs without it)."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(count, n, alpha=alpha, method="beta")
    return low, high
