"""One map, many trials: the ATE on a wealth outcome by oracle, naive, LCC, Tweedie and PPI.

Simulated trials draw units from places where the true wealth is known (the survey's held-out
split), randomize treatment, and add a true effect ``delta`` to the treated units' wealth. The map
responds to that change as it responds to wealth differences across places: treated predictions
move by ``b * delta``, with b the slope of predictions on truth over the pool (a linear response,
our modelling choice; it is the attenuation mechanism of Study 2).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from ppi_py import ppi_ols_ci, ppi_ols_pointestimate

from models.debias import LinearCalibrationCorrection, OutOfSupportWarning, TweedieCorrection
from models.heterogeneity import Z95, Estimate, difference_in_means

METHODS = ("oracle", "naive", "lcc", "tweedie", "ppi")
TweedieDensity = Literal["calibration", "trial"]


def ppi_ate(
    y_labeled: np.ndarray, yhat_labeled: np.ndarray, t_labeled: np.ndarray, yhat_unlabeled: np.ndarray, t_unlabeled: np.ndarray
) -> Estimate:
    """Prediction-powered ATE: OLS of outcome on [1, T] with a small labeled subset (ppi-python)."""
    X_lab = np.column_stack([np.ones_like(t_labeled, dtype=float), t_labeled])
    X_unl = np.column_stack([np.ones_like(t_unlabeled, dtype=float), t_unlabeled])
    point = ppi_ols_pointestimate(X_lab, y_labeled, yhat_labeled, X_unl, yhat_unlabeled)[1]
    lower, upper = ppi_ols_ci(X_lab, y_labeled, yhat_labeled, X_unl, yhat_unlabeled, alpha=0.05)
    return Estimate(float(point), float((upper[1] - lower[1]) / (2 * Z95)))


def trial_ates(
    truth: np.ndarray,
    prediction: np.ndarray,
    t: np.ndarray,
    lcc: LinearCalibrationCorrection,
    tweedie: TweedieCorrection,
    labeled: np.ndarray,
    tweedie_density: TweedieDensity = "calibration",
) -> dict[str, Estimate]:
    """Every method's ATE for one trial; ``labeled`` marks the units whose truth PPI may use.

    ``tweedie_density``: the KDE of the calibration predictions (the map's correction, fitted once)
    or of this trial's own predictions (the same sigma); the source study uses both in places.
    """
    tweedie = tweedie.with_density(prediction) if tweedie_density == "trial" else tweedie
    return {
        "oracle": difference_in_means(truth, t),
        "naive": difference_in_means(prediction, t),
        "lcc": difference_in_means(lcc.transform(prediction), t),
        "tweedie": difference_in_means(tweedie.transform(prediction), t),
        "ppi": ppi_ate(truth[labeled], prediction[labeled], t[labeled], prediction[~labeled], t[~labeled]),
    }


@dataclass(frozen=True)
class TrialDesign:
    """How the simulated trials are drawn: count, size, true effect, PPI's labelled share."""

    n_trials: int = 200
    units_per_trial: int = 150
    effect: float = 0.5
    labeled_share: float = 0.1  # PPI's extra labelled data per trial
    tweedie_density: TweedieDensity = "calibration"
    seed: int = 0


def _rows(trial, estimates: dict[str, Estimate], true_effect: float) -> list[dict]:
    return [
        {
            "trial": trial,
            "method": m,
            "estimate": e.estimate,
            "std_error": e.se,
            "true_effect": true_effect,
            "covered": e.ci[0] <= true_effect <= e.ci[1],
        }
        for m, e in estimates.items()
    ]


def simulate_trials(
    pool: pd.DataFrame, lcc: LinearCalibrationCorrection, tweedie: TweedieCorrection, design: TrialDesign = TrialDesign()
) -> pd.DataFrame:
    """Draw trials from ``pool`` (columns truth, prediction); one row per trial and method.

    The treated units' predictions leave the calibration range now and then; over hundreds of
    trials that is expected, so the out-of-support warning is silenced here (not in observed trials).
    """
    rng = np.random.default_rng(design.seed)
    slope = np.polyfit(pool["truth"], pool["prediction"], 1)[0]
    rows = []
    for trial in range(design.n_trials):
        idx = rng.choice(len(pool), size=min(design.units_per_trial, len(pool)), replace=False)
        t = rng.binomial(1, 0.5, len(idx))
        truth = pool["truth"].to_numpy()[idx] + design.effect * t
        prediction = pool["prediction"].to_numpy()[idx] + slope * design.effect * t
        labeled = rng.random(len(idx)) < design.labeled_share
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfSupportWarning)
            estimates = trial_ates(truth, prediction, t, lcc, tweedie, labeled, design.tweedie_density)
        rows += _rows(trial, estimates, design.effect)
    return pd.DataFrame(rows)


def observed_trial(
    name: str,
    truth: np.ndarray,
    prediction: np.ndarray,
    t: np.ndarray,
    lcc: LinearCalibrationCorrection,
    tweedie: TweedieCorrection,
    design: TrialDesign,
    true_effect: float,
) -> pd.DataFrame:
    """One real (or demo) trial's ATE on the mapped outcome by every method; PPI labels a random
    ``design.labeled_share`` of its units."""
    labeled = np.random.default_rng(design.seed).random(len(t)) < design.labeled_share
    return pd.DataFrame(_rows(name, trial_ates(truth, prediction, t, lcc, tweedie, labeled, design.tweedie_density), true_effect))


def evaluate(trials: pd.DataFrame) -> pd.DataFrame:
    """Bias, RMSE and 95% interval coverage of each method across trials."""
    err = trials["estimate"] - trials["true_effect"]
    summary = (
        trials.assign(err=err, sq=err**2)
        .groupby("method")
        .agg(
            bias=("err", "mean"),
            rmse=("sq", lambda s: float(np.sqrt(s.mean()))),
            coverage=("covered", "mean"),
            mean_estimate=("estimate", "mean"),
            trials=("trial", "nunique"),
        )
    )
    return summary.reindex([m for m in METHODS if m in summary.index]).reset_index()
