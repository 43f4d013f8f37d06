"""The audit sample's design: reproducible, every flag (under the cap), known probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from q16.errors import Q16Error
from q16.review.audit import (
    AuditPlan,
    allocate,
    check_audit_settings,
    check_audit_size,
    design_audit,
)

THRESHOLD = 0.5


def _scores(n: int = 5000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.beta(1.0, 6.0, n)  # most images well below the threshold, a few above


def test_same_seed_same_sample_other_seed_other_sample() -> None:
    scores = _scores()
    a, b = design_audit(scores, THRESHOLD, 300, seed=1), design_audit(scores, THRESHOLD, 300, 1)
    c = design_audit(scores, THRESHOLD, 300, seed=2)
    assert np.array_equal(a.index, b.index) and np.array_equal(a.stratum, b.stratum)
    assert not np.array_equal(np.sort(a.index), np.sort(c.index))


def test_inclusion_probabilities_sum_to_the_audit_size() -> None:
    scores = _scores()
    sample = design_audit(scores, THRESHOLD, 300, seed=0)
    plan = sample.plan
    assert plan.sampled == 300 == len(np.unique(sample.index))
    # sum over the population of each image's inclusion probability is the sample size ...
    total = sum(s.size * s.inclusion_probability for s in plan.strata)
    assert total == pytest.approx(300)
    # ... and the Horvitz-Thompson count of the sample is the population
    assert (1 / sample.inclusion_probability).sum() == pytest.approx(len(scores))
    # every drawn image lies in its stratum's score range
    for h, stratum in enumerate(plan.strata):
        mine = scores[sample.index[sample.stratum == h]]
        assert ((mine >= stratum.lower) & (mine <= stratum.upper)).all()


def test_every_flagged_image_is_in_under_the_cap_and_high_scores_are_oversampled() -> None:
    scores = _scores()
    flagged = np.flatnonzero(scores >= THRESHOLD)
    assert 0 < len(flagged) < 150
    sample = design_audit(scores, THRESHOLD, 300, seed=0)
    assert set(flagged) <= set(sample.index.tolist())
    assert sample.plan.strata[0].inclusion_probability == 1.0
    below = [s.inclusion_probability for s in sample.plan.strata[1:]]
    assert below == sorted(below) and below[-1] > 3.5 * below[0]  # 2**(K-2) = 4


def test_many_flags_are_sampled_at_random_not_the_top() -> None:
    scores = np.random.default_rng(3).random(4000)  # half flagged
    sample = design_audit(scores, THRESHOLD, 200, seed=0)
    flagged = scores[sample.index[sample.stratum == 0]]
    assert len(flagged) == 100 and flagged.min() < 0.6  # not just the top scores


def test_oversized_audit_takes_every_scored_image() -> None:
    scores = np.array([0.9, 0.1, np.nan, 0.4, 0.7, 0.05])
    sample = design_audit(scores, THRESHOLD, 1000, seed=0)
    assert sample.plan.all_taken and sample.plan.population == 5
    assert sorted(sample.index.tolist()) == [0, 1, 3, 4, 5]  # the NaN was not scored
    assert set(sample.inclusion_probability.tolist()) == {1.0}


def test_plan_round_trips_through_json() -> None:
    plan = design_audit(_scores(), THRESHOLD, 100, seed=4).plan
    back = AuditPlan.from_json(plan.to_json())
    assert back.strata == plan.strata and back.seed == 4 and back.sampled == 100


def test_allocation_moves_unused_places() -> None:
    assert allocate([10, 2, 2, 100], 60, 0.5) == [10, 2, 2, 46]
    assert allocate([0, 50, 50], 10, 0.5) == [0, 5, 5]
    assert allocate([100, 1, 1], 40, 0.5) == [38, 1, 1]


@pytest.mark.parametrize("bad", [0, -3, 2.5, "7", True, None])
def test_bad_audit_sizes_are_one_line_errors(bad: object) -> None:
    with pytest.raises(Q16Error) as err:
        check_audit_size(bad)
    assert "\n" not in str(err.value) and "q16 audit -n" in str(err.value)


def test_nothing_scored_is_a_user_error() -> None:
    with pytest.raises(Q16Error, match="nothing to audit"):
        design_audit(np.array([np.nan, np.nan]), THRESHOLD, 5)


@pytest.mark.parametrize(("seed", "strata"), [(-1, 4), (0, 0), (1.5, 4), (0, "4")])
def test_bad_seed_or_strata_are_one_line_errors(seed: object, strata: object) -> None:
    with pytest.raises(Q16Error) as err:
        check_audit_settings(10, seed, strata)
    assert "\n" not in str(err.value)


def test_a_run_without_flags_still_has_an_audit() -> None:
    sample = design_audit(np.linspace(0.0, 0.4, 1000), THRESHOLD, 50, seed=0)
    assert sample.plan.strata[0].size == 0 and sample.plan.sampled == 50


def test_a_small_audit_samples_every_stratum_it_keeps() -> None:
    """Fewer places below the threshold than strata: fewer strata, each sampled, so the
    prevalence can be estimated once the rows are decided (a stratum without a place could
    never be)."""
    scores = np.random.default_rng(0).random(100_000)
    sample = design_audit(scores, 0.99, 10, n_strata=8)
    assert sample.plan.sampled == 10
    assert all(s.sampled >= 1 for s in sample.plan.strata if s.size)
    with pytest.raises(Q16Error, match="q16 audit -n 1"):
        design_audit(scores, 0.5, 1)


def test_flagged_stratum_is_the_runs_flagged_images_at_the_threshold() -> None:
    """The writer flags float32(p) >= float32(threshold): a score equal to the threshold is
    flagged there, so it is in the flagged stratum here too."""
    scores = np.float32([0.9, 0.95, 0.5, 0.1])
    sample = design_audit(scores, 0.9, 4)
    assert sample.plan.strata[0].size == 2
    assert set(sample.index[sample.stratum == 0]) == {0, 1}
