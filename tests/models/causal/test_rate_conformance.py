"""RATE as grf defines it (the properties grf's own tests check), paired comparisons, clustered
inference and GATES."""

import numpy as np
import pandas as pd
import pytest

from models.causal.heterogeneity import (
    calibration_test,
    cluster_codes,
    evaluate_choices,
    gates,
    gates_coverage,
    rate,
    rate_comparison,
    rate_point,
    robust_ols,
    toc,
    toc_band,
)


def _data(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    gamma = 1.0 + np.maximum(x, 0) + rng.standard_normal(n)
    return x, gamma, rng.integers(1, 4, n).astype(float)


def _brute_toc(priority: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """TOC_i = mean of the top-i DR scores minus the mean, by a loop (continuous priorities)."""
    order = np.argsort(-priority)
    return np.array([gamma[order[:i]].mean() - gamma.mean() for i in range(1, len(gamma) + 1)])


@pytest.mark.parametrize("weighted", [False, True])
def test_toc_at_q_one_is_zero(weighted):
    x, gamma, w = _data()
    weights = w if weighted else None
    assert toc(x, gamma, weights)[1][-1] == pytest.approx(0.0, abs=1e-12)
    assert toc(x, gamma, weights, q=np.array([0.5, 1.0]))[1][-1] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("target", ["AUTOC", "QINI"])
def test_constant_priorities_give_zero(target):
    _, gamma, w = _data()
    assert rate_point(np.ones_like(gamma), gamma, target) == pytest.approx(0.0, abs=1e-12)
    assert rate_point(np.ones_like(gamma), gamma, target, w) == pytest.approx(0.0, abs=1e-12)


def test_autoc_and_qini_from_the_toc_on_the_full_grid():
    x, gamma, _ = _data(n=257)
    n = len(gamma)
    curve = _brute_toc(x, gamma)
    np.testing.assert_allclose(toc(x, gamma)[1], curve, atol=1e-12)
    assert rate_point(x, gamma, "AUTOC") == pytest.approx(curve.mean())
    assert rate_point(x, gamma, "QINI") == pytest.approx(np.sum(np.arange(1, n + 1) / n**2 * curve))
    # the grid evaluation (grf's fractional units) agrees with the unit-level curve at q = i / n
    np.testing.assert_allclose(toc(x, gamma, q=np.arange(1, n + 1) / n)[1], curve, atol=1e-10)


def test_grid_toc_uses_fractional_units_between_grid_points():
    # four units, q = 0.375 covers one unit and half of the second: (3 + 0.5 * 1) / 1.5 - mean
    priority, gamma = np.array([4.0, 3.0, 2.0, 1.0]), np.array([3.0, 1.0, 0.0, 0.0])
    assert toc(priority, gamma, q=np.array([0.375]))[1][0] == pytest.approx(3.5 / 1.5 - 1.0)


def test_ties_are_averaged_within_groups():
    rng = np.random.default_rng(3)
    priority = rng.integers(0, 5, 300).astype(float)
    gamma = rng.standard_normal(300) + priority
    tied = rate_point(priority, gamma)
    group_mean = pd.Series(gamma).groupby(priority).transform("mean").to_numpy()
    # replacing each tie group's scores by their mean and breaking ties arbitrarily changes nothing
    broken = priority + 1e-9 * rng.permutation(300)
    assert tied == pytest.approx(rate_point(broken, group_mean))
    # and the order of the units within a tie group does not matter
    assert tied == pytest.approx(rate_point(priority, gamma[_shuffle_within(priority, rng)]))


def _shuffle_within(priority: np.ndarray, rng) -> np.ndarray:
    index = np.arange(len(priority))
    for value in np.unique(priority):
        members = index[priority == value]
        index[priority == value] = rng.permutation(members)
    return index


@pytest.mark.parametrize("target", ["AUTOC", "QINI"])
def test_invariant_to_permuting_units_and_scaling_weights(target):
    x, gamma, w = _data()
    perm = np.random.default_rng(1).permutation(len(x))
    base = rate_point(x, gamma, target, w)
    assert rate_point(x[perm], gamma[perm], target, w[perm]) == pytest.approx(base)
    assert rate_point(x, gamma, target, 7.5 * w) == pytest.approx(base)


@pytest.mark.parametrize("target", ["AUTOC", "QINI"])
def test_unit_weights_are_the_unweighted_rate_and_weights_matter(target):
    x, gamma, w = _data()
    assert rate_point(x, gamma, target, np.ones_like(w)) == rate_point(x, gamma, target)
    assert rate_point(x, gamma, target, w) != pytest.approx(rate_point(x, gamma, target))


def test_bad_inputs_are_named():
    x, gamma, w = _data()
    with pytest.raises(ValueError, match="NaN"):
        rate_point(np.where(np.arange(len(x)) == 3, np.nan, x), gamma)
    with pytest.raises(ValueError, match="positive"):
        rate_point(x, gamma, weights=np.zeros_like(w))
    with pytest.raises(ValueError, match="AUTOC or QINI"):
        rate_point(x, gamma, "AUC")


def test_a_missing_cluster_label_is_an_error_everywhere():
    x, gamma, _ = _data()
    clusters = np.repeat(np.arange(40), 10).astype(object)
    clusters[5] = None
    with pytest.raises(ValueError, match="1 of 400 units have no cluster label"):
        rate(x, gamma, clusters=clusters, n_boot=10)
    with pytest.raises(ValueError, match="no cluster label"):
        calibration_test(x, gamma, clusters)
    with pytest.raises(ValueError, match="no cluster label"):
        gates(x, gamma, clusters=clusters)
    np.testing.assert_array_equal(cluster_codes(None, 3), [0, 1, 2])


def _cluster_trial(n_clusters: int = 100, size: int = 20, seed: int = 0):
    """Cluster-level predictions and a cluster shock in the DR scores, no true heterogeneity."""
    rng = np.random.default_rng(seed)
    clusters = np.repeat(np.arange(n_clusters), size)
    tau_hat = np.repeat(rng.standard_normal(n_clusters), size)
    gamma = 1.0 + np.repeat(rng.normal(0, 1.0, n_clusters), size) + rng.standard_normal(n_clusters * size)
    return tau_hat, gamma, clusters


def test_clustered_calibration_test_widens_and_rate_draws_whole_clusters():
    tau_hat, gamma, clusters = _cluster_trial()
    plain = calibration_test(tau_hat, gamma).set_index("term")
    clustered = calibration_test(tau_hat, gamma, clusters).set_index("term")
    term = "differential_forest_prediction"
    assert clustered.loc[term, "std_error"] > 2.5 * plain.loc[term, "std_error"]
    assert rate(tau_hat, gamma, clusters=clusters, n_boot=200).se > 2 * rate(tau_hat, gamma, n_boot=200).se


def test_clustered_hc3_is_grfs_default_and_cr1_is_offered():
    """CR3 (sandwich::vcovCL type HC3, grf's best_linear_projection default): with one unit per
    cluster it is HC3 exactly; for a mean over equal clusters it is CR1 times G / (G - 1), by hand."""
    tau_hat, gamma, clusters = _cluster_trial()
    singletons = robust_ols(gamma, np.column_stack([np.ones_like(gamma), tau_hat]), np.arange(len(gamma)))
    hc3 = robust_ols(gamma, np.column_stack([np.ones_like(gamma), tau_hat]), None)
    np.testing.assert_allclose(singletons.bse, hc3.bse, rtol=1e-10)
    assert (singletons.vcov, hc3.vcov) == ("CR3", "HC3")
    mean_only = np.ones((len(gamma), 1))
    n_clusters = len(np.unique(clusters))
    cr3, cr1 = (robust_ols(gamma, mean_only, clusters, kind).bse[0] for kind in ("CR3", "CR1"))
    assert cr3**2 == pytest.approx(cr1**2 * n_clusters / (n_clusters - 1), rel=1e-10)
    default = calibration_test(tau_hat, gamma, clusters).set_index("term")
    chosen = calibration_test(tau_hat, gamma, clusters, cluster_vcov="CR1").set_index("term")
    term = "differential_forest_prediction"
    assert default.loc[term, "estimate"] == chosen.loc[term, "estimate"]
    assert 1.0 < default.loc[term, "std_error"] / chosen.loc[term, "std_error"] < 1.2
    with pytest.raises(ValueError, match="cluster_vcov must be one of"):
        robust_ols(gamma, mean_only, clusters, "HC1")


def test_paired_differences_share_draws():
    rng = np.random.default_rng(4)
    n = 1500
    tau = rng.standard_normal(n)
    gamma = tau + rng.normal(0, 2, n)
    priorities = pd.DataFrame({"good": tau + rng.normal(0, 0.3, n), "noise": rng.standard_normal(n), "same": None})
    priorities["same"] = priorities["good"]
    rules, diffs = rate_comparison(priorities, gamma, n_boot=200)
    diffs = diffs.set_index(["rule_a", "rule_b", "target"])
    identical = diffs.loc[("good", "same", "AUTOC")]
    assert identical["difference"] == 0.0 and identical["std_error"] == 0.0
    better = diffs.loc[("good", "noise", "AUTOC")]
    assert better["ci_lower"] > 0 and better["p_value"] < 1e-3
    rules = rules.set_index(["rule", "target"])
    assert rules.loc[("good", "AUTOC"), "ci_lower"] > 0 > rules.loc[("noise", "AUTOC"), "ci_lower"]


def test_toc_band_contains_the_curve_and_closes_at_one():
    x, gamma, _ = _data(n=600)
    band = toc_band(x, gamma, n_boot=100)
    assert band["q"].iloc[-1] == 1.0 and band["toc"].iloc[-1] == pytest.approx(0.0, abs=1e-12)
    assert (band["ci_lower"] <= band["toc"]).all() and (band["toc"] <= band["ci_upper"]).all()
    assert (band["std_error"].iloc[:-1] > 0).all()


def test_gates_cover_where_unit_intervals_cannot():
    """Predictions with unit-level noise: GATE intervals hold the true group means about 95% of the time."""
    rng = np.random.default_rng(5)
    covered = []
    for _ in range(60):
        n = 1000
        tau = rng.standard_normal(n)
        tau_hat = tau + rng.normal(0, 1.0, n)  # a noisy, attenuated ranking
        gamma = tau + rng.normal(0, 2, n)
        covered.append(gates_coverage(tau_hat, gamma, tau))
    assert 0.88 <= np.mean(covered) <= 0.99
    table = gates(tau_hat, gamma)
    assert list(table["group"]) == [1, 2, 3, 4, 5] and table["units"].sum() == 1000
    assert table["gate"].iloc[-1] > table["gate"].iloc[0]


def test_evaluate_choices_reports_intervals_and_paired_differences():
    rng = np.random.default_rng(6)
    n = 800
    tau = rng.standard_normal(n)
    gamma = tau + rng.normal(0, 1.5, n)
    ids = np.arange(n).astype(str)
    rows = []
    for choice, tau_hat in (("image_sequence", tau + rng.normal(0, 0.3, n)), ("image", rng.standard_normal(n))):
        rows.append(
            pd.DataFrame(
                {"unit_id": ids, "data_choice": choice, "learner": "t_learner", "tau": tau_hat, "gamma": gamma}
                | {"lower": tau_hat - 0.1, "upper": tau_hat + 0.1}
            )
        )
    estimates = pd.concat(rows, ignore_index=True)
    evaluation, differences = evaluate_choices(estimates, tau_true=pd.Series(tau, index=ids), n_boot=100)
    best = evaluation.iloc[0]
    assert best["data_choice"] == "image_sequence" and best["autoc_lower"] > 0
    assert {"blp_differential_se", "qini_upper", "unit_interval_coverage", "gates_coverage"} <= set(evaluation.columns)
    assert best["unit_interval_coverage"] < 0.5 and best["gates_coverage"] >= 0.6
    diff = differences.set_index("target").loc["AUTOC"]
    assert (diff["data_choice_a"], diff["data_choice_b"]) == ("image_sequence", "image") and diff["ci_lower"] > 0


def test_compare_choices_orients_and_pools_seeds():
    from models.simulation.study import compare_choices

    rows = []
    for seed, diff in enumerate([0.2, 0.3, 0.25]):
        # pairs come in DATA_CHOICES order (image before image_sequence): image - image_sequence
        rows.append(
            {"seed": seed, "heterogeneity": "change", "encoder": "small:random", "learner": "causal_forest", "target": "AUTOC"}
            | {
                "data_choice_a": "image",
                "data_choice_b": "image_sequence",
                "difference": -diff,
                "ci_lower": -diff - 0.1,
                "ci_upper": -diff + 0.1,
            }
        )
    table = compare_choices(pd.DataFrame(rows)).iloc[0]
    assert table["mean_difference"] == pytest.approx(0.25) and table["ci_lower"] < 0.25 < table["ci_upper"]
    assert table["seeds"] == 3 and table["seeds_a_wins"] == 3 and table["seeds_b_wins"] == 0
