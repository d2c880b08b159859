"""Does heterogeneity exist? DR scores, ATE, RATE (AUTOC / Qini), the BLP calibration test, truth metrics.

RATE follows grf's ``rank_average_treatment_effect`` exactly, sample weights included: priorities
sorted in decreasing order with ties averaged, TOC(q) = mean(Gamma over the top q) - mean(Gamma),
AUTOC = mean of TOC at q = 1/n..1, Qini = sum_i (i / n^2) TOC_i; half-sample bootstrap standard
errors (half the units or half the clusters, without replacement: the spread of half-sample
estimates is itself the standard error of the full-sample estimate, so no rescaling is needed),
shared by every rule so that differences between rules get paired intervals. Cluster-randomized
trials get clustered draws and cluster-robust BLP and GATES errors everywhere.
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


def difference_in_means(y: np.ndarray, t: np.ndarray, clusters: np.ndarray | None = None) -> Estimate:
    """Treated minus control mean with Neyman's standard error, or the cluster-robust one (OLS of y
    on [1, T], CR1) when ``clusters`` is given: a cluster-randomized trial's units are not independent."""
    y, t = np.asarray(y, float), np.asarray(t)
    if clusters is not None:
        fit = robust_ols(y, np.column_stack([np.ones_like(y), t]), clusters, cluster_vcov="CR1")
        return Estimate(float(fit.params[1]), float(fit.bse[1]))
    y1, y0 = y[t == 1], y[t == 0]
    return Estimate(float(y1.mean() - y0.mean()), float(np.sqrt(y1.var(ddof=1) / len(y1) + y0.var(ddof=1) / len(y0))))


def cluster_codes(clusters: np.ndarray | pd.Series | None, n: int) -> np.ndarray:
    """Integer cluster codes 0..G-1; each unit its own cluster when ``clusters`` is None.

    A missing label is an error: factorizing would give it code -1, which drops those units from
    every bootstrap draw or pools them into one spurious cluster.
    """
    if clusters is None:
        return np.arange(n)
    labels = pd.Series(np.asarray(clusters))
    if len(labels) != n:
        raise ValueError(f"{len(labels)} cluster labels for {n} units")
    if labels.isna().any():
        raise ValueError(
            f"{int(labels.isna().sum())} of {n} units have no cluster label: every unit of a cluster-randomized trial needs one "
            "(fill the trial table's cluster column, or drop the column if the trial is not clustered)"
        )
    return pd.factorize(labels)[0]


def cluster_members(codes: np.ndarray) -> list[np.ndarray]:
    """Unit indices of each cluster 0..G-1 (``cluster_codes``), for resampling whole clusters."""
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.searchsorted(codes[order], np.arange(1, int(codes.max()) + 1)))


