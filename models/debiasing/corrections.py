"""Debias ML predictions used as trial outcomes, without new ground truth (Study 2).

Both corrections are fitted once on a held-out calibration split (predictions and truth) and then
applied to any number of predictions: scikit-learn style ``fit`` / ``transform``.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import statsmodels.api as sm
from scipy import stats


class CorrectionError(ValueError):
    """A correction cannot be fitted meaningfully on these data."""


WEAK_SLOPE = 0.3  # below this calibration slope LCC warns: it inflates the outcome's variance by 1 / b^2 > 11


class WeakCalibrationWarning(UserWarning):
    """The map barely tracks the truth: LCC is unbiased but very noisy."""


class OutOfSupportWarning(UserWarning):
    """Predictions outside the calibration predictions' range: the KDE's score there is a tail estimate."""


class LinearCalibrationCorrection:
    """LCC: on the calibration split fit ``prediction = a + b * truth``; corrected = (prediction - a) / b.

    Unbiased for treatment effects under linear shrinkage; inflates variance by 1 / b**2
    (``variance_inflation_``). Refuses to fit when b is not clearly positive (its 95% interval
    must exclude zero) and warns when b < ``WEAK_SLOPE``. ``require_clear_slope=False`` turns the
    refusal off for bootstrap refits (``models.debiasing.trial_effects.CalibrationDraws``): there a weak
    resample is a draw to keep, since it is what widens the interval.
    """

    def __init__(self, require_clear_slope: bool = True):
        self.require_clear_slope = require_clear_slope

    def fit(self, prediction: np.ndarray, truth: np.ndarray) -> LinearCalibrationCorrection:
        prediction, truth = _check_pair(prediction, truth)
        fit = sm.OLS(prediction, sm.add_constant(truth)).fit()
        (self.a_, self.b_), (self.a_se_, self.b_se_) = fit.params, fit.bse
        if self.require_clear_slope and not self.b_ - 1.96 * self.b_se_ > 0:
            raise CorrectionError(
                f"calibration slope b = {self.b_:.3g} (se {self.b_se_:.2g}) is not clearly positive: the predictions do not track the truth, LCC would divide by ~0"
            )
        if self.b_ < WEAK_SLOPE:
            warnings.warn(
                f"calibration slope b = {self.b_:.3g} is below {WEAK_SLOPE}: LCC stays unbiased but multiplies the outcome's variance by 1/b^2 = {self.variance_inflation_:.1f}",
                WeakCalibrationWarning,
                stacklevel=2,
            )
        return self

    @property
    def variance_inflation_(self) -> float:
        """How much LCC multiplies the predictions' variance: 1 / b^2."""
        return 1.0 / self.b_**2

    def transform(self, prediction: np.ndarray) -> np.ndarray:
        return (np.asarray(prediction, float) - self.a_) / self.b_

    def to_dict(self) -> dict:
        return {"a": self.a_, "b": self.b_, "a_se": self.a_se_, "b_se": self.b_se_, "variance_inflation": self.variance_inflation_}

    @classmethod
    def from_dict(cls, d: dict) -> LinearCalibrationCorrection:
        self = cls()
        self.a_, self.b_, self.a_se_, self.b_se_ = d["a"], d["b"], d["a_se"], d["b_se"]
        return self


BandwidthRule = Literal["scott", "silverman_derivative"]


def kde_bandwidth(x: np.ndarray, rule: BandwidthRule | float = "scott") -> float:
    """The Gaussian KDE's bandwidth: ``scott`` is scipy's ``gaussian_kde`` default, sd n^-1/5 (the
    source study's choice); ``silverman_derivative`` is 0.9 min(sd, IQR/1.34) n^-1/7, the rate that
    is optimal for the density's derivative (our former default; see docs/methods.md); a number is
    used as it is."""
    if not isinstance(rule, str):
        return float(rule)
    if rule == "scott":
        return float(np.std(x, ddof=1) * len(x) ** (-1 / 5))
    if rule == "silverman_derivative":
        return silverman_bandwidth(x)
    raise ValueError(f"bandwidth rule must be 'scott', 'silverman_derivative' or a number, got {rule!r}")


