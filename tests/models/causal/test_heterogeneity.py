"""RATE, TOC, DR scores and the calibration test against hand-computed cases and known DGPs."""

import numpy as np
import pytest

from models.causal.cate import (
    OUTCOME_HOLDOUT_UNITS,
    LearnerConfig,
    cross_fit_cate,
    make_learner,
    outcome_model,
    outcome_predictions,
    sequential_cate,
)
from models.causal.heterogeneity import (
    ate,
    calibration_test,
    difference_in_means,
    dr_scores,
    rate,
    rate_point,
    sequential_rate,
    toc,
    truth_metrics,
)


def test_dr_scores_by_hand():
    g = dr_scores(np.array([1.0, 2.0]), np.array([1, 0]), np.array([0.0, 1.0]), np.array([1.0, 1.0]), np.array([0.5, 0.5]))
    np.testing.assert_allclose(g, [1.0, -2.0])


def test_toc_autoc_qini_by_hand():
    # sorted Gamma = [3, 0, 0], mean 1: running means 3, 1.5, 1 -> TOC = 2, 0.5, 0
    q, curve = toc(np.array([3.0, 2.0, 1.0]), np.array([3.0, 0.0, 0.0]))
    np.testing.assert_allclose(curve, [2.0, 0.5, 0.0])
    assert rate_point(np.array([3.0, 2.0, 1.0]), np.array([3.0, 0.0, 0.0]), "AUTOC") == pytest.approx(2.5 / 3)
    assert rate_point(np.array([3.0, 2.0, 1.0]), np.array([3.0, 0.0, 0.0]), "QINI") == pytest.approx((2 / 3 + 1 / 3) / 3)
    # order of the inputs does not matter, only the priorities
    assert rate_point(np.array([1.0, 3.0, 2.0]), np.array([0.0, 3.0, 0.0])) == pytest.approx(2.5 / 3)


def test_ties_are_averaged():
    _, curve = toc(np.array([1.0, 1.0, 0.0]), np.array([2.0, 0.0, 1.0]))
    np.testing.assert_allclose(curve, [0.0, 0.0, 0.0])
    a = rate_point(np.array([1.0, 1.0, 0.0]), np.array([2.0, 0.0, 1.0]))
    b = rate_point(np.array([1.0, 1.0, 0.0]), np.array([0.0, 2.0, 1.0]))
    assert a == b == 0.0


def test_clustered_bootstrap_widens_with_duplicated_units():
    rng = np.random.default_rng(0)
    p, g = rng.standard_normal(300), rng.standard_normal(300)
    plain = rate(np.repeat(p, 2), np.repeat(g, 2), n_boot=300)
    clustered = rate(np.repeat(p, 2), np.repeat(g, 2), clusters=np.repeat(np.arange(300), 2), n_boot=300)
    assert clustered.se > 1.2 * plain.se


def test_calibration_recovers_a_calibrated_predictor():
    rng = np.random.default_rng(1)
    tau = rng.normal(1.0, 1.0, 4000)
    table = calibration_test(tau, tau + rng.normal(0, 2, 4000)).set_index("term")
    assert table.loc["differential_forest_prediction", "estimate"] == pytest.approx(1.0, abs=0.15)
    assert table.loc["mean_forest_prediction", "estimate"] == pytest.approx(1.0, abs=0.15)
    assert table.loc["differential_forest_prediction", "p_value_one_sided"] < 1e-6


def test_truth_metrics():
    m = truth_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]), np.array([0.0, 0.0, 0.0]), np.array([2.0, 3.0, 4.0]))
    assert (
        m["pehe"] == pytest.approx(np.sqrt(4 / 3))
        and m["rank_correlation"] == pytest.approx(1.0)
        and m["unit_interval_coverage"] == pytest.approx(2 / 3)
    )


def _trial(strength: float, n: int = 1500, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5))
    tau = 1.0 + strength * X[:, 0]
    T = rng.binomial(1, 0.5, n)
    Y = X[:, 1] + T * tau + rng.standard_normal(n)
    return X, T, Y, np.full(n, 0.5), rng.integers(0, 5, n), tau


@pytest.mark.parametrize("strength, expect_heterogeneity", [(0.0, False), (1.0, True)])
def test_rate_out_of_fold_detects_planted_heterogeneity(strength, expect_heterogeneity):
    X, T, Y, e, folds, tau = _trial(strength)
    cfg = LearnerConfig(n_estimators=100)
    cate = cross_fit_cate("causal_forest", X, T, Y, e, folds, cfg)
    mu0, mu1 = outcome_predictions(X, T, Y, folds, cfg)
    gamma = dr_scores(Y, T, mu0, mu1, e)
    autoc = rate(cate["tau"].to_numpy(), gamma, "AUTOC", n_boot=100)
    if expect_heterogeneity:
        assert autoc.ratio > 3 and truth_metrics(cate["tau"].to_numpy(), tau)["rank_correlation"] > 0.7
    else:
        assert abs(autoc.ratio) < 2.5
    assert abs(ate(gamma).estimate - tau.mean()) < 4 * ate(gamma).se
    assert abs(ate(gamma).estimate - difference_in_means(Y, T).estimate) < 0.15


def test_learners_refuse_bad_input():
    X, T, Y, e, folds, _ = _trial(0.0, n=100)
    with pytest.raises(ValueError, match="binary"):
        cross_fit_cate("t_learner", X, np.where(T == 1, 2, 0), Y, e, folds)
    Y[3] = np.nan
    with pytest.raises(ValueError, match="outcome contain 1 NaN"):
        cross_fit_cate("t_learner", X, T, Y, e, folds)


