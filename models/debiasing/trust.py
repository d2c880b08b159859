"""Which correction to trust, for this map and for this trial: pre-registered diagnostics.

LCC is unbiased when the map responds linearly to wealth; Tweedie's correction when predictions
are the truth plus Gaussian noise. A real map is neither, and the two can disagree badly: on a
strongly shrunk map (slope b < 0.3) with a skewed prediction density, Tweedie de-shrinks far too
much. The diagnostics below are computed before any trial result is seen:

* **held-out effect slope** per correction (``correction_diagnostics``): LCC and Tweedie are
  cross-fitted on the calibration split (fit on k-1 folds, applied to the held-out places), and
  for each the average over held-out places of d/dy E[corrected | truth = y] is estimated (a
  cubic spline of the corrected value on the truth, differentiated). It is the ATE per unit of
  true effect that a trial among such places gets *if the map responds to a treatment as it
  varies across places*: 1 is unbiased. Its standard error is a bootstrap over held-out places.
* the calibration slope b and LCC's variance inflation 1 / b^2, and the prediction density's
  skewness and excess kurtosis (how far from Gaussian it is);
* a red flag for Tweedie's overshoot: b < ``WEAK_SLOPE`` with a skewed density (|skewness| >
  ``SKEWED``);
* per trial (``trial_diagnostics``): the share of the trial's predictions outside the calibration
  predictions' range, and whether LCC's and Tweedie's ATEs differ by more than the trial's
  standard error; with labelled outcomes, PPI++ and the labels it needs to match each correction.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import SplineTransformer

from models.debiasing.corrections import (
    WEAK_SLOPE,
    BandwidthRule,
    LinearCalibrationCorrection,
    OutOfSupportWarning,
    TweedieCorrection,
    WeakCalibrationWarning,
    diagnostics,
)
from models.ingest.folds import fold_of
from models.ingest.units import MEASURED_WEALTH

SKEWED = 0.5  # |skewness| of the predictions above which the density counts as skewed
SLOPE_TOLERANCE = 0.1  # a held-out effect slope within this of 1 (or within its 95% interval) passes
CORRECTIONS = ("lcc", "tweedie")


def average_derivative(truth: np.ndarray, value: np.ndarray, knots: int = 6) -> float:
    """Mean over the places of d/dy E[value | truth = y]: a cubic spline with knots at quantiles
    (linear beyond them), differentiated by central differences. Equal weight per place is what a
    small shift of every unit's wealth (a trial's effect) averages over."""
    model = make_pipeline(SplineTransformer(n_knots=knots, degree=3, knots="quantile", extrapolation="linear"), LinearRegression())
    model.fit(truth[:, None], value)
    h = 0.05 * float(np.std(truth))
    return float(np.mean((model.predict((truth + h)[:, None]) - model.predict((truth - h)[:, None])) / (2 * h)))


def cross_fitted(prediction: np.ndarray, truth: np.ndarray, folds: int = 5, seed: int = 0, bandwidth: BandwidthRule | float = "scott"):
    """Naive, LCC and Tweedie values of every calibration place from corrections fitted on the
    other folds (columns truth, naive, lcc, tweedie)."""
    fold = fold_of(range(len(truth)), folds, seed)
    out = pd.DataFrame({"truth": truth, "naive": prediction, "lcc": np.nan, "tweedie": np.nan})
    with warnings.catch_warnings():  # held-out places beyond k-1 folds' range, and weak folds: expected here
        warnings.simplefilter("ignore", OutOfSupportWarning)
        warnings.simplefilter("ignore", WeakCalibrationWarning)
        for k in range(folds):
            fit, held = fold != k, fold == k
            lcc = LinearCalibrationCorrection(require_clear_slope=False).fit(prediction[fit], truth[fit])
            tweedie = TweedieCorrection(bandwidth).fit(prediction[fit], truth[fit])
            out.loc[held, "lcc"], out.loc[held, "tweedie"] = lcc.transform(prediction[held]), tweedie.transform(prediction[held])
    return out


@dataclass(frozen=True)
class CorrectionDiagnostics:
    """The map-level diagnostics (see the module docstring); JSON-able with ``asdict``."""

    slope_b: float
    variance_inflation: float
    skewness: float
    excess_kurtosis: float
    heldout_slope: dict[str, float]  # naive, lcc, tweedie
    heldout_slope_se: dict[str, float]
    disagreement: float  # Tweedie's held-out effect slope minus LCC's
    disagreement_se: float

    @property
    def skewed(self) -> bool:
        return abs(self.skewness) > SKEWED

    @property
    def overshoot_risk(self) -> bool:
        """The pre-registered red flag for Tweedie: a strongly shrunk map with a skewed density."""
        return self.slope_b < WEAK_SLOPE and self.skewed

    def passes(self, correction: str) -> bool:
        """Its held-out effect slope is within ``SLOPE_TOLERANCE`` of 1, or 1 is in its 95% interval."""
        return abs(self.heldout_slope[correction] - 1) <= max(SLOPE_TOLERANCE, 1.96 * self.heldout_slope_se[correction])

    @property
    def agree(self) -> bool:
        return abs(self.disagreement) <= max(SLOPE_TOLERANCE, 1.96 * self.disagreement_se)

    @property
    def favoured(self) -> str:
        """The correction whose held-out effect slope is nearer 1; never Tweedie under the overshoot flag."""
        if self.overshoot_risk:
            return "lcc"
        return min(CORRECTIONS, key=lambda c: abs(self.heldout_slope[c] - 1))

    @property
    def verdict(self) -> str:
        slopes = ", ".join(f"{c} {self.heldout_slope[c]:.2f} (SE {self.heldout_slope_se[c]:.2f})" for c in ("naive", *CORRECTIONS))
        text = f"held-out effect slopes (1 = unbiased): {slopes}. Favoured: {self.favoured}"
        if self.agree and all(self.passes(c) for c in CORRECTIONS):
            text += " (both pass and agree)"
        if self.overshoot_risk:
            text += f"; Tweedie flagged: b = {self.slope_b:.2f} < {WEAK_SLOPE} with a skewed density (skewness {self.skewness:.2f}), where it overshoots"
        if not self.agree:
            text += f"; LCC and Tweedie disagree by {self.disagreement:+.2f} per unit of effect"
        failing = [c for c in CORRECTIONS if not self.passes(c)]
        if failing:
            text += f"; not trusted on held-out places: {', '.join(failing)}"
        return text + "."

    def to_dict(self) -> dict:
        return asdict(self) | {
            "skewed": self.skewed,
            "overshoot_risk": self.overshoot_risk,
            "agree": self.agree,
            "favoured": self.favoured,
            "verdict": self.verdict,
        }

    @classmethod
    def from_dict(cls, d: dict) -> CorrectionDiagnostics:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    def table(self) -> pd.DataFrame:
        """One row per outcome: held-out effect slope, its SE, and whether it passes."""
        return pd.DataFrame(
            {
                "method": ["naive", *CORRECTIONS],
                "heldout_effect_slope": [self.heldout_slope[m] for m in ("naive", *CORRECTIONS)],
                "heldout_effect_slope_se": [self.heldout_slope_se[m] for m in ("naive", *CORRECTIONS)],
                "passes": [False, *(self.passes(c) for c in CORRECTIONS)],
                "favoured": [False, *(c == self.favoured for c in CORRECTIONS)],
            }
        )


def correction_diagnostics(
    prediction: np.ndarray,
    truth: np.ndarray,
    folds: int = 5,
    n_boot: int = 100,
    seed: int = 0,
    bandwidth: BandwidthRule | float = "scott",
) -> CorrectionDiagnostics:
    """The map-level diagnostics from the calibration split (predictions and truth)."""
    prediction, truth = np.asarray(prediction, float), np.asarray(truth, float)
    held = cross_fitted(prediction, truth, folds, seed, bandwidth)
    y = held["truth"].to_numpy()
    values = {m: held[m].to_numpy() for m in ("naive", *CORRECTIONS)}
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        draws.append({m: average_derivative(y[idx], v[idx]) for m, v in values.items()})
    draws = pd.DataFrame(draws)
    slope_b = diagnostics(prediction, truth)["slope_b"]
    return CorrectionDiagnostics(
        slope_b=slope_b,
        variance_inflation=1 / slope_b**2,
        skewness=float(stats.skew(prediction)),
        excess_kurtosis=float(stats.kurtosis(prediction)),
        heldout_slope={m: average_derivative(y, v) for m, v in values.items()},
        heldout_slope_se={m: float(draws[m].std(ddof=1)) for m in values},
        disagreement=average_derivative(y, values["tweedie"] - values["lcc"]),
        disagreement_se=float((draws["tweedie"] - draws["lcc"]).std(ddof=1)),
    )


def fit_corrections(calibration: pd.DataFrame, bandwidth: BandwidthRule | float = "scott") -> dict:
    """LCC, Tweedie, whether a correction is warranted, and which one to trust, fitted once on
    calibration rows (columns prediction, wealth), as one JSON-able record every trial reuses."""
    pred, truth = calibration["prediction"].to_numpy(), calibration["wealth"].to_numpy()
    lcc, tweedie = LinearCalibrationCorrection().fit(pred, truth), TweedieCorrection(bandwidth).fit(pred, truth)
    return {
        "lcc": lcc.to_dict(),
        "tweedie": tweedie.to_dict(),
        "diagnostics": diagnostics(pred, truth),
        "trust": correction_diagnostics(pred, truth, bandwidth=bandwidth).to_dict(),
        "calibration_points": len(calibration),
    }


@dataclass(frozen=True)
class TrialDiagnostics:
    """One trial's view of the corrections: support, agreement, and what labels would buy."""

    outside_support: float  # share of the trial's predictions outside the calibration predictions' range
    disagreement: float  # Tweedie's ATE minus LCC's
    trial_se: float  # the smaller of the two corrected ATEs' standard errors
    favoured: str  # from the map-level diagnostics
    labels: int  # units with measured wealth (PPI++'s labels); 0 without
    budget: pd.DataFrame  # per method: interval width and PPI++ labels for the same width

    @property
    def corrections_agree(self) -> bool:
        return abs(self.disagreement) <= self.trial_se

    @property
    def recommended(self) -> str:
        """PPI++ where the trial has labelled outcomes (no assumption on how the map responds to
        treatment), the map-level favourite otherwise."""
        return "ppi" if self.labels else self.favoured

    @property
    def verdict(self) -> str:
        if self.labels:
            text = (
                f"Use PPI++ ({self.labels} labelled units): with labelled outcomes it is the honest default, "
                "unbiased whatever the map's response to treatment"
            )
        else:
            text = f"Use {self.favoured} (favoured by the map's held-out diagnostics; no labelled outcomes for PPI++)"
        if not self.corrections_agree:
            text += f". WARNING: LCC and Tweedie differ by {self.disagreement:+.3g}, more than the trial's SE {self.trial_se:.3g}"
        if self.outside_support > 0.05:
            text += f". {self.outside_support:.0%} of the trial's predictions lie outside the calibration range: Tweedie extrapolates there"
        return text + "."

    def metadata(self) -> dict:
        return {
            "recommended": self.recommended,
            "favoured_correction": self.favoured,
            "corrections_agree": self.corrections_agree,
            "lcc_tweedie_difference": self.disagreement,
            "trial_se": self.trial_se,
            "outside_calibration_support": self.outside_support,
            "ppi_labels": self.labels,
        }


