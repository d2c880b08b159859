"""Intervals that include the calibration step, cluster-robust trial errors, and the coverage study."""

import numpy as np
import pytest

from models.causal.heterogeneity import difference_in_means
from models.debiasing.calibration_study import CoverageWorld, coverage_study, summarize
from models.debiasing.corrections import LinearCalibrationCorrection
from models.debiasing.trial_effects import CalibrationDraws, corrected_ate


def test_calibration_draws_spread_like_the_slope_estimate():
    world = CoverageWorld()
    truth, pred = world.places(200, np.random.default_rng(0))
    draws = CalibrationDraws.fit(pred, truth, n_boot=300, seed=1)
    slopes = np.array([d.b_ for d in draws.lcc])
    assert len(draws.tweedie) == 300 and {d.bandwidth for d in draws.tweedie} == {"scott"}
    # the bootstrap spread of b matches OLS's own standard error of b
    assert np.std(slopes, ddof=1) == pytest.approx(LinearCalibrationCorrection().fit(pred, truth).b_se_, rel=0.2)


def test_calibration_aware_interval_adds_the_calibration_variance():
    rng = np.random.default_rng(2)
    world = CoverageWorld()
    truth, pred = world.places(100, rng)
    lcc = LinearCalibrationCorrection().fit(pred, truth)
    draws = CalibrationDraws.fit(pred, truth, n_boot=200, seed=3)
    trial = world.trial(rng)
    only = corrected_ate(trial["prediction"], trial["t"], lcc.transform)
    aware = corrected_ate(trial["prediction"], trial["t"], lcc.transform, [d.transform for d in draws.lcc])
    assert aware.estimate == only.estimate and aware.se > only.se
    # LCC's ATE is the naive one over b: its calibration variance is about ATE^2 var(b) / b^2
    expected = np.sqrt(only.se**2 + (aware.estimate * lcc.b_se_ / lcc.b_) ** 2)
    assert aware.se == pytest.approx(expected, rel=0.25)
    with pytest.raises(ValueError, match="no cluster label"):
        corrected_ate(trial["prediction"], trial["t"], lcc.transform, clusters=np.full(len(trial["t"]), None))


def test_cluster_robust_difference_in_means_widens_on_a_cluster_randomized_trial():
    trial = CoverageWorld(village_size=25, village_share=0.3).trial(np.random.default_rng(4))
    plain = difference_in_means(trial["truth"], trial["t"])
    clustered = difference_in_means(trial["truth"], trial["t"], trial["village"])
    assert clustered.estimate == pytest.approx(plain.estimate) and clustered.se > 2 * plain.se


@pytest.mark.slow  # a coverage study: hundreds of simulated trials
def test_only_calibration_aware_intervals_cover_with_a_small_calibration_split():
    world = CoverageWorld()
    rows = coverage_study(world, calibration_sizes=(100,), calibration_draws=40, trials_per_draw=3, n_boot=100, label_budgets=(100,))
    table = summarize(rows, world.effect).set_index(["method", "interval"])
    for method in ("lcc", "tweedie"):
        only, aware = table.loc[(method, "trial only"), "coverage"], table.loc[(method, "calibration-aware"), "coverage"]
        assert aware >= 0.88 and aware > only + 0.05, (method, only, aware)
        assert abs(table.loc[(method, "calibration-aware"), "bias"]) < 0.05
    assert table.loc[("naive", "trial only"), "coverage"] < 0.1  # attenuated by the slope 0.61
    assert table.loc[("ppi++", "trial only"), "coverage"] >= 0.85


def test_a_weak_resample_is_kept_as_a_draw_not_refused():
    rng = np.random.default_rng(5)
    truth = rng.standard_normal(40)
    pred = 0.3 * truth + rng.standard_normal(40)  # b is positive but weakly determined on 40 places
    draws = CalibrationDraws.fit(pred, truth, n_boot=300, seed=0)
    slopes = np.array([d.b_ for d in draws.lcc])
    assert len(slopes) == 300 and (slopes - 1.96 * np.array([d.b_se_ for d in draws.lcc]) <= 0).any()


def test_ppi_labels_at_least_two_units_per_arm():
    from models.debiasing.trial_effects import label_units

    t = np.r_[np.zeros(30, int), np.ones(10, int)]
    labeled = label_units(t, 0.1, np.random.default_rng(0))
    assert labeled[t == 0].sum() == 3 and labeled[t == 1].sum() == 2


@pytest.mark.slow  # a coverage study: hundreds of simulated trials
def test_cluster_robust_ppi_covers_on_cluster_randomized_trials():
    from models.debiasing.trial_effects import ppi_ate

    world, rng = CoverageWorld(village_size=20, village_share=0.3), np.random.default_rng(6)
    covered = {"units": [], "clusters": []}
    for _ in range(40):
        trial = world.trial(rng)
        labeled = np.zeros(len(trial["t"]), bool)
        labeled[rng.choice(len(labeled), 300, replace=False)] = True
        args = (trial["truth"], trial["prediction"], trial["t"], labeled)
        for name, clusters in (("units", None), ("clusters", trial["village"])):
            lower, upper = ppi_ate(*args, clusters, n_boot=100, seed=int(rng.integers(2**31))).ci
            covered[name].append(lower <= world.effect <= upper)
    assert np.mean(covered["clusters"]) >= 0.85
    assert np.mean(covered["units"]) < np.mean(covered["clusters"]) - 0.1  # independent-unit intervals under-cover
    with pytest.raises(ValueError, match="no cluster label"):
        ppi_ate(*args, np.full(len(labeled), None))