@pytest.mark.parametrize("holdout", [False, True])
@pytest.mark.parametrize("shape, chosen", [("linear", "LassoCV"), ("steps", "HistGradientBoostingRegressor")])
def test_outcome_model_chooses_by_cross_validation_or_on_one_holdout(shape, chosen, holdout):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((600, 8))
    signal = X @ np.linspace(1, 0.2, 8) if shape == "linear" else 2.0 * np.sign(X[:, 0]) * (X[:, 1] > 0.5)
    fitted = outcome_model(LearnerConfig(outcome_holdout=holdout)).fit(X, signal + 0.3 * rng.standard_normal(600))
    assert type(fitted.best_estimator_[-1]).__name__ == chosen
    assert ("split1_test_score" in fitted.cv_results_) is not holdout  # one split, not five


def test_only_fits_above_the_holdout_size_choose_their_outcome_model_on_a_holdout():
    assert not LearnerConfig().for_data(OUTCOME_HOLDOUT_UNITS, 36).outcome_holdout
    assert LearnerConfig().for_data(OUTCOME_HOLDOUT_UNITS + 1, 36).outcome_holdout


@pytest.mark.parametrize("strength, expect_heterogeneity", [(0.0, False), (1.0, True)])
def test_sequential_rate_pools_folds_fitted_on_earlier_folds(strength, expect_heterogeneity):
    X, T, Y, e, folds, tau = _trial(strength, n=1000, seed=3)
    cfg = LearnerConfig(n_estimators=100)
    priority = sequential_cate("causal_forest", X, T, Y, e, folds, cfg)
    assert np.isnan(priority[folds == 0]).all() and np.isfinite(priority[folds > 0]).all()
    mu0, mu1 = outcome_predictions(X, T, Y, folds, cfg)
    result = sequential_rate(priority, dr_scores(Y, T, mu0, mu1, e), folds, n_boot=100)
    if expect_heterogeneity:
        assert result["t"] > 3 and result["p_one_sided"] < 0.01 and result["estimate"] > 0
    else:
        assert abs(result["t"]) < 2.5


@pytest.mark.parametrize("learner", ["causal_forest", "t_learner"])
def test_sequential_scheme_reuses_the_cross_fitted_last_fold_model(learner):
    """The last fold's cross-fitted model was fitted on exactly the earlier folds: reusing its
    estimates gives what refitting gives, one fit fewer."""
    X, T, Y, e, folds, _ = _trial(1.0, n=400, seed=5)
    cfg = LearnerConfig(n_estimators=20)
    cross = cross_fit_cate(learner, X, T, Y, e, folds, cfg)["tau"].to_numpy()
    refitted = sequential_cate(learner, X, T, Y, e, folds, cfg)
    reused = sequential_cate(learner, X, T, Y, e, folds, cfg, cross_fitted=cross)
    np.testing.assert_allclose(reused, refitted, equal_nan=True)
    assert np.isfinite(reused[folds == folds.max()]).all()


def test_max_tree_units_caps_each_trees_share_only_when_it_binds():
    cfg = LearnerConfig(max_tree_units=25_000, leaf_share=0)
    assert cfg.for_data(40_000, 36) is cfg  # 0.45 x 40,000 = 18,000 units per tree: below the cap
    assert cfg.for_data(100_000, 36).max_samples == pytest.approx(0.25)
    assert LearnerConfig().for_data(10**7, 36).max_samples == 0.45


def test_leaves_hold_a_share_of_each_trees_units_above_the_floor():
    cfg = LearnerConfig(max_tree_units=25_000, leaf_share=0.002)
    assert cfg.for_data(1_000, 36).min_samples_leaf == 5  # 450 units per tree: the floor
    assert cfg.for_data(40_000, 36).min_samples_leaf == 36  # 18,000 units per tree
    assert cfg.for_data(100_000, 36).min_samples_leaf == 50  # 25,000: the capped share
    assert LearnerConfig(leaf_share=0).for_data(100_000, 36).min_samples_leaf == 5
    for learner in ("causal_forest", "dr_learner"):
        assert make_learner(learner, cfg.for_data(100_000, 36)).min_samples_leaf == 50


def test_mtry_sets_the_features_tried_per_split_at_most_all_of_them():
    for learner in ("causal_forest", "dr_learner"):
        assert make_learner(learner, LearnerConfig().for_data(5000, 36)).max_features is None  # all: econml's default
        assert make_learner(learner, LearnerConfig(mtry=28).for_data(5000, 36)).max_features == 28
        assert make_learner(learner, LearnerConfig(mtry=28).for_data(5000, 4)).max_features == 4  # the tabular choice


def test_forests_split_on_quantile_bins_only_when_there_are_units_enough_per_bin():
    cfg = LearnerConfig(histogram_bins=16)
    assert cfg.for_data(100, 2).featurizer() is None
    bins = cfg.for_data(1000, 2).featurizer()
    X = np.column_stack([np.random.default_rng(0).standard_normal(1000), np.tile([0.0, 1.0], 500)])
    binned = bins.fit_transform(X)
    assert len(np.unique(binned[:, 0])) == 16 and len(np.unique(binned[:, 1])) == 2  # a binary feature keeps two
    assert (np.diff(binned[np.argsort(X[:, 0]), 0]) >= 0).all()  # monotone: the forest's splits keep their order
    for learner in ("causal_forest", "dr_learner"):
        assert make_learner(learner, cfg.for_data(1000, 2)).featurizer.n_bins == 16
        assert make_learner(learner, cfg.for_data(100, 2)).featurizer is None
