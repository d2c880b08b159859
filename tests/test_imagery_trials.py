"""Many trials whose treatment reaches the map through the imagery."""

import json

import numpy as np
import pytest
import torch

from models.debias import LinearCalibrationCorrection, TweedieCorrection
from models.imagery_trials import WealthResponse, imagery_trials
from models.many_trials import TrialDesign, evaluate
from models.simulate import SPECTRA, SimulationConfig, simulate_study
from models.training import SequenceData

RESPONSE = WealthResponse({50: 0.10, 40: 0.05, 60: -0.05, 30: -0.10})


def _data(n: int = 40, size: int = 16, seed: int = 0) -> SequenceData:
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((n, 3, 6, size, size)).astype(np.float32))
    valid = torch.ones((n, 3, size, size), dtype=torch.bool)
    valid[:, -1, :2] = False  # two rows of nodata on the last date
    mean, std = torch.full((6,), 0.1), torch.full((6,), 0.05)
    return SequenceData(np.array([f"P{i}" for i in range(n)], dtype=object), x, valid, torch.arange(3.0), mean, std)


def _is_spectrum(x: torch.Tensor, data: SequenceData, code: int) -> torch.Tensor:
    """Pixels (H, W) of one date whose normalized bands lie near a class spectrum."""
    target = (torch.tensor(SPECTRA[code]) - data.band_mean) / data.band_std
    return ((x - target[:, None, None]).abs() < 1.5).all(dim=0)


def test_a_wealth_gain_turns_a_share_of_the_last_date_into_richer_classes():
    data = _data()
    changed = RESPONSE.apply(data, 1.0, np.random.default_rng(1))
    assert torch.equal(changed.x[:, :-1], data.x[:, :-1]) and torch.equal(changed.valid, data.valid)
    moved = (changed.x[:, -1] != data.x[:, -1]).any(dim=1)  # (n, H, W)
    valid_pixels = int(data.valid[0, -1].sum())
    assert moved[0].sum() == round(0.10 * valid_pixels) + round(0.05 * valid_pixels)
    assert not moved[:, :2].any()  # nodata pixels stay as they are
    assert _is_spectrum(changed.x[0, -1], data, 50)[moved[0]].float().mean() > 0.5
    poorer = RESPONSE.apply(data, -1.0, np.random.default_rng(1))
    assert (poorer.x[:, -1] != data.x[:, -1]).any(dim=1)[0].sum() == round(0.05 * valid_pixels) + round(0.10 * valid_pixels)
    assert torch.equal(RESPONSE.apply(data, 0.0, np.random.default_rng(1)).x, data.x)
    assert RESPONSE.gains(20.0) == pytest.approx({50: 2 / 3, 40: 1 / 3})  # never more than the whole chip


def test_imagery_trials_re_predict_treated_units():
    data = _data(n=300, size=8)
    built = (torch.tensor(SPECTRA[50]) - data.band_mean) / data.band_std

    def predict(d: SequenceData) -> np.ndarray:  # a "map" that reads the built-up share of the last date
        share = ((d.x[:, -1] - built[None, :, None, None]).abs() < 1.5).all(dim=1).float().mean(dim=(1, 2))
        return (share / 0.15).numpy().astype(float)

    rng = np.random.default_rng(2)
    truth = rng.standard_normal(300)
    calibration = predict(data) + 0.5 * truth  # any calibration pairs: the test is about the trial mechanics
    lcc, tweedie = LinearCalibrationCorrection().fit(calibration, truth), TweedieCorrection().fit(calibration, truth)
    design = TrialDesign(n_trials=4, units_per_trial=100, effects=(-1.0, 0.0, 1.0), calibration_boot=0)
    trials = imagery_trials(data, truth, predict, RESPONSE, lcc, tweedie, design)
    assert set(trials["response"]) == {"imagery"} and trials["trial"].nunique() == 12
    summary = evaluate(trials).set_index(["method", "true_effect"])
    assert summary.loc[("naive", 1.0), "mean_estimate"] > 0.3  # the map sees the built-up gain
    assert summary.loc[("naive", 0.0), "mean_estimate"] == pytest.approx(0.0, abs=0.1)
    assert summary.loc[("oracle", 1.0), "mean_estimate"] == pytest.approx(1.0, abs=0.35)


def test_the_simulator_records_how_land_cover_follows_wealth(tmp_path):
    paths = simulate_study(SimulationConfig(n_units=20, n_survey=20, n_dates=2, region_px=128, chip_size=16), tmp_path)
    response = WealthResponse.read(paths.wealth_response)
    assert response.share_per_wealth[50] > 0 and response.share_per_wealth[60] < response.share_per_wealth[50]
    assert abs(sum(response.share_per_wealth.values())) < 1e-3  # shares sum to one, so their slopes sum to zero
    assert json.loads(paths.wealth_response.read_text()) and paths.manifest()["truth"]["wealth_response"].endswith(".json")