def measured_wealth(units: pd.DataFrame) -> np.ndarray:
    """A trial table's ``wealth`` column as PPI++'s labels: numbers where measured, NaN where empty.
    Text that is not a number is an error naming the units, not a silently missing label."""
    raw = units[MEASURED_WEALTH]
    values = pd.to_numeric(raw, errors="coerce")
    bad = units.loc[raw.notna() & values.isna(), "unit_id"]
    if len(bad):
        examples = ", ".join(f"{u}={w!r}" for u, w in zip(bad.head(5), raw[bad.index].head(5), strict=True))
        raise ValueError(
            f"the trial table's wealth column (measured wealth, PPI++'s labels) has {len(bad)} value(s) that are not numbers: "
            f"{examples}. Leave unmeasured units empty"
        )
    return values.to_numpy(float)


def label_budget(effects: pd.DataFrame, units: int) -> pd.DataFrame:
    """Per method, its 95% interval width and the labels PPI++ needs for the same width, scaled
    from PPI++'s own width with its labels (width ~ 1 / sqrt(labels)); NaN without a PPI++ row.
    More labels than the trial has units cannot be bought: ``reachable`` is False then."""
    rows = effects.set_index("method")
    width = 2 * 1.96 * rows["std_error"]
    out = pd.DataFrame({"method": rows.index, "width": width.to_numpy()})
    if "ppi" not in rows.index or not rows.loc["ppi", "labels"]:
        return out.assign(ppi_labels_for_same_width=np.nan, reachable=False)
    n0, w0 = rows.loc["ppi", "labels"], width["ppi"]
    needed = [math.ceil(n0 * (w0 / w) ** 2) if w > 0 else np.nan for w in width]
    return out.assign(ppi_labels_for_same_width=needed, reachable=[n <= units for n in needed])


