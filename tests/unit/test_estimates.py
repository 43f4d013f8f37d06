"""Estimates from an audit: unbiased, intervals that cover, precision as statsmodels has it."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from q16.errors import Q16Error
from q16.report.estimates_text import NO_AUDIT, estimates_section
from q16.review.audit import design_audit
from q16.review.estimates import estimate, precision_interval

THRESHOLD = 0.5


def _population(n: int, prevalence: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < prevalence
    scores = 1 / (1 + np.exp(-(2.5 * (2 * y - 1) - 1 + rng.normal(0, 1.5, n))))
    return y, scores


def _audit(y: np.ndarray, scores: np.ndarray, n: int, seed: int, classes=None):
    sample = design_audit(scores, THRESHOLD, n, seed=seed)
    decisions = np.where(y[sample.index], "remove", "keep").tolist()
    names = ["c"] * len(decisions) if classes is None else list(classes[sample.index])
    return estimate(sample.plan, sample.stratum, decisions, names)


def test_precision_interval_is_statsmodels_clopper_pearson() -> None:
    low, high = precision_interval(17, 40)
    assert (low, high) == pytest.approx(proportion_confint(17, 40, method="beta"))


def test_estimates_are_unbiased_and_intervals_cover() -> None:
    y, scores = _population(20_000, 0.03, seed=1)
    truth = y.mean()
    missed_truth = y[scores < THRESHOLD].mean()
    runs = [_audit(y, scores, 300, seed=s) for s in range(120)]
    shares = np.array([r.prevalence.share for r in runs])
    # unbiased: the mean of 120 audits within 3 standard errors of the truth
    assert abs(shares.mean() - truth) < 3 * shares.std() / np.sqrt(len(runs)) + 1e-4
    covered = np.mean([r.prevalence.low <= truth <= r.prevalence.high for r in runs])
    missed = np.mean([r.missed.low <= missed_truth <= r.missed.high for r in runs])
    assert covered >= 0.9 and missed >= 0.9
    assert all(r.prevalence.high - r.prevalence.low < 0.2 for r in runs)  # and informative


def test_precision_is_the_flagged_strata_share() -> None:
    y, scores = _population(5000, 0.1, seed=2)
    est = _audit(y, scores, 400, seed=0)
    flagged = scores >= THRESHOLD
    assert est.flagged == flagged.sum()
    if est.precision.decided == flagged.sum():  # taken whole: the exact precision
        assert est.precision.share == pytest.approx(y[flagged].mean())
    assert est.precision.low <= est.precision.share <= est.precision.high


def test_whole_population_decided_gives_the_truth() -> None:
    y, scores = _population(300, 0.2, seed=3)
    est = _audit(y, scores, 10_000, seed=0)
    assert est.prevalence.share == pytest.approx(y.mean())
    assert est.prevalence.count == pytest.approx(y.sum())
    assert est.missed.count == pytest.approx(y[scores < THRESHOLD].sum())


def test_unsure_and_blank_are_not_reviewed_and_counted() -> None:
    y, scores = _population(2000, 0.1, seed=4)
    sample = design_audit(scores, THRESHOLD, 100, seed=0)
    decisions = np.where(y[sample.index], "remove", "keep").astype(object)
    decisions[::10] = "unsure"
    decisions[1::10] = ""
    est = estimate(sample.plan, sample.stratum, decisions.tolist(), ["c"] * 100)
    assert (est.decided, est.unsure, est.blank) == (80, 10, 10)


def test_a_stratum_without_decisions_gives_no_prevalence() -> None:
    y, scores = _population(2000, 0.1, seed=5)
    sample = design_audit(scores, THRESHOLD, 100, seed=0)
    decisions = np.where(y[sample.index], "remove", "keep").astype(object)
    decisions[sample.stratum == 1] = ""
    est = estimate(sample.plan, sample.stratum, decisions.tolist(), ["c"] * 100)
    assert est.prevalence is None and est.missed is None and est.precision is not None
    assert est.unreviewed_strata == ["below-1"]
    text = "\n".join(estimates_section(est))
    assert "below-1" in text and "not given" in text


def test_no_decisions_is_a_one_line_error() -> None:
    sample = design_audit(np.linspace(0, 1, 50), THRESHOLD, 10, seed=0)
    with pytest.raises(Q16Error, match="no keep/remove decision") as err:
        estimate(sample.plan, sample.stratum, ["unsure", *[""] * 9], ["c"] * 10)
    assert "\n" not in str(err.value)


def test_per_class_only_with_enough_decided_rows_and_escaped() -> None:
    y, scores = _population(4000, 0.1, seed=6)
    classes = np.where(np.arange(4000) % 10 == 0, "rare | <b>", "common")
    est = _audit(y, scores, 200, seed=0, classes=classes)
    assert "common" in est.per_class and "rare | <b>" not in est.per_class
    classes = np.where(np.arange(4000) % 2 == 0, "a | <b>", "common")
    est = _audit(y, scores, 200, seed=0, classes=classes)
    text = "\n".join(estimates_section(est))
    assert "a \\| " in text and "| a | <b>" not in text
    assert "95 % CI" in text


def test_without_audit_the_datasheet_says_so() -> None:
    assert NO_AUDIT in "\n".join(estimates_section(None))


def test_no_flags_gives_no_precision_but_a_prevalence() -> None:
    scores = np.linspace(0.0, 0.4, 1000)
    y = np.arange(1000) % 50 == 0
    est = _audit(y, scores, 200, seed=0)
    assert est.precision is None and est.flagged == 0
    assert est.prevalence.low <= y.mean() <= est.prevalence.high
    assert est.missed.share == pytest.approx(est.prevalence.share)
    assert "judged inappropriate" not in "\n".join(estimates_section(est))
