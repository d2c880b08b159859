"""The correction diagnostics: quiet on a well-specified Gaussian map, loud on the overshoot case,
and the held-out effect slopes they report are the slopes trials then get."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.debiasing.trust import CorrectionDiagnostics, correction_diagnostics, fit_corrections, label_budget, trial_diagnostics

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))

from correction_diagnostics import run  # noqa: E402


def test_a_gaussian_shrinkage_map_passes_both_corrections_quietly():
    row = run("gaussian", seed=0)
    assert not row["overshoot_flag"] and row["agree"]
    for name in ("lcc", "tweedie"):
        assert row[f"heldout_{name}"] == pytest.approx(1.0, abs=0.05)
        assert row[f"trial_{name}"] == pytest.approx(1.0, abs=0.05)


def test_a_shrunk_skewed_map_flags_tweedies_overshoot_and_favours_lcc():
    row = run("overshoot", seed=0)
    assert row["slope_b"] < 0.3 and row["skewness"] > 0.5
    assert row["overshoot_flag"] and not row["agree"] and row["favoured"] == "lcc"
    assert row["trial_tweedie"] > 2 and row["trial_lcc"] == pytest.approx(1.0, abs=0.1)  # the trials confirm it
    assert row["heldout_tweedie"] == pytest.approx(row["trial_tweedie"], rel=0.2)


def test_a_nonlinear_map_is_caught_by_the_held_out_slopes_without_the_red_flag():
    row = run("nonlinear", seed=1)
    assert not row["overshoot_flag"]  # b > 0.3: only the cross-fitted slopes can tell
    assert not row["agree"] and row["favoured"] == row["best_in_trials"] == "lcc"
    assert row["heldout_tweedie"] == pytest.approx(row["trial_tweedie"], abs=0.1)


def test_the_diagnostics_round_trip_through_json():
    rng = np.random.default_rng(0)
    y = rng.standard_normal(300)
    d = correction_diagnostics(0.6 * y + 0.3 * rng.standard_normal(300), y, n_boot=20)
    record = d.to_dict()
    assert CorrectionDiagnostics.from_dict(record) == d
    assert record["favoured"] in ("lcc", "tweedie") and record["verdict"].startswith("held-out effect slopes")
    assert list(d.table()["method"]) == ["naive", "lcc", "tweedie"]


def _effects(lcc=1.0, tweedie=1.05, se=0.1, ppi_se=0.2, labels=50):
    rows = [("naive", 0.6, 0.06, 0), ("lcc", lcc, se, 0), ("tweedie", tweedie, se, 0)]
    if labels:
        rows.append(("ppi", 1.0, ppi_se, labels))
    return pd.DataFrame(rows, columns=["method", "estimate", "std_error", "labels"])


def test_the_label_budget_scales_ppis_width_to_each_method():
    budget = label_budget(_effects(se=0.1, ppi_se=0.2, labels=50), units=150).set_index("method")
    assert budget.loc["lcc", "ppi_labels_for_same_width"] == 200  # half the width: four times the labels
    assert not budget.loc["lcc", "reachable"]  # the trial has 150 units
    assert budget.loc["ppi", "ppi_labels_for_same_width"] == 50 and budget.loc["ppi", "reachable"]
    assert label_budget(_effects(labels=0), units=150)["ppi_labels_for_same_width"].isna().all()


def test_a_trial_warns_when_the_corrections_differ_by_more_than_its_standard_error():
    rng = np.random.default_rng(0)
    y = rng.standard_normal(400)
    record = fit_corrections(pd.DataFrame({"prediction": 0.6 * y + 0.3 * rng.standard_normal(400), "wealth": y}))
    low, high = record["tweedie"]["support"]
    predictions = pd.DataFrame({"prediction": np.r_[np.linspace(low, high, 90), high + 1 + np.arange(10)]})
    quiet = trial_diagnostics(predictions, _effects(tweedie=1.05, labels=0), record)
    assert quiet.corrections_agree and quiet.outside_support == pytest.approx(0.1)
    assert quiet.recommended == quiet.favoured and "WARNING" not in quiet.verdict
    loud = trial_diagnostics(predictions, _effects(tweedie=1.5, labels=30), record)
    assert not loud.corrections_agree and loud.recommended == "ppi"
    assert "WARNING" in loud.verdict and "PPI++ (30 labelled units)" in loud.verdict


def test_a_trial_with_wealth_measured_for_some_units_gets_ppi_on_those_labels_and_no_oracle():
    from models.debiasing.corrections import LinearCalibrationCorrection, TweedieCorrection
    from models.debiasing.trial_effects import TrialDesign, observed_trial

    rng = np.random.default_rng(1)
    y = rng.standard_normal(500)
    pred = 0.6 * y + 0.3 * rng.standard_normal(500)
    lcc, tweedie = LinearCalibrationCorrection().fit(pred, y), TweedieCorrection().fit(pred, y)
    t = rng.binomial(1, 0.5, 200)
    wealth = rng.standard_normal(200) + 0.5 * t
    measured = np.where(np.arange(200) % 4 == 0, wealth, np.nan)  # a quarter surveyed
    table = observed_trial("x", measured, 0.6 * wealth + 0.3 * rng.standard_normal(200), t, lcc, tweedie, TrialDesign())
    rows = table.set_index("method")
    assert list(rows.index) == ["naive", "lcc", "tweedie", "ppi"]
    assert rows.loc["ppi", "labels"] == 50 and rows.loc[["naive", "lcc", "tweedie"], "labels"].eq(0).all()
    with pytest.warns(UserWarning, match="2 labelled units per arm"):
        few = observed_trial("x", np.where(np.arange(200) == 0, wealth, np.nan), wealth, t, lcc, tweedie, TrialDesign())
    assert "ppi" not in set(few["method"])


def test_measured_wealth_keeps_empty_cells_as_missing_and_names_text_that_is_not_a_number():
    from models.debiasing.trust import measured_wealth

    units = pd.DataFrame({"unit_id": ["a", "b", "c"], "wealth": [1.5, None, "2"]})
    np.testing.assert_array_equal(measured_wealth(units), [1.5, np.nan, 2.0])
    with pytest.raises(ValueError, match=r"1 value\(s\) that are not numbers: b='rich'"):
        measured_wealth(pd.DataFrame({"unit_id": ["a", "b"], "wealth": [1.0, "rich"]}))
