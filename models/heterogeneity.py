"""Does heterogeneity exist? DR scores, ATE, RATE (AUTOC / Qini), the BLP calibration test, truth metrics.

RATE follows grf's ``rank_average_treatment_effect`` from the DR scores: priorities sorted in
decreasing order with ties averaged, TOC(q) = mean(Gamma over the top q) - mean(Gamma), AUTOC = mean
of TOC at q = 1/n..1, Qini = mean of q * TOC(q); half-sample bootstrap standard errors (half the
units or half the clusters, without replacement: the spread of half-sample estimates is itself the
standard error of the full-sample estimate, so no rescaling is needed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

Z95 = 1.959963984540054


def dr_scores(y: np.ndarray, t: np.ndarray, mu0: np.ndarray, mu1: np.ndarray, e: np.ndarray) -> np.ndarray:
    """AIPW scores: mu1 - mu0 + T (Y - mu1) / e - (1 - T)(Y - mu0) / (1 - e)."""
    return mu1 - mu0 + t * (y - mu1) / e - (1 - t) * (y - mu0) / (1 - e)


@dataclass(frozen=True)
class Estimate:
    estimate: float
    se: float

    @property
    def ci(self) -> tuple[float, float]:
        return self.estimate - Z95 * self.se, self.estimate + Z95 * self.se

    @property
    def ratio(self) -> float:
        return self.estimate / self.se if self.se > 0 else np.nan

    @property
    def p_value(self) -> float:
        """Two-sided normal p-value for estimate = 0."""
        return float(2 * stats.norm.sf(abs(self.ratio))) if np.isfinite(self.ratio) else np.nan


def ate(gamma: np.ndarray) -> Estimate:
    return Estimate(float(np.mean(gamma)), float(np.std(gamma, ddof=1) / np.sqrt(len(gamma))))


def difference_in_means(y: np.ndarray, t: np.ndarray) -> Estimate:
    y1, y0 = y[t == 1], y[t == 0]
    return Estimate(float(y1.mean() - y0.mean()), float(np.sqrt(y1.var(ddof=1) / len(y1) + y0.var(ddof=1) / len(y0))))


def _tie_averaged(priority: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Gamma sorted by decreasing priority, each tie group replaced by its mean."""
    order = np.argsort(-priority, kind="stable")
    p, g = priority[order], gamma[order]
    _, start, counts = np.unique(-p, return_index=True, return_counts=True)
    means = np.add.reduceat(g, start) / counts
    return np.repeat(means, counts)


def toc(priority: np.ndarray, gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q, TOC(q)) at q = 1/n, ..., 1."""
    g = _tie_averaged(np.asarray(priority, float), np.asarray(gamma, float))
    n = len(g)
    q = np.arange(1, n + 1) / n
    return q, np.cumsum(g) / np.arange(1, n + 1) - g.mean()


def rate_point(priority: np.ndarray, gamma: np.ndarray, target: str = "AUTOC") -> float:
    q, curve = toc(priority, gamma)
    if target == "AUTOC":
        return float(curve.mean())
    if target == "QINI":
        return float((q * curve).mean())
    raise ValueError(f"target must be AUTOC or QINI, got {target!r}")


def rate(
    priority: np.ndarray, gamma: np.ndarray, target: str = "AUTOC", clusters: np.ndarray | None = None, n_boot: int = 200, seed: int = 0
) -> Estimate:
    """RATE with a half-sample bootstrap standard error (clustered when ``clusters`` is given)."""
    priority, gamma = np.asarray(priority, float), np.asarray(gamma, float)
    rng = np.random.default_rng(seed)
    groups = np.arange(len(gamma)) if clusters is None else pd.factorize(np.asarray(clusters))[0]
    n_groups = groups.max() + 1
    members = pd.Series(np.arange(len(gamma))).groupby(groups).apply(np.asarray).to_list()
    draws = []
    for _ in range(n_boot):
        chosen = rng.choice(n_groups, size=n_groups // 2, replace=False)
        idx = np.concatenate([members[c] for c in chosen])
        draws.append(rate_point(priority[idx], gamma[idx], target))
    return Estimate(rate_point(priority, gamma, target), float(np.std(draws, ddof=1)))


def calibration_test(tau_hat: np.ndarray, gamma: np.ndarray) -> pd.DataFrame:
    """Best linear predictor test: Gamma ~ a * mean(tau_hat) + b * (tau_hat - mean(tau_hat)), HC3.

    a near 1: the average prediction is right; b > 0 (one-sided p-value): heterogeneity exists;
    b near 1: the differential is well calibrated.
    """
    mean_pred = np.full_like(tau_hat, tau_hat.mean())
    design = np.column_stack([mean_pred, tau_hat - tau_hat.mean()])
    fit = sm.OLS(gamma, design).fit(cov_type="HC3")
    one_sided = [stats.norm.sf(fit.params[i] / fit.bse[i]) for i in range(2)]
    return pd.DataFrame(
        {
            "term": ["mean_forest_prediction", "differential_forest_prediction"],
            "estimate": fit.params,
            "std_error": fit.bse,
            "t_value": fit.tvalues,
            "p_value_one_sided": one_sided,
        }
    )


def truth_metrics(tau_hat: np.ndarray, tau: np.ndarray, lower: np.ndarray | None = None, upper: np.ndarray | None = None) -> dict:
    """PEHE, Spearman rank correlation and interval coverage against the simulator's true CATE."""
    out = {"pehe": float(np.sqrt(np.mean((tau_hat - tau) ** 2))), "rank_correlation": float(stats.spearmanr(tau_hat, tau).statistic)}
    if lower is not None and upper is not None and np.isfinite(lower).all():
        out["coverage"] = float(np.mean((lower <= tau) & (tau <= upper)))
    else:
        out["coverage"] = np.nan
    return out