def half_samples(codes: np.ndarray, n_boot: int, seed: int = 0) -> list[np.ndarray]:
    """grf's half-sample bootstrap: each draw is half the clusters, without replacement. The spread of
    half-sample estimates is itself the standard error of the full-sample estimate."""
    n_groups = int(codes.max()) + 1
    if n_groups // 2 <= 1:
        raise ValueError(f"the half-sample bootstrap needs at least 4 units or clusters, got {n_groups}")
    members = cluster_members(codes)
    rng = np.random.default_rng(seed)
    return [np.concatenate([members[c] for c in rng.choice(n_groups, n_groups // 2, replace=False)]) for _ in range(n_boot)]


def _sorted(priority: np.ndarray, gamma: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores and weights by decreasing priority, each tie group's scores replaced by their weighted mean."""
    order = np.argsort(-priority, kind="stable")
    p, g, w = priority[order], gamma[order], weights[order]
    _, start, counts = np.unique(-p, return_index=True, return_counts=True)
    means = np.add.reduceat(g * w, start) / np.add.reduceat(w, start)
    return np.repeat(means, counts), w


def _inputs(priority, gamma, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    priority, gamma = np.asarray(priority, float), np.asarray(gamma, float)
    weights = np.ones_like(gamma) if weights is None else np.asarray(weights, float)
    if np.isnan(priority).any() or np.isnan(gamma).any():
        raise ValueError("priorities and DR scores must not contain NaN")
    if (weights <= 0).any():
        raise ValueError("sample weights must be positive (drop units with weight 0)")
    return priority, gamma, weights


def toc(
    priority: np.ndarray, gamma: np.ndarray, weights: np.ndarray | None = None, q: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(q, TOC(q)) as grf defines it: TOC(q) = weighted mean of the DR scores of the top q share by
    priority (ties averaged) minus their overall weighted mean. Without ``q``, at every unit
    (q = cumulative weight share); with a grid ``q``, fractional units at the grid points, like grf."""
    g, w = _sorted(*_inputs(priority, gamma, weights))
    return _toc(g, w, q)


def _toc(g: np.ndarray, w: np.ndarray, q: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    cw, cg = np.cumsum(w), np.cumsum(g * w)
    total = cw[-1]
    ate_ = cg[-1] / total
    if q is None:
        return cw / total, cg / cw - ate_
    q = np.asarray(q, float)
    nw = q * total
    k = np.searchsorted(cw, nw * (1 + 1e-12), side="right")  # whole units inside the top share
    whole_w = np.where(k > 0, cw[np.maximum(k - 1, 0)], 0.0)
    whole_g = np.where(k > 0, cg[np.maximum(k - 1, 0)], 0.0)
    part = np.maximum(nw - whole_w, 0.0)
    return q, (whole_g + part * g[np.minimum(k, len(g) - 1)]) / (whole_w + part) - ate_


def rate_point(priority: np.ndarray, gamma: np.ndarray, target: str = "AUTOC", weights: np.ndarray | None = None) -> float:
    """grf's RATE: AUTOC = weighted mean of TOC over units; QINI = the same with weight q (the share
    treated), i.e. sum_i (i / n^2) TOC_i with unit weights."""
    g, w = _sorted(*_inputs(priority, gamma, weights))
    q, curve = _toc(g, w, None)
    if target == "AUTOC":
        return float(np.sum(curve * w) / w.sum())
    if target == "QINI":
        return float(np.sum(q * w * curve) / w.sum())
    raise ValueError(f"target must be AUTOC or QINI, got {target!r}")


def rate(
    priority: np.ndarray,
    gamma: np.ndarray,
    target: str = "AUTOC",
    clusters: np.ndarray | None = None,
    n_boot: int = 200,
    seed: int = 0,
    weights: np.ndarray | None = None,
) -> Estimate:
    """RATE with a half-sample bootstrap standard error (clustered when ``clusters`` is given)."""
    gamma = np.asarray(gamma, float)
    w = np.ones_like(gamma) if weights is None else np.asarray(weights, float)
    draws = half_samples(cluster_codes(clusters, len(gamma)), n_boot, seed)
    priority = np.asarray(priority, float)
    boot = [rate_point(priority[i], gamma[i], target, w[i]) for i in draws]
    return Estimate(rate_point(priority, gamma, target, w), float(np.std(boot, ddof=1)))


def rate_comparison(
    priorities: pd.DataFrame, gamma: np.ndarray, clusters: np.ndarray | None = None, n_boot: int = 200, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """RATE (AUTOC and Qini) of every priority rule (a column of ``priorities``) and every pairwise
    difference, all on the same half-sample draws, so a difference's interval accounts for the
    rules sharing units (grf's paired comparison of two priorities, for any number of rules).

    Returns (rules: rule, target, estimate, std_error, ci_lower, ci_upper, ratio) and
    (differences: rule_a, rule_b, target, difference, std_error, ci_lower, ci_upper, p_value).
    """
    gamma = np.asarray(gamma, float)
    draws = half_samples(cluster_codes(clusters, len(gamma)), n_boot, seed)
    names = list(priorities.columns)
    P = priorities.to_numpy(float)
    rules, diffs = [], []
    for target in ("AUTOC", "QINI"):
        point = np.array([rate_point(P[:, j], gamma, target) for j in range(len(names))])
        boot = np.array([[rate_point(P[i, j], gamma[i], target) for j in range(len(names))] for i in draws])
        for j, name in enumerate(names):
            est = Estimate(point[j], float(np.std(boot[:, j], ddof=1)))
            rules.append({"rule": name, "target": target, **_columns(est), "ratio": est.ratio})
        for a in range(len(names)):
            for b in range(a + 1, len(names)):
                est = Estimate(point[a] - point[b], float(np.std(boot[:, a] - boot[:, b], ddof=1)))
                diffs.append({"rule_a": names[a], "rule_b": names[b], "target": target, **_columns(est), "p_value": est.p_value})
    rules_table = pd.DataFrame(rules).rename(columns={"estimate": "rate"})
    return rules_table, pd.DataFrame(diffs).rename(columns={"estimate": "difference"})


def _pooled_over_folds(priority: np.ndarray, folds: np.ndarray, statistic) -> dict:
    """grf's ``rate_cv`` pooling: ``statistic(selection)`` -> (estimate, t) on every fold whose units
    have a priority (from a model fitted on earlier folds); the pooled sum(t_k) / sqrt(number of
    folds) is standard normal under no heterogeneity, as each fold's statistic is independent of
    the data its priorities came from. A fold whose statistic is undefined (a constant priority has
    no differential, no spread) is left out. Returns the mean estimate, the pooled t and its one-sided p."""
    ok = ~np.isnan(np.asarray(priority, float))
    folds = np.asarray(folds)
    parts = [part for k in np.unique(folds[ok]) if np.isfinite((part := statistic(ok & (folds == k)))[1])]
    t = float(np.sum([t for _, t in parts]) / np.sqrt(len(parts))) if parts else np.nan
    estimate = float(np.mean([e for e, _ in parts])) if parts else np.nan
    return {"estimate": estimate, "t": t, "p_one_sided": float(stats.norm.sf(t))}


def heterogeneity_statistic(row: pd.Series) -> tuple[str, float]:
    """Which statistic decides whether a data choice finds heterogeneity, and its value: the
    sequential RATE t (grf's rate_cv), whose level holds, when it was computed; else the pooled
    out-of-fold RATE ratio, whose interval under-covers (tests/models/causal/test_cluster_folds.py)."""
    sequential = row.get("autoc_sequential_t", np.nan)
    return ("sequential", float(sequential)) if np.isfinite(sequential) else ("pooled", float(row["autoc_ratio"]))


def sequential_rate(
    priority: np.ndarray,
    gamma: np.ndarray,
    folds: np.ndarray,
    target: str = "AUTOC",
    clusters: np.ndarray | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> dict:
    """grf's cross-fitted RATE for small trials (the ``rate_cv`` vignette): with priorities from
    ``models.causal.cate.sequential_cate`` (fold k ranked by a model fitted on earlier folds; NaN for the
    first), the RATE of each later fold and its t-statistic, pooled (``_pooled_over_folds``).
    Pooling out-of-fold priorities over all folds instead (``rate`` on ``tau``) ranks units by
    models fitted on each other's outcomes, and its interval under-covers (tests/models/causal/test_cluster_folds.py)."""
    priority, gamma, codes = np.asarray(priority, float), np.asarray(gamma, float), cluster_codes(clusters, len(gamma))

    def fold_rate(sel: np.ndarray) -> tuple[float, float]:
        est = rate(priority[sel], gamma[sel], target, codes[sel], n_boot, seed)
        return est.estimate, est.ratio

    return _pooled_over_folds(priority, folds, fold_rate)


def sequential_calibration_test(
    priority: np.ndarray, gamma: np.ndarray, folds: np.ndarray, clusters: np.ndarray | None = None, cluster_vcov: str = "CR3"
) -> dict:
    """The calibration test's differential coefficient in the same sequential scheme as
    ``sequential_rate``: per fold, ``calibration_test`` on its units' sequential priorities, the t
    statistics pooled. Returns the mean coefficient, the pooled t and its one-sided p."""
    priority, gamma = np.asarray(priority, float), np.asarray(gamma, float)
    clusters = None if clusters is None else np.asarray(clusters)

    def fold_blp(sel: np.ndarray) -> tuple[float, float]:
        blp = calibration_test(priority[sel], gamma[sel], None if clusters is None else clusters[sel], cluster_vcov)
        row = blp.set_index("term").loc["differential_forest_prediction"]
        return float(row["estimate"]), float(row["t_value"])

    return _pooled_over_folds(priority, folds, fold_blp)


def toc_band(
    priority: np.ndarray,
    gamma: np.ndarray,
    clusters: np.ndarray | None = None,
    q: np.ndarray | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """TOC on a grid of q (default 5%, 10%, ..., 100%) with pointwise 95% half-sample bootstrap bands."""
    q = np.arange(1, 21) / 20 if q is None else np.asarray(q, float)
    priority, gamma = np.asarray(priority, float), np.asarray(gamma, float)
    draws = half_samples(cluster_codes(clusters, len(gamma)), n_boot, seed)
    point = toc(priority, gamma, q=q)[1]
    se = np.std([toc(priority[i], gamma[i], q=q)[1] for i in draws], axis=0, ddof=1)
    return pd.DataFrame({"q": q, "toc": point, "std_error": se, "ci_lower": point - Z95 * se, "ci_upper": point + Z95 * se})


def _columns(est: Estimate) -> dict:
    return {"estimate": est.estimate, "std_error": est.se, "ci_lower": est.ci[0], "ci_upper": est.ci[1]}


CLUSTER_VCOV = ("CR3", "CR1")


@dataclass(frozen=True)
class RobustFit:
    """OLS coefficients with robust standard errors (normal-theory tests), named as the design's columns."""

    params: pd.Series
    bse: pd.Series
    vcov: str  # HC3, CR3 or CR1

    @property
    def tvalues(self) -> pd.Series:
        return self.params / self.bse

    @property
    def pvalues(self) -> pd.Series:
        return pd.Series(2 * stats.norm.sf(np.abs(self.tvalues)), index=self.params.index)


def cr3_covariance(design: np.ndarray, residuals: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Clustered HC3 (CR3): each cluster's residuals scaled by (I - H_gg)^-1 before the sandwich,
    as R's ``sandwich::vcovCL(type = "HC3")`` does by default in grf's ``best_linear_projection``
    (no G/(G-1) factor: vcovCL's HC3 cancels it). With one unit per cluster it is HC3 exactly.
    statsmodels offers only CR1, hence this function."""
    X = np.asarray(design, float)
    bread = np.linalg.pinv(X.T @ X)
    meat = np.zeros_like(bread)
    for members in cluster_members(codes):
        Xg = X[members]
        adjusted = np.linalg.solve(np.eye(len(members)) - Xg @ bread @ Xg.T, residuals[members])
        score = Xg.T @ adjusted
        meat += np.outer(score, score)
    return bread @ meat @ bread


def robust_ols(gamma: np.ndarray, design, clusters: np.ndarray | None, cluster_vcov: str = "CR3") -> RobustFit:
    """OLS with HC3 errors, or cluster-robust ones when the trial has clusters: ``CR3`` (grf's
    default, clustered HC3) or ``CR1`` (statsmodels' cluster, grf's ``vcov.type = "HC1"``, Stata's)."""
    if cluster_vcov not in CLUSTER_VCOV:
        raise ValueError(f"cluster_vcov must be one of {CLUSTER_VCOV}, got {cluster_vcov!r}")
    gamma = np.asarray(gamma, float)
    names = design.columns if isinstance(design, pd.DataFrame) else pd.RangeIndex(np.shape(design)[1])
    model = sm.OLS(gamma, np.asarray(design, float))
    if clusters is None:
        fit, kind = model.fit(cov_type="HC3"), "HC3"
        return RobustFit(pd.Series(fit.params, names), pd.Series(fit.bse, names), kind)
    codes = cluster_codes(clusters, len(gamma))
    if cluster_vcov == "CR1":
        fit = model.fit(cov_type="cluster", cov_kwds={"groups": codes})
        return RobustFit(pd.Series(fit.params, names), pd.Series(fit.bse, names), "CR1")
    fit = model.fit()
    cov = cr3_covariance(np.asarray(design, float), np.asarray(fit.resid), codes)
    return RobustFit(pd.Series(fit.params, names), pd.Series(np.sqrt(np.diag(cov)), names), "CR3")


def calibration_test(tau_hat: np.ndarray, gamma: np.ndarray, clusters: np.ndarray | None = None, cluster_vcov: str = "CR3") -> pd.DataFrame:
    """Best linear predictor test: Gamma ~ a * mean(tau_hat) + b * (tau_hat - mean(tau_hat)), HC3
    or cluster-robust when ``clusters`` is given (a cluster-randomized trial's errors are correlated
    within clusters; ignoring that roughly halves the standard errors).

    a near 1: the average prediction is right; b > 0 (one-sided p-value): heterogeneity exists;
    b near 1: the differential is well calibrated.
    """
    mean_pred = np.full_like(tau_hat, tau_hat.mean())
    design = np.column_stack([mean_pred, tau_hat - tau_hat.mean()])
    fit = robust_ols(gamma, design, clusters, cluster_vcov)
    one_sided = [stats.norm.sf(fit.params[i] / fit.bse[i]) for i in range(2)]
    return pd.DataFrame(
        {
            "term": ["mean_forest_prediction", "differential_forest_prediction"],
            "estimate": fit.params.to_numpy(),
            "std_error": fit.bse.to_numpy(),
            "t_value": fit.tvalues.to_numpy(),
            "p_value_one_sided": one_sided,
        }
    )


def quantile_groups(values: np.ndarray, n_groups: int = 5) -> np.ndarray:
    """Group 0..n_groups-1 of each value by quantile (ties broken by order, so groups are equal-sized)."""
    return pd.qcut(pd.Series(np.asarray(values, float)).rank(method="first"), n_groups, labels=False).to_numpy()


def gates(
    values: np.ndarray, gamma: np.ndarray, n_groups: int = 5, clusters: np.ndarray | None = None, cluster_vcov: str = "CR3"
) -> pd.DataFrame:
    """Group average treatment effects by quantile of ``values`` (the predicted CATE for GATES, or
    any feature): each group's mean DR score with a 95% interval (HC3 or cluster-robust). Unlike
    per-unit CATE intervals these cover: a group's mean DR score is unbiased for its average effect
    whatever the CATE model's errors. A calibrated CATE model has GATEs rising with, and close to,
    each group's mean prediction (``mean_value``)."""
    values = np.asarray(values, float)
    group = quantile_groups(values, n_groups)
    fit = robust_ols(gamma, np.eye(n_groups)[group], clusters, cluster_vcov)
    rows = []
    for k in range(n_groups):
        inside = values[group == k]
        est = Estimate(float(fit.params[k]), float(fit.bse[k]))
        rows.append(
            {"group": k + 1, "units": len(inside), "low": inside.min(), "high": inside.max(), "mean_value": inside.mean(), **_columns(est)}
        )
    return pd.DataFrame(rows).rename(columns={"estimate": "gate"})


def truth_metrics(tau_hat: np.ndarray, tau: np.ndarray, lower: np.ndarray | None = None, upper: np.ndarray | None = None) -> dict:
    """PEHE, Spearman rank correlation and per-unit interval coverage against the simulator's true CATE.

    The per-unit intervals carry the learner's variance only, not the bias of imperfect features,
    so their coverage is usually far below the nominal 95% (``gates`` gives intervals that cover).
    """
    out = {"pehe": float(np.sqrt(np.mean((tau_hat - tau) ** 2))), "rank_correlation": float(stats.spearmanr(tau_hat, tau).statistic)}
    if lower is not None and upper is not None and np.isfinite(lower).all():
        out["unit_interval_coverage"] = float(np.mean((lower <= tau) & (tau <= upper)))
    else:
        out["unit_interval_coverage"] = np.nan
    return out


def gates_coverage(
    tau_hat: np.ndarray, gamma: np.ndarray, tau: np.ndarray, clusters: np.ndarray | None = None, cluster_vcov: str = "CR3"
) -> float:
    """Share of the GATE intervals (quintiles of the prediction) that hold the true mean CATE of their group."""
    table = gates(tau_hat, gamma, clusters=clusters, cluster_vcov=cluster_vcov)
    truth = pd.Series(np.asarray(tau, float)).groupby(quantile_groups(tau_hat, len(table))).mean().to_numpy()
    return float(np.mean((table["ci_lower"] <= truth) & (truth <= table["ci_upper"])))


def evaluate_choices(
    estimates: pd.DataFrame,
    clusters: pd.Series | None = None,
    tau_true: pd.Series | None = None,
    n_boot: int = 200,
    seed: int = 0,
    cluster_vcov: str = "CR3",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Heterogeneity evidence per data choice and learner of ``models.causal.cate.cross_fit_choices``'
    estimates: RATE (AUTOC, Qini) with half-sample bootstrap SEs and intervals, the BLP calibration
    test with its SEs (cluster-robust when ``clusters`` is given: ``cluster_vcov`` CR3 or CR1) and, where the true CATE is known,
    PEHE / rank correlation / per-unit and GATE interval coverage; sorted by the AUTOC RATE ratio.

    Also the paired differences in RATE between data choices under each learner, from the same
    half-sample draws ("image sequence beats image by X (CI)"). ``clusters`` and ``tau_true`` are
    indexed by unit_id. Returns (evaluation, differences).
    """
    rows, differences = [], []
    for learner, part in estimates.groupby("learner", sort=False):
        wide = part.pivot(index="unit_id", columns="data_choice", values="tau")[list(part["data_choice"].unique())]
        by_unit = part.drop_duplicates("unit_id").set_index("unit_id").loc[wide.index]
        gamma = by_unit["gamma"].to_numpy()
        cl = clusters.loc[wide.index].to_numpy() if clusters is not None else None
        rules, diffs = rate_comparison(wide, gamma, cl, n_boot, seed)
        differences.append(diffs.rename(columns={"rule_a": "data_choice_a", "rule_b": "data_choice_b"}).assign(learner=learner))
        rules = rules.set_index(["rule", "target"])
        for choice in wide.columns:
            tau_hat = wide[choice].to_numpy()
            sub = part[part["data_choice"] == choice].set_index("unit_id").loc[wide.index]
            blp = calibration_test(tau_hat, gamma, cl, cluster_vcov).set_index("term")
            row = {"data_choice": choice, "learner": learner}
            for target in ("AUTOC", "QINI"):
                r, key = rules.loc[(choice, target)], target.lower()
                row |= {key: r["rate"], f"{key}_se": r["std_error"], f"{key}_lower": r["ci_lower"], f"{key}_upper": r["ci_upper"]}
                row[f"{key}_ratio"] = r["ratio"]
            if "tau_sequential" in part:
                seq = sequential_rate(sub["tau_sequential"].to_numpy(), gamma, sub["fold"].to_numpy(), "AUTOC", cl, n_boot, seed)
                row |= {"autoc_sequential": seq["estimate"], "autoc_sequential_t": seq["t"], "autoc_sequential_p": seq["p_one_sided"]}
                blp_seq = sequential_calibration_test(sub["tau_sequential"].to_numpy(), gamma, sub["fold"].to_numpy(), cl, cluster_vcov)
                row |= {"blp_sequential_t": blp_seq["t"], "blp_sequential_p": blp_seq["p_one_sided"]}
            row |= {
                "blp_mean": blp.loc["mean_forest_prediction", "estimate"],
                "blp_mean_se": blp.loc["mean_forest_prediction", "std_error"],
                "blp_differential": blp.loc["differential_forest_prediction", "estimate"],
                "blp_differential_se": blp.loc["differential_forest_prediction", "std_error"],
                "blp_differential_p": blp.loc["differential_forest_prediction", "p_value_one_sided"],
            }
            if tau_true is not None:
                tau = tau_true.loc[wide.index].to_numpy()
                row |= truth_metrics(tau_hat, tau, sub["lower"].to_numpy(), sub["upper"].to_numpy())
                row["gates_coverage"] = gates_coverage(tau_hat, gamma, tau, cl, cluster_vcov)
            rows.append(row)
    evaluation = pd.DataFrame(rows).sort_values("autoc_ratio", ascending=False, ignore_index=True)
    return evaluation, pd.concat(differences, ignore_index=True)


def _per_choice(estimates: pd.DataFrame, clusters: pd.Series | None, table) -> pd.DataFrame:
    """``table(tau, gamma, clusters)`` for every data choice and learner, stacked with those two columns first."""
    parts = []
    for (choice, learner), part in estimates.groupby(["data_choice", "learner"], sort=False):
        cl = clusters.loc[part["unit_id"]].to_numpy() if clusters is not None else None
        parts.append(table(part["tau"].to_numpy(), part["gamma"].to_numpy(), cl).assign(data_choice=choice, learner=learner))
    stacked = pd.concat(parts, ignore_index=True)
    return stacked[["data_choice", "learner", *[c for c in stacked.columns if c not in ("data_choice", "learner")]]]


def toc_by_choice(estimates: pd.DataFrame, clusters: pd.Series | None = None, n_boot: int = 200) -> pd.DataFrame:
    """TOC curves with pointwise 95% bands for every data choice and learner (the heterogeneity plot's
    lines): data_choice, learner, q, toc, std_error, ci_lower, ci_upper."""
    return _per_choice(estimates, clusters, lambda tau, gamma, cl: toc_band(tau, gamma, cl, n_boot=n_boot))


def gates_by_choice(
    estimates: pd.DataFrame, clusters: pd.Series | None = None, n_groups: int = 5, cluster_vcov: str = "CR3"
) -> pd.DataFrame:
    """GATES (``gates`` on the predicted CATE) for every data choice and learner: the calibration
    plot's points. Columns: data_choice, learner, group, units, low, high, mean_value, gate, ..."""
    return _per_choice(estimates, clusters, lambda tau, gamma, cl: gates(tau, gamma, n_groups, cl, cluster_vcov))


def ate_table(gamma: np.ndarray, y: np.ndarray, t: np.ndarray, tau_true: np.ndarray | None = None) -> pd.DataFrame:
    """The ATE from DR scores and the difference in means with 95% intervals (and the true mean CATE if known)."""
    estimates = {"doubly robust (AIPW)": ate(gamma), "difference in means": difference_in_means(y, t)}
    rows = [{"method": k, **_columns(v)} for k, v in estimates.items()]
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
