"""LCC and Tweedie: exact and closed-form checks, degenerate input, and the many-trials comparison."""

import numpy as np
import pandas as pd
import pytest

from models.debiasing.corrections import CorrectionError, LinearCalibrationCorrection, TweedieCorrection, diagnostics, per_place_rmse
from models.debiasing.trial_effects import CalibrationDraws, TrialDesign, evaluate, simulate_trials


def test_lcc_recovers_linear_shrinkage_exactly():
    truth = np.random.default_rng(0).standard_normal(500)
    prediction = 0.3 + 0.6 * truth
    lcc = LinearCalibrationCorrection().fit(prediction, truth)
    assert lcc.a_ == pytest.approx(0.3) and lcc.b_ == pytest.approx(0.6)
    np.testing.assert_allclose(lcc.transform(prediction), truth, atol=1e-10)


def test_lcc_refuses_a_slope_that_is_not_clearly_positive():
    rng = np.random.default_rng(1)
    with pytest.raises(CorrectionError, match="not clearly positive"):
        LinearCalibrationCorrection().fit(rng.standard_normal(200), rng.standard_normal(200))


def gaussian_shrinkage(n: int, seed: int = 0):
    """Y ~ N(0, 1), Yhat = 0.6 Y + N(0, 0.24): closed form, Tweedie is exactly unbiased (see below)."""
    rng = np.random.default_rng(seed)
    y = rng.standard_normal(n)
    return y, 0.6 * y + np.sqrt(0.24) * rng.standard_normal(n)


def test_tweedie_matches_the_closed_form_on_gaussian_shrinkage():
    # Yhat ~ N(0, v), v = 0.36 + 0.24; sigma^2 = Var(Yhat - Y) = 0.16 + 0.24; score(z) = -z / v,
    # so the correction is z (1 + sigma^2 / v) = z (1 + 0.4 / 0.6) = z / 0.6: effects are un-attenuated.
    y, yhat = gaussian_shrinkage(20000)
    tweedie = TweedieCorrection().fit(yhat, y)
    assert tweedie.sigma_**2 == pytest.approx(0.4, rel=0.03)
    z = np.linspace(-1, 1, 21)
    corrected = tweedie.transform(z)
    assert np.polyfit(z, corrected, 1)[0] == pytest.approx(1 / 0.6, rel=0.03)
    np.testing.assert_allclose(corrected, z / 0.6, atol=0.15)  # pointwise: KDE sampling noise at Scott's bandwidth


def test_tweedie_is_nearly_unbiased_for_the_ate_on_gaussian_shrinkage():
    y, yhat = gaussian_shrinkage(4000, seed=1)
    calib = slice(0, 2000)
    tweedie = TweedieCorrection().fit(yhat[calib], y[calib])
    lcc = LinearCalibrationCorrection().fit(yhat[calib], y[calib])
    pool = pd.DataFrame({"truth": y[2000:], "prediction": yhat[2000:]})
    summary = evaluate(
        simulate_trials(pool, lcc, tweedie, TrialDesign(n_trials=60, units_per_trial=1000, effects=(0.5,), seed=2))
    ).set_index("method")
    assert summary.loc["naive", "mean_estimate"] == pytest.approx(0.3, abs=0.05)  # attenuated by b = 0.6
    for method in ("oracle", "lcc", "tweedie", "ppi"):
        assert abs(summary.loc[method, "bias"]) < 0.06, method
    assert summary.loc["naive", "coverage"] < 0.5 and summary.loc["lcc", "coverage"] > 0.85


def test_degenerate_inputs():
    y = np.linspace(0, 1, 50)
    with pytest.raises(CorrectionError, match="constant"):
        TweedieCorrection().fit(np.ones(50), y)
    with pytest.raises(CorrectionError, match="NaN"):
        LinearCalibrationCorrection().fit(np.r_[np.nan, y[1:]], y)
    with pytest.raises(CorrectionError, match="at least 10"):
        TweedieCorrection().fit(y[:5], y[:5])
    identity = TweedieCorrection().fit(y, y)  # sigma = 0: predictions are the truth
    np.testing.assert_array_equal(identity.transform(y), y)
    with pytest.warns(UserWarning, match="outside the calibration predictions' range"):
        TweedieCorrection().fit(y + 0.1 * np.sin(40 * y), y).transform(np.array([10.0]))


def test_diagnostics_flag_shrinkage():
    y, yhat = gaussian_shrinkage(3000)
    d = diagnostics(yhat, y)
    assert d["slope_b"] == pytest.approx(0.6, abs=0.03) and d["correction_warranted"]
    assert not diagnostics(y + 0.01 * np.random.default_rng(0).standard_normal(3000), y)["correction_warranted"]


def test_several_effects_give_one_slope_per_method():
    """Zero and negative effects included: the corrections' slope of estimated on true effect is 1,
    naive's the calibration slope, and the corrections' intervals (with calibration draws) cover."""
    y, yhat = gaussian_shrinkage(4000, seed=3)
    calib = slice(0, 1000)
    lcc, tweedie = LinearCalibrationCorrection().fit(yhat[calib], y[calib]), TweedieCorrection().fit(yhat[calib], y[calib])
    draws = CalibrationDraws.fit(yhat[calib], y[calib], n_boot=50, seed=1)
    pool = pd.DataFrame({"truth": y[1000:], "prediction": yhat[1000:]})
    design = TrialDesign(n_trials=15, units_per_trial=500, effects=(-0.5, 0.0, 0.5), seed=4)
    summary = evaluate(simulate_trials(pool, lcc, tweedie, design, draws))
    assert set(summary["true_effect"]) == {-0.5, 0.0, 0.5} and (summary["trials"] == 15).all()
    slopes = summary.drop_duplicates("method").set_index("method")["slope"]
    assert slopes["naive"] == pytest.approx(0.6, abs=0.08)
    for method in ("oracle", "lcc", "tweedie"):
        assert slopes[method] == pytest.approx(1.0, abs=0.1), method
    corrected = summary[summary["method"].isin(["lcc", "tweedie"])]
    assert corrected["coverage"].min() >= 0.8


def test_corrected_values_are_for_effects_not_for_one_place():
    rng = np.random.default_rng(0)
    truth = rng.standard_normal(20_000)
    observed = truth + 0.8 * rng.standard_normal(truth.size)
    prediction = observed / 1.64  # the conditional mean E[truth | observed]: the best per-place guess
    lcc = LinearCalibrationCorrection().fit(prediction[:5000], truth[:5000])
    tweedie = TweedieCorrection().fit(prediction[:5000], truth[:5000])
    rmse = per_place_rmse(prediction[5000:], truth[5000:], lcc, tweedie)
    assert rmse["naive"] == pytest.approx(np.sqrt(0.64 / 1.64), abs=0.02)
    assert rmse["lcc"] == pytest.approx(0.8, abs=0.03)  # LCC undoes the shrinkage: back to the noisy observation
    assert rmse["tweedie"] > rmse["naive"] + 0.1
