"""The audit's second question (person: contains an identifiable person) goes through the same
estimator as Question 16's decisions: its intervals cover, whatever the Q16 scores are."""

from __future__ import annotations

import numpy as np
import pytest

from q16.errors import Q16Error
from q16.review.audit import design_audit
from q16.review.estimates import estimate
from q16.review.questions import PERSON, Q16


def test_person_prevalence_covers_the_truth_on_a_q16_stratified_sample() -> None:
    rng = np.random.default_rng(3)
    scores = rng.random(20_000)  # the design stratifies by Q16 score ...
    person = rng.random(20_000) < 0.2  # ... the question is unrelated to it
    covered, shares = [], []
    for seed in range(60):
        sample = design_audit(scores, 0.9, 300, seed=seed)
        answers = np.where(person[sample.index], "yes", "no").tolist()
        found = estimate(sample.plan, sample.stratum, answers, ["c"] * len(answers), PERSON)
        assert found.prevalence is not None
        shares.append(found.prevalence.share)
        covered.append(found.prevalence.low <= person.mean() <= found.prevalence.high)
    assert np.mean(covered) >= 0.9
    spread = np.std(shares) / np.sqrt(len(shares))  # unbiased: within 3 standard errors
    assert abs(np.mean(shares) - person.mean()) < 3 * spread


def test_answers_of_one_question_are_not_read_as_the_other() -> None:
    sample = design_audit(np.linspace(0, 1, 100), 0.9, 20, seed=0)
    answers = ["yes"] * 20
    with pytest.raises(Q16Error, match="no keep/remove decision"):
        estimate(sample.plan, sample.stratum, answers, ["c"] * 20, Q16)
    with pytest.raises(Q16Error, match="no no/yes answer in person"):
        estimate(sample.plan, sample.stratum, ["remove"] * 20, ["c"] * 20, PERSON)
    found = estimate(sample.plan, sample.stratum, answers, ["c"] * 20, PERSON)
    assert found.prevalence is not None and found.prevalence.share == 1.0