def corrections_disagreement(effects: pd.DataFrame) -> tuple[float, float]:
    """Tweedie's ATE minus LCC's, and the trial's standard error (the smaller of theirs), from a
    trial's ATE table (one row per method)."""
    rows = effects.set_index("method")
    return float(rows.loc["tweedie", "estimate"] - rows.loc["lcc", "estimate"]), float(rows.loc[list(CORRECTIONS), "std_error"].min())


def trial_diagnostics(predictions: pd.DataFrame, effects: pd.DataFrame, corrections: dict) -> TrialDiagnostics:
    """A trial's diagnostics from its unit predictions (column ``prediction``), its ATE table (one
    row per method: estimate, std_error, labels) and the map's corrections record."""
    if "trust" not in corrections:
        raise ValueError("the wealth_corrections record predates the correction diagnostics: materialize wealth_corrections again")
    low, high = corrections["tweedie"]["support"]
    z = predictions["prediction"].to_numpy()
    rows = effects.set_index("method")
    labels = int(rows.loc["ppi", "labels"]) if "ppi" in rows.index and "labels" in rows else 0
    disagreement, trial_se = corrections_disagreement(effects)
    return TrialDiagnostics(
        outside_support=float(np.mean((z < low) | (z > high))),
        disagreement=disagreement,
        trial_se=trial_se,
        favoured=CorrectionDiagnostics.from_dict(corrections["trust"]).favoured,
        labels=labels,
        budget=label_budget(effects, len(z)),
    )
