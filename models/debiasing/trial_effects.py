"""One map, many trials: the ATE on a wealth outcome by oracle, naive, LCC, Tweedie and PPI.

Simulated trials (``draw_trials``) draw units from places where the true wealth is known (the
survey's held-out split), randomize treatment, and add a true effect ``delta`` (several, zero and
negative included) to the treated units' wealth. How the map responds is the caller's: through the
imagery (``models.debiasing.imagery_study``, the main evaluation) or, in ``simulate_trials``, the linear
shortcut (treated predictions move by ``b * delta``, b the slope of predictions on truth over the
pool: the model under which LCC is unbiased by construction, kept as a sensitivity analysis).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from ppi_py import ppi_ols_ci, ppi_ols_pointestimate

from models.causal.heterogeneity import Z95, Estimate, cluster_codes, cluster_members, difference_in_means
from models.debiasing.corrections import (
    BandwidthRule,
    LinearCalibrationCorrection,
    OutOfSupportWarning,
    TweedieCorrection,
    WeakCalibrationWarning,
)

METHODS = ("oracle", "naive", "lcc", "tweedie", "ppi")
TweedieDensity = Literal["calibration", "trial"]


def _ppi_point(truth: np.ndarray, prediction: np.ndarray, design: np.ndarray, labeled: np.ndarray) -> float:
    lab, unl = labeled, ~labeled
    return float(ppi_ols_pointestimate(design[lab], truth[lab], prediction[lab], design[unl], prediction[unl])[1])


def ppi_ate(
    truth: np.ndarray,
    prediction: np.ndarray,
    t: np.ndarray,
    labeled: np.ndarray,
    clusters: np.ndarray | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> Estimate:
    """Prediction-powered ATE: ppi-python's PPI++ OLS of outcome on [1, T] (lambda tuned), with the
    truth of the ``labeled`` units only. ppi-python's interval assumes independent units; with
    ``clusters`` the standard error comes from a cluster bootstrap around the same estimator
    (clusters resampled with all their units, labeled or not; ``n_boot`` draws)."""
    truth, prediction, t, labeled = np.asarray(truth, float), np.asarray(prediction, float), np.asarray(t), np.asarray(labeled, bool)
    design = np.column_stack([np.ones(len(t)), t.astype(float)])  # OLS of outcome on [1, T]
    point = _ppi_point(truth, prediction, design, labeled)
    if clusters is None:
        lower, upper = ppi_ols_ci(design[labeled], truth[labeled], prediction[labeled], design[~labeled], prediction[~labeled], alpha=0.05)
        return Estimate(point, float((upper[1] - lower[1]) / (2 * Z95)))
    members = cluster_members(cluster_codes(clusters, len(t)))
    rng, draws = np.random.default_rng(seed), []
    for _ in range(n_boot):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        arms = [(t[idx] == arm) & lab for arm in (0, 1) for lab in (labeled[idx], ~labeled[idx])]
        if min(a.sum() for a in arms) >= 2:  # both arms labeled and unlabeled, or PPI's OLS is singular
            draws.append(_ppi_point(truth[idx], prediction[idx], design[idx], labeled[idx]))
    if len(draws) < n_boot // 2:
        raise ValueError(
            f"only {len(draws)} of {n_boot} cluster resamples had labeled and unlabeled units in both arms: too few clusters for PPI"
        )
    return Estimate(point, float(np.std(draws, ddof=1)))


@dataclass(frozen=True)
class CalibrationDraws:
    """LCC and Tweedie refitted on bootstrap resamples of the calibration split: the calibration
    step's own sampling error. The map is corrected once for many trials, so that error is shared
    by all of them; a trial's interval must include it (``corrected_ate``)."""

    lcc: tuple[LinearCalibrationCorrection, ...]
    tweedie: tuple[TweedieCorrection, ...]

    @classmethod
    def fit(
        cls, prediction: np.ndarray, truth: np.ndarray, n_boot: int = 200, seed: int = 0, bandwidth: BandwidthRule | float = "scott"
    ) -> CalibrationDraws:
        prediction, truth = np.asarray(prediction, float), np.asarray(truth, float)
        rng = np.random.default_rng(seed)
        lcc, tweedie = [], []
        with warnings.catch_warnings():  # a resample's weak slope is already reported by the fit on the whole split
            warnings.simplefilter("ignore", WeakCalibrationWarning)
            for _ in range(n_boot):
                idx = rng.integers(0, len(truth), len(truth))
                lcc.append(LinearCalibrationCorrection(require_clear_slope=False).fit(prediction[idx], truth[idx]))
                tweedie.append(TweedieCorrection(bandwidth).fit(prediction[idx], truth[idx]))
        return cls(tuple(lcc), tuple(tweedie))


