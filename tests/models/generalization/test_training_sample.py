"""The CATE map's model is fitted on a sample of a large trial: of the size asked, of whole clusters."""

import numpy as np

from models.generalization.prediction import training_sample


def test_a_small_trial_is_used_whole_and_a_large_one_is_sampled_reproducibly():
    assert (training_sample(500, 1000) == np.arange(500)).all()
    assert (training_sample(5000, 0) == np.arange(5000)).all()  # 0: every unit
    rows = training_sample(5000, 1000, seed=3)
    assert len(rows) == len(set(rows)) == 1000 and (np.diff(rows) > 0).all()
    assert (rows == training_sample(5000, 1000, seed=3)).all() and not (rows == training_sample(5000, 1000, seed=4)).all()


def test_a_clustered_trial_is_sampled_as_whole_clusters_within_the_budget():
    groups = np.repeat(np.arange(500), np.resize([3, 7, 10], 500))  # villages of 3, 7 and 10 units
    rows = training_sample(len(groups), 1000, seed=0, groups=groups)
    kept = np.unique(groups[rows])
    assert np.isin(groups, kept).sum() == len(rows)  # every unit of every kept village, nothing else
    assert 900 < len(rows) <= 1000
