"""Tweedie and LCC on real-looking prediction distributions: bandwidth rule, score grid, support, weak slopes, density choice."""

import warnings

import numpy as np
import pytest
from scipy.stats import gaussian_kde

from models.debiasing.corrections import (
    LinearCalibrationCorrection,
    OutOfSupportWarning,
    TweedieCorrection,
    WeakCalibrationWarning,
    kde_bandwidth,
    kde_score,
    silverman_bandwidth,
)
from models.debiasing.trial_effects import trial_ates

RNG = np.random.default_rng(11)
SHAPES = {
    "skewed": RNG.gamma(1.5, 1.0, 2000),
    "multimodal": np.concatenate([RNG.normal(-3, 0.3, 700), RNG.normal(0, 1, 600), RNG.normal(4, 0.2, 700)]),
    "heavy-tailed, sharply peaked": RNG.standard_t(1.5, 2000) * 0.2,
}


def test_default_bandwidth_is_scipys_scott_rule():
    x = SHAPES["skewed"]
    kde = gaussian_kde(x)
    assert kde_bandwidth(x) == pytest.approx(np.sqrt(kde.covariance[0, 0]), rel=1e-9)
    assert TweedieCorrection().fit(x, x + RNG.normal(0, 0.3, len(x))).bandwidth_ == pytest.approx(np.sqrt(kde.covariance[0, 0]), rel=1e-9)
    assert TweedieCorrection(bandwidth="silverman_derivative").fit(x, x + 0.1).bandwidth_ == silverman_bandwidth(x)
    peaked = SHAPES["heavy-tailed, sharply peaked"]  # the IQR term shrinks our former rule's bandwidth several-fold
    assert kde_bandwidth(peaked, "silverman_derivative") < 0.5 * kde_bandwidth(peaked)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("rule", ["scott", "silverman_derivative"])
def test_interpolated_score_matches_the_direct_score(shape, rule):
    """The grid step follows the bandwidth, so a narrow bandwidth over a wide range stays accurate."""
    x = SHAPES[shape]
    tweedie = TweedieCorrection(bandwidth=rule).fit(x, x + RNG.normal(0, 0.3, len(x)))
    z = np.concatenate([np.quantile(x, np.linspace(0.001, 0.999, 3000)), RNG.uniform(x.min(), x.max(), 1000)])
    direct = kde_score(z, x, tweedie.bandwidth_)
    error = np.abs(tweedie.score(z) - direct).max()
    assert error * tweedie.bandwidth_ < 0.02 and error < 0.01 * np.abs(direct).max()  # scores are O(1 / bandwidth)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_float32_maps_chunks_and_nan_cells(shape):
    """A float32 map stays float32 with the float64 accuracy; chunk boundaries change nothing; NaN
    cells (nodata) stay NaN and do not count as outside the support."""
    x = SHAPES[shape]
    tweedie = TweedieCorrection().fit(x, x + RNG.normal(0, 0.3, len(x)))
    z = RNG.uniform(x.min(), x.max(), 5001)
    wide = tweedie.score(z)
    narrow = tweedie.score(z.astype(np.float32))
    assert narrow.dtype == np.float32
    assert np.abs(narrow - kde_score(z.astype(np.float32).astype(float), x, tweedie.bandwidth_)).max() * tweedie.bandwidth_ < 0.02
    np.testing.assert_array_equal(tweedie.score(z, chunk=7), wide)
    cells = z.astype(np.float32).reshape(3, 1667)
    cells[1, 5] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfSupportWarning)
        corrected = tweedie.transform(cells)
    assert corrected.shape == cells.shape and corrected.dtype == np.float32
    assert np.isnan(corrected[1, 5]) and np.isfinite(np.delete(corrected.ravel(), 1667 + 5)).all()


def test_out_of_support_warning_fires_exactly_outside_the_calibration_range():
    x = SHAPES["skewed"]
    tweedie = TweedieCorrection().fit(x, x + 0.2 * RNG.standard_normal(len(x)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfSupportWarning)
        tweedie.transform(np.array([x.min(), np.median(x), x.max()]))  # inside: silent
    just_outside = x.max() + 0.5 * tweedie.bandwidth_  # within the old +3 bandwidth margin, which stayed silent
    with pytest.warns(OutOfSupportWarning, match="1 predictions lie outside the calibration predictions' range"):
        tweedie.transform(np.array([just_outside]))
    far = np.array([x.max() + 50 * tweedie.bandwidth_])  # beyond the grid: the direct score, not the edge value
    with pytest.warns(OutOfSupportWarning):
        np.testing.assert_allclose(tweedie.transform(far), far - tweedie.sigma_**2 * kde_score(far, x, tweedie.bandwidth_))


def test_lcc_warns_on_a_weak_slope_and_reports_the_variance_inflation():
    y = RNG.standard_normal(5000)
    weak = 0.19 * y + 0.3 * RNG.standard_normal(5000)
    with pytest.warns(WeakCalibrationWarning, match=r"1/b\^2 = 2\d"):
        lcc = LinearCalibrationCorrection().fit(weak, y)
    assert lcc.to_dict()["variance_inflation"] == pytest.approx(1 / lcc.b_**2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeakCalibrationWarning)
        LinearCalibrationCorrection().fit(0.6 * y + 0.3 * RNG.standard_normal(5000), y)


def test_density_from_the_calibration_or_the_trial():
    y = RNG.standard_normal(3000)
    pred = 0.6 * y + 0.5 * RNG.standard_normal(3000)
    tweedie = TweedieCorrection().fit(pred[:1000], y[:1000])
    trial = pred[1000:] + 0.8  # a trial in a richer area than the calibration sample
    own = tweedie.with_density(trial)
    assert own.sigma_ == tweedie.sigma_ and own.support_ == (trial.min(), trial.max())
    with pytest.warns(OutOfSupportWarning):  # the shifted trial leaves the calibration range, not its own
        assert not np.allclose(own.transform(trial), tweedie.transform(trial))
    t = (RNG.random(2000) < 0.5).astype(int)
    labeled = RNG.random(2000) < 0.1
    with pytest.warns(OutOfSupportWarning):
        by_calibration = trial_ates(y[1000:], trial, t, LinearCalibrationCorrection().fit(pred[:1000], y[:1000]), tweedie, labeled)
    by_trial = trial_ates(
        y[1000:], trial, t, LinearCalibrationCorrection().fit(pred[:1000], y[:1000]), tweedie, labeled, tweedie_density="trial"
    )
    assert by_calibration["tweedie"].estimate != by_trial["tweedie"].estimate
    assert by_calibration["lcc"].estimate == by_trial["lcc"].estimate


def test_round_trip_keeps_the_correction():
    x = SHAPES["multimodal"]
    tweedie = TweedieCorrection().fit(x, x + 0.3 * RNG.standard_normal(len(x)))
    again = TweedieCorrection.from_dict(tweedie.to_dict())
    z = np.linspace(x.min(), x.max(), 101)
    np.testing.assert_allclose(again.transform(z), tweedie.transform(z))
