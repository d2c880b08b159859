"""A trial too small for the CATE fits fails before any fit, naming its smallest arm and what would work."""

import numpy as np
import pytest

from models.causal.cate import OUTCOME_CV, check_arm_sizes


def test_twelve_units_with_three_treated_fail_early_saying_how_many_are_needed():
    T = np.array([1, 1, 1] + [0] * 9)
    folds = np.arange(12) % 5
    with pytest.raises(
        ValueError, match=rf"holds 2 treated units of 3.*at least {OUTCOME_CV} per arm.*at least {2 * OUTCOME_CV} units per arm"
    ):
        check_arm_sizes(T, folds)


def test_fewer_folds_are_proposed_when_they_would_work():
    T = np.array([1] * 8 + [0] * 40)
    folds = np.concatenate([[0, 0, 0, 0, 1, 2, 3, 4], np.arange(40) % 5])
    with pytest.raises(ValueError, match=r"fold 0 \(5 folds\) holds 4 treated units of 8.*use 4 cross-fitting folds"):
        check_arm_sizes(T, folds)


def test_a_trial_large_enough_passes():
    T = np.tile([0, 1], 20)
    check_arm_sizes(T, np.arange(40) % 5)  # 16 per arm in every training split
    assert min(((np.arange(40) % 5 != f) & (a == T)).sum() for f in range(5) for a in (0, 1)) >= OUTCOME_CV