class TweedieCorrection:
    """Tweedie's correction: corrected = prediction - sigma**2 * d/dz log p(z) at z = prediction.

    sigma is the sd of (prediction - truth) on the calibration split; p is a Gaussian KDE of the
    calibration predictions (bandwidth by ``kde_bandwidth``). Its score p'/p is evaluated
    analytically on a grid whose step is a fixed fraction of the bandwidth (``points_per_bandwidth``),
    spanning the calibration predictions +- 3 bandwidths, and linearly interpolated by direct
    indexing (the grid is uniform): about 100 million cells per second on one core. Predictions
    beyond the grid, and in the few grid intervals where interpolation would miss ``tolerance``
    (sharp turns between isolated predictions), get the direct score.
    Predictions outside the calibration predictions' range (the support) raise an
    ``OutOfSupportWarning``: the score there comes from the density's tails.
    """

    def __init__(
        self, bandwidth: BandwidthRule | float = "scott", points_per_bandwidth: int = 8, tolerance: float = 1e-2, max_grid: int = 1_000_000
    ):
        self.bandwidth = bandwidth
        self.points_per_bandwidth = points_per_bandwidth
        self.tolerance = tolerance  # largest interpolation error at interval midpoints, in units of 1 / bandwidth
        self.max_grid = max_grid

    def fit(self, prediction: np.ndarray, truth: np.ndarray) -> TweedieCorrection:
        prediction, truth = _check_pair(prediction, truth)
        self.sigma_ = float(np.std(prediction - truth, ddof=1))
        return self._fit_density(prediction)

    def _fit_density(self, centres: np.ndarray) -> TweedieCorrection:
        self.centres_ = np.asarray(centres, float)
        self.bandwidth_ = kde_bandwidth(self.centres_, self.bandwidth)
        self.support_ = (float(self.centres_.min()), float(self.centres_.max()))
        lo, hi = self.support_[0] - 3 * self.bandwidth_, self.support_[1] + 3 * self.bandwidth_
        size = int(np.ceil((hi - lo) / self.bandwidth_ * self.points_per_bandwidth)) + 1
        if size > self.max_grid:
            raise CorrectionError(
                f"the calibration predictions span {(hi - lo) / self.bandwidth_:.0f} bandwidths: a score grid of {size:,} points exceeds max_grid"
            )
        self.grid_ = np.linspace(lo, hi, max(size, 2))
        self.score_ = kde_score(self.grid_, self.centres_, self.bandwidth_)
        # Between isolated predictions (sparse tails, gaps between modes) the score flips sign over a
        # width of h^2 / gap, much less than a grid step: such intervals are marked for direct evaluation.
        mid = (self.grid_[:-1] + self.grid_[1:]) / 2
        self.exact_ = (
            np.abs((self.score_[:-1] + self.score_[1:]) / 2 - kde_score(mid, self.centres_, self.bandwidth_))
            > self.tolerance / self.bandwidth_
        )
        return self

    def with_density(self, predictions: np.ndarray) -> TweedieCorrection:
        """The same sigma with the density refitted on other predictions (e.g. a trial's own),
        instead of the calibration predictions the map's correction was fitted on."""
        other = TweedieCorrection(self.bandwidth, self.points_per_bandwidth, self.tolerance, self.max_grid)
        other.sigma_ = self.sigma_
        return other._fit_density(np.asarray(predictions, float))

    def score(self, z: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
        """d/dz log p(z): interpolated on the grid, direct beyond it and in marked intervals.

        The grid is uniform, so a value's interval is found by arithmetic, not search; float32 input
        stays float32, and a long input is processed in cache-sized chunks.
        """
        z = np.asarray(z)
        z = z if np.issubdtype(z.dtype, np.floating) else z.astype(float)
        out = np.empty(z.shape, dtype=z.dtype)
        flat, result = z.reshape(-1), out.reshape(-1)
        for start in range(0, flat.size, chunk):
            self._score_into(flat[start : start + chunk], result[start : start + chunk])
        return out

    def _score_into(self, z: np.ndarray, out: np.ndarray) -> None:
        dtype = z.dtype
        lo, step = self.grid_[0], self.grid_[1] - self.grid_[0]
        position = (z - dtype.type(lo)) * dtype.type(1 / step)
        last = len(self.grid_) - 2
        index = np.fmin(np.fmax(position, 0), last).astype(np.int32)  # fmax/fmin send NaN (nodata) to 0; it stays NaN below
        base, slope = self.score_.astype(dtype), np.diff(self.score_).astype(dtype)
        np.subtract(position, index, out=position)  # the fraction of the interval
        np.multiply(position, slope[index], out=out)
        out += base[index]
        direct = self.exact_[index] | (z < lo) | (z > self.grid_[-1])
        if direct.any():
            out[direct] = kde_score(z[direct].astype(float), self.centres_, self.bandwidth_)

    def transform(self, prediction: np.ndarray) -> np.ndarray:
        """Corrected predictions, in the input's float precision (a float32 map stays float32)."""
        prediction = np.asarray(prediction)
        prediction = prediction if np.issubdtype(prediction.dtype, np.floating) else prediction.astype(float)
        if self.sigma_ == 0:
            return prediction.copy()  # predictions equal the truth: nothing to undo
        ok = np.isfinite(prediction)
        finite = prediction if ok.all() else prediction[ok]  # nodata cells are not outside the support
        if finite.size and (finite.min() < self.support_[0] or finite.max() > self.support_[1]):
            outside = int(np.sum((finite < self.support_[0]) | (finite > self.support_[1])))
            warnings.warn(
                f"{outside} predictions lie outside the calibration predictions' range {self.support_}: their Tweedie scores come from the density's tails",
                OutOfSupportWarning,
                stacklevel=2,
            )
        out = self.score(prediction)
        out *= -(self.sigma_**2)
        out += prediction
        return out

    def to_dict(self) -> dict:
        return {
            "sigma": self.sigma_,
            "bandwidth_rule": self.bandwidth,
            "bandwidth": self.bandwidth_,
            "support": list(self.support_),
            "centres": self.centres_.tolist(),
            "points_per_bandwidth": self.points_per_bandwidth,
            "tolerance": self.tolerance,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TweedieCorrection:
        """Rebuilt from the calibration predictions and sigma (the score grid is recomputed)."""
        self = cls(d["bandwidth_rule"], d["points_per_bandwidth"], d["tolerance"])
        self.sigma_ = d["sigma"]
        return self._fit_density(np.asarray(d["centres"], float))


def _check_pair(prediction: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prediction, truth = np.asarray(prediction, float), np.asarray(truth, float)
    if prediction.shape != truth.shape or prediction.ndim != 1:
        raise CorrectionError(f"prediction and truth must be 1-D and the same length, got {prediction.shape} and {truth.shape}")
    if not (np.isfinite(prediction).all() and np.isfinite(truth).all()):
        raise CorrectionError("calibration data contain NaN or infinite values")
    if len(prediction) < 10:
        raise CorrectionError(f"calibration split has {len(prediction)} points; at least 10 are needed")
    if np.ptp(prediction) == 0:
        raise CorrectionError("predictions are constant: they carry no information to calibrate")
    if np.ptp(truth) == 0:
        raise CorrectionError("truth is constant on the calibration split")
    return prediction, truth


def silverman_bandwidth(x: np.ndarray, rate: float = 1 / 7) -> float:
    """Silverman's rule 0.9 min(sd, IQR/1.34) n^-rate. We differentiate the density, whose
    AMISE-optimal bandwidth shrinks as n^-1/7 rather than the density's n^-1/5: smoother scores."""
    iqr = np.subtract(*np.percentile(x, [75, 25]))
    spread = min(np.std(x, ddof=1), iqr / 1.34) or np.std(x, ddof=1)
    return float(0.9 * spread * len(x) ** -rate)


def kde_score(z: np.ndarray, centres: np.ndarray, bandwidth: float, block: int = 4096) -> np.ndarray:
    """d/dz log p(z) of a Gaussian KDE, analytically: sum w_i (x_i - z) / h^2 / sum w_i, w_i = exp(-(z - x_i)^2 / 2h^2).

    Log-sum-exp stabilized; evaluated in blocks of ``z`` to bound memory. This is also the 'direct'
    evaluation the grid interpolation is benchmarked against.
    """
    z = np.asarray(z, float)
    out = np.empty_like(z)
    for start in range(0, len(z), block):
        d = centres[None, :] - z[start : start + block, None]
        logw = -0.5 * (d / bandwidth) ** 2
        w = np.exp(logw - logw.max(axis=1, keepdims=True))
        out[start : start + block] = (w * d).sum(axis=1) / w.sum(axis=1) / bandwidth**2
    return out


def diagnostics(prediction: np.ndarray, truth: np.ndarray) -> dict:
    """Is a correction warranted? Slope of prediction on truth (1 = no shrinkage) and variance ratio."""
    prediction, truth = _check_pair(prediction, truth)
    slope = stats.linregress(truth, prediction)
    ratio = float(np.var(prediction) / np.var(truth))
    return {
        "slope_b": float(slope.slope),
        "slope_se": float(slope.stderr),
        "variance_ratio": ratio,
        "r2": float(slope.rvalue**2),
        "correction_warranted": bool(slope.slope + 1.96 * slope.stderr < 0.95 or ratio < 0.9),
    }


def corrections_from_dict(d: dict) -> tuple[LinearCalibrationCorrection, TweedieCorrection]:
    """The two fitted corrections back from ``models.debiasing.trust.fit_corrections``' record."""
    return LinearCalibrationCorrection.from_dict(d["lcc"]), TweedieCorrection.from_dict(d["tweedie"])


def debias_map(naive: np.ndarray, lcc: LinearCalibrationCorrection, tweedie: TweedieCorrection) -> dict[str, np.ndarray]:
    """Layers naive, lcc and tweedie of a predicted map. NaN cells stay NaN: both transforms pass
    them through, and Tweedie's support check ignores them, so they raise no spurious warning."""
    return {"naive": naive, "lcc": lcc.transform(naive), "tweedie": tweedie.transform(naive)}


DEBIASED_MAP_PURPOSE = (
    "For effect estimation: a trial's ATE on the lcc or tweedie band is not attenuated. Not for reading one place's "
    "wealth: the corrections de-shrink, so per-place errors are larger than the naive band's."
)


def per_place_rmse(
    prediction: np.ndarray, truth: np.ndarray, lcc: LinearCalibrationCorrection, tweedie: TweedieCorrection
) -> dict[str, float]:
    """RMSE against the truth of the naive, LCC and Tweedie values at surveyed places. The corrections
    de-shrink, so they spread per-place errors: the corrected maps are for effect estimation (a
    trial's difference in means), not for reading one place's wealth."""
    with warnings.catch_warnings():  # held-out places beyond the calibration range: already reported by the map
        warnings.simplefilter("ignore", OutOfSupportWarning)
        layers = debias_map(np.asarray(prediction, float), lcc, tweedie)
    return {name: float(np.sqrt(np.nanmean((values - truth) ** 2))) for name, values in layers.items()}