def corrected_ate(
    prediction: np.ndarray, t: np.ndarray, transform, draws: list | tuple = (), clusters: np.ndarray | None = None
) -> Estimate:
    """The ATE of corrected predictions. Its variance is the trial's own (difference in means,
    cluster-robust with ``clusters``) plus the calibration step's: the variance of the same ATE
    over corrections refitted on calibration resamples (``draws``, callables like ``transform``).
    The calibration split is independent of the trial, so the two add."""
    point = difference_in_means(transform(prediction), t, clusters)
    if len(draws) < 2:
        return point
    with warnings.catch_warnings():  # a resample's narrower range: the fitted correction already warned for the trial
        warnings.simplefilter("ignore", OutOfSupportWarning)
        corrected = np.stack([draw(prediction) for draw in draws])
    ates = corrected[:, t == 1].mean(axis=1) - corrected[:, t == 0].mean(axis=1)
    return Estimate(point.estimate, float(np.sqrt(point.se**2 + np.var(ates, ddof=1))))


def label_units(t: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Which units PPI may see the truth of: a random ``share`` of each arm, at least 2 per arm
    (PPI's OLS of outcome on [1, T] is singular with fewer)."""
    labeled = np.zeros(len(t), bool)
    for arm in (0, 1):
        members = np.flatnonzero(t == arm)
        k = min(len(members), max(2, int(round(share * len(members)))))
        labeled[rng.choice(members, k, replace=False)] = True
    return labeled


def map_ates(
    prediction: np.ndarray,
    t: np.ndarray,
    lcc: LinearCalibrationCorrection,
    tweedie: TweedieCorrection,
    tweedie_density: TweedieDensity = "calibration",
    draws: CalibrationDraws | None = None,
    clusters: np.ndarray | None = None,
) -> dict[str, Estimate]:
    """The ATEs that need only the map: naive, LCC and Tweedie (see ``trial_ates``)."""
    if tweedie_density == "trial":
        tweedie = tweedie.with_density(prediction)
    lcc_draws = [d.transform for d in draws.lcc] if draws else []
    tweedie_draws = [(d.with_density(prediction) if tweedie_density == "trial" else d).transform for d in draws.tweedie] if draws else []
    return {
        "naive": difference_in_means(prediction, t, clusters),
        "lcc": corrected_ate(prediction, t, lcc.transform, lcc_draws, clusters),
        "tweedie": corrected_ate(prediction, t, tweedie.transform, tweedie_draws, clusters),
    }


def trial_ates(
    truth: np.ndarray,
    prediction: np.ndarray,
    t: np.ndarray,
    lcc: LinearCalibrationCorrection,
    tweedie: TweedieCorrection,
    labeled: np.ndarray,
    tweedie_density: TweedieDensity = "calibration",
    draws: CalibrationDraws | None = None,
    clusters: np.ndarray | None = None,
) -> dict[str, Estimate]:
    """Every method's ATE for one trial; ``labeled`` marks the units whose truth PPI may use.

    ``tweedie_density``: the KDE of the calibration predictions (the map's correction, fitted once)
    or of this trial's own predictions (the same sigma); the source study uses both in places.
    With ``draws`` the corrected ATEs' intervals include the calibration step's error; with
    ``clusters`` every standard error is cluster-robust (PPI's by a cluster bootstrap).
    """
    return {
        "oracle": difference_in_means(truth, t, clusters),
        **map_ates(prediction, t, lcc, tweedie, tweedie_density, draws, clusters),
        "ppi": ppi_ate(truth, prediction, t, labeled, clusters),
    }


@dataclass(frozen=True)
class TrialDesign:
    """How the simulated trials are drawn: trials per true effect, size, the true effects (zero and
    negative ones included: a correction must not invent or flip an effect), PPI's labelled share."""

    n_trials: int = 50
    units_per_trial: int = 150
    effects: tuple[float, ...] = (-0.5, 0.0, 0.5, 1.0)
    labeled_share: float = 0.1  # PPI's extra labelled data per trial
    tweedie_density: TweedieDensity = "calibration"
    calibration_boot: int = 200  # calibration resamples behind the corrected ATEs' intervals (0: trial error only)
    seed: int = 0


def trial_rows(trial, estimates: dict[str, Estimate], true_effect: float, labels: dict[str, int] | None = None) -> list[dict]:
    """One row per method: estimate, standard error, the units whose wealth it used (``labels``;
    0 for the map-based methods), the true effect and whether the 95% CI covers it."""
    labels = labels or {}
    return [
        {
            "trial": trial,
            "method": m,
            "estimate": e.estimate,
            "std_error": e.se,
            "labels": int(labels.get(m, 0)),
            "true_effect": true_effect,
            "covered": e.ci[0] <= true_effect <= e.ci[1],
        }
        for m, e in estimates.items()
    ]


Respond = Callable[[np.ndarray, np.ndarray, float, np.random.Generator], np.ndarray]


def draw_trials(
    truth: np.ndarray,
    respond: Respond,
    lcc: LinearCalibrationCorrection,
    tweedie: TweedieCorrection,
    design: TrialDesign,
    draws: CalibrationDraws | None,
    response: str,
) -> pd.DataFrame:
    """``design.n_trials`` trials per true effect from a pool of places with known ``truth``:
    ``respond(units, treatment, effect, rng)`` gives the map's predictions for the drawn units
    after treatment. One row per trial and method, labelled ``response``.

    The treated units' predictions leave the calibration range now and then; over hundreds of
    trials that is expected, so the out-of-support warning is silenced here (not in observed trials).
    """
    rng = np.random.default_rng(design.seed)
    rows = []
    for k, effect in enumerate(design.effects):
        for trial in range(k * design.n_trials, (k + 1) * design.n_trials):
            idx = rng.choice(len(truth), size=min(design.units_per_trial, len(truth)), replace=False)
            t = rng.binomial(1, 0.5, len(idx))
            prediction = respond(idx, t, effect, rng)
            labeled = label_units(t, design.labeled_share, rng)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OutOfSupportWarning)
                estimates = trial_ates(truth[idx] + effect * t, prediction, t, lcc, tweedie, labeled, design.tweedie_density, draws)
            rows += trial_rows(trial, estimates, effect, {"oracle": len(idx), "ppi": int(labeled.sum())})
    return pd.DataFrame(rows).assign(response=response)


def simulate_trials(
    pool: pd.DataFrame,
    lcc: LinearCalibrationCorrection,
    tweedie: TweedieCorrection,
    design: TrialDesign = TrialDesign(),
    draws: CalibrationDraws | None = None,
) -> pd.DataFrame:
    """``draw_trials`` from ``pool`` (columns truth, prediction) with the linear shortcut:
    ``response = "linear shortcut"``, a sensitivity analysis beside ``models.debiasing.imagery_study``,
    where the treatment reaches the map through the imagery."""
    truth, prediction = pool["truth"].to_numpy(), pool["prediction"].to_numpy()
    slope = np.polyfit(truth, prediction, 1)[0]
    return draw_trials(
        truth, lambda idx, t, effect, rng: prediction[idx] + slope * effect * t, lcc, tweedie, design, draws, "linear shortcut"
    )


def observed_trial(
    name: str,
    truth: np.ndarray | None,
    prediction: np.ndarray,
    t: np.ndarray,
    lcc: LinearCalibrationCorrection,
    tweedie: TweedieCorrection,
    design: TrialDesign,
    true_effect: float = np.nan,
    draws: CalibrationDraws | None = None,
    clusters: np.ndarray | None = None,
) -> pd.DataFrame:
    """One real (or demo) trial's ATE on the mapped outcome by every method it has data for.

    ``truth``: every unit's wealth (the simulator's): the oracle, and PPI++ on a random
    ``design.labeled_share``; wealth measured for some units only (NaN elsewhere): PPI++ on those
    labels, no oracle; None: only the map-based methods (naive, LCC, Tweedie). ``covered`` is
    False where the true effect is unknown (NaN)."""
    estimates = map_ates(prediction, t, lcc, tweedie, design.tweedie_density, draws, clusters)
    if truth is None:
        return pd.DataFrame(trial_rows(name, estimates, true_effect))
    truth = np.asarray(truth, float)
    if np.isfinite(truth).all():
        labeled = label_units(t, design.labeled_share, np.random.default_rng(design.seed))
        estimates = {"oracle": difference_in_means(truth, t, clusters), **estimates}
        labels = {"oracle": len(t)}
    else:
        labeled, labels = np.isfinite(truth), {}
    per_arm = [int(np.sum(labeled & (t == arm))) for arm in (0, 1)]
    if min(per_arm) < 2:
        warnings.warn(f"PPI++ left out: it needs 2 labelled units per arm, the trial has {per_arm} (control, treated)", stacklevel=2)
        return pd.DataFrame(trial_rows(name, estimates, true_effect, labels))
    estimates["ppi"] = ppi_ate(np.where(labeled, truth, 0.0), prediction, t, labeled, clusters)
    return pd.DataFrame(trial_rows(name, estimates, true_effect, labels | {"ppi": int(labeled.sum())}))


def evaluate(trials: pd.DataFrame) -> pd.DataFrame:
    """Per method and true effect: bias, RMSE and 95% interval coverage across trials, and per
    method the slope of estimated on true effect over all effects (1 = no attenuation; NaN with a
    single effect)."""
    trials = trials if "response" in trials else trials.assign(response="observed")
    err = trials["estimate"] - trials["true_effect"]
    summary = (
        trials.assign(err=err, sq=err**2)
        .groupby(["response", "method", "true_effect"])
        .agg(
            bias=("err", "mean"),
            rmse=("sq", lambda s: float(np.sqrt(s.mean()))),
            coverage=("covered", "mean"),
            mean_estimate=("estimate", "mean"),
            trials=("trial", "nunique"),
        )
        .reset_index()
    )
    slopes = {
        key: np.polyfit(part["true_effect"], part["estimate"], 1)[0] if part["true_effect"].nunique() > 1 else np.nan
        for key, part in trials.groupby(["response", "method"])
    }
    summary["slope"] = [slopes[key] for key in zip(summary["response"], summary["method"], strict=True)]
    order = {m: i for i, m in enumerate(METHODS)}
    return summary.sort_values(
        ["response", "method", "true_effect"], key=lambda c: c.map(order) if c.name == "method" else c, ignore_index=True
    )


def response_ratios(summary: pd.DataFrame, calibration_slope: float) -> pd.Series:
    """Per response setting, the map's treatment response (the naive slope of estimated on true
    effect) over its cross-sectional calibration slope b: 1 when a treatment moves the map as wealth
    differences across places do (LCC's assumption), below 1 when the map sees a treatment less."""
    naive = summary[summary["method"] == "naive"].drop_duplicates("response").set_index("response")["slope"]
    return naive / calibration_slope