def evaluate_choices(
    estimates: pd.DataFrame, clusters: pd.Series | None = None, tau_true: pd.Series | None = None, n_boot: int = 200
) -> pd.DataFrame:
    """RATE (AUTOC, Qini) with half-sample bootstrap SEs, the BLP calibration test and, where the true
    CATE is known, PEHE / rank correlation / coverage, per data choice and learner of
    ``models.cate.cross_fit_choices``' estimates; sorted by the AUTOC RATE ratio, best first.

    ``clusters`` and ``tau_true`` are indexed by unit_id.
    """
    rows = []
    for (choice, learner), part in estimates.groupby(["data_choice", "learner"], sort=False):
        tau_hat, gamma = part["tau"].to_numpy(), part["gamma"].to_numpy()
        cl = clusters.loc[part["unit_id"]].to_numpy() if clusters is not None else None
        autoc, qini = rate(tau_hat, gamma, "AUTOC", cl, n_boot), rate(tau_hat, gamma, "QINI", cl, n_boot)
        blp = calibration_test(tau_hat, gamma).set_index("term")
        row = {
            "data_choice": choice,
            "learner": learner,
            "autoc": autoc.estimate,
            "autoc_se": autoc.se,
            "autoc_ratio": autoc.ratio,
            "qini": qini.estimate,
            "qini_se": qini.se,
            "qini_ratio": qini.ratio,
            "blp_mean": blp.loc["mean_forest_prediction", "estimate"],
            "blp_differential": blp.loc["differential_forest_prediction", "estimate"],
            "blp_differential_p": blp.loc["differential_forest_prediction", "p_value_one_sided"],
        }
        if tau_true is not None:
            row |= truth_metrics(tau_hat, tau_true.loc[part["unit_id"]].to_numpy(), part["lower"].to_numpy(), part["upper"].to_numpy())
        rows.append(row)
    return pd.DataFrame(rows).sort_values("autoc_ratio", ascending=False)


def toc_by_choice(estimates: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """TOC curves of every data choice for the first learner: the heterogeneity plot's lines."""
    first = estimates["learner"].iloc[0]
    return {
        f"{choice} ({first})": toc(part["tau"].to_numpy(), part["gamma"].to_numpy())
        for choice, part in estimates[estimates["learner"] == first].groupby("data_choice", sort=False)
    }


def ate_table(gamma: np.ndarray, y: np.ndarray, t: np.ndarray, tau_true: np.ndarray | None = None) -> pd.DataFrame:
    """The ATE from DR scores and the difference in means with 95% intervals (and the true mean CATE if known)."""
    estimates = {"doubly robust (AIPW)": ate(gamma), "difference in means": difference_in_means(y, t)}
    rows = [
        {"method": k, "estimate": v.estimate, "std_error": v.se, "ci_lower": v.ci[0], "ci_upper": v.ci[1]} for k, v in estimates.items()
    ]
    if tau_true is not None:
        rows.append(
            {
                "method": "truth (mean simulated CATE)",
                "estimate": float(np.mean(tau_true)),
                "std_error": np.nan,
                "ci_lower": np.nan,
                "ci_upper": np.nan,
            }
        )
    return pd.DataFrame(rows)
