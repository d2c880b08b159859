"""What in the landscape drives the heterogeneity: the best linear projection (BLP) of the doubly
robust scores on land-cover fractions and their change, and the CATE by quantile of a fraction.

The BLP (grf's ``best_linear_projection``) regresses the DR scores, not the fitted CATEs, on the
features: its coefficients are an honest test of which features move the effect. A regression of
tau-hat on the features would ignore the CATE model's estimation error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from models.causal.heterogeneity import gates, robust_ols
from models.interpretation.landcover import WORLDCOVER


def land_cover_design(first: pd.DataFrame, last: pd.DataFrame, reference: int | None = None, min_sd: float = 0.01) -> pd.DataFrame:
    """Features per unit from class fractions (columns = WorldCover codes, index = unit_id) at the
    first and the last date: ``level_<code>`` (last date) and ``change_<code>`` (last - first).

    Fractions sum to one and changes to zero, so one class is the reference, left out of both
    (by default the most common class at the last date; choose a background class such as
    grassland to read the others against it); near-constant features (sd < ``min_sd``) are left out.
    """
    reference = last.mean().idxmax() if reference is None or reference not in last or last[reference].mean() == 0 else reference
    level = last.drop(columns=reference).add_prefix("level_")
    change = (last - first).drop(columns=reference).add_prefix("change_")
    design = pd.concat([level, change], axis=1)
    design.attrs["reference"] = int(reference)
    return design.loc[:, design.std() >= min_sd]


def best_linear_projection(
    gamma: np.ndarray, X: pd.DataFrame, clusters: np.ndarray | None = None, alpha: float = 0.05, cluster_vcov: str = "CR3"
) -> pd.DataFrame:
    """OLS of the DR scores on centred features with HC3 standard errors, or cluster-robust ones
    (``cluster_vcov``: CR3, grf's default clustered HC3, or CR1).

    One row per feature: the change in the effect per unit of the feature and per 10 percentage
    points (``per_10pp``), its interval, p-value and Bonferroni-adjusted p-value over the features.
    """
    design = sm.add_constant(X - X.mean())
    fit = robust_ols(gamma, design, clusters, cluster_vcov)
    z = stats.norm.ppf(1 - alpha / 2)
    rows = []
    for term in X.columns:
        est, se, p = float(fit.params[term]), float(fit.bse[term]), float(fit.pvalues[term])
        kind, code = term.split("_", 1)
        name = f"{'share' if kind == 'level' else 'change in share'} of {WORLDCOVER.get(int(code), code)}"
        rows.append(
            {
                "term": term,
                "feature": name,
                "estimate": est,
                "std_error": se,
                "ci_lower": est - z * se,
                "ci_upper": est + z * se,
                "p_value": p,
            }
        )
    table = pd.DataFrame(rows)
    for col, source in (("per_10pp", "estimate"), ("per_10pp_lower", "ci_lower"), ("per_10pp_upper", "ci_upper")):
        table[col] = 0.1 * table[source]
    table["p_bonferroni"] = np.minimum(1.0, table["p_value"] * len(table))
    return table


def cate_by_quantile(gamma: np.ndarray, values: np.ndarray, q: int = 5, clusters: np.ndarray | None = None) -> pd.DataFrame:
    """The mean DR score (the group's ATE) with its interval in each quantile group of ``values``
    (``models.causal.heterogeneity.gates`` on a land-cover feature)."""
    table = gates(values, gamma, q, clusters).rename(columns={"group": "quantile", "gate": "estimate"})
    return table[["quantile", "low", "high", "units", "estimate", "ci_lower", "ci_upper"]]


def fractions_by_date(unit_land_cover: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """First- and last-date class fractions from ``unit_land_cover`` (index unit_id, columns codes)."""
    dated = unit_land_cover[unit_land_cover["date"] != "change"]
    dates = sorted(dated["date"].unique())

    def at(date: str) -> pd.DataFrame:
        frame = dated[dated["date"] == date].set_index("unit_id").filter(like="frac_")
        return frame.rename(columns=lambda c: int(c.removeprefix("frac_"))).fillna(0.0)

    return at(dates[0]), at(dates[-1])


def attribute(
    unit_land_cover: pd.DataFrame,
    gamma: pd.Series,
    clusters: pd.Series | None = None,
    reference: int | None = None,
    cluster_vcov: str = "CR3",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The BLP of the DR scores (``gamma``, indexed by unit_id) on the land-cover design of the
    units present in both; returns the table and the design (index unit_id)."""
    first, last = fractions_by_date(unit_land_cover)
    ids = [u for u in gamma.index if u in last.index]
    design = land_cover_design(first.loc[ids], last.loc[ids], reference)
    cl = clusters.loc[ids].to_numpy() if clusters is not None else None
    return best_linear_projection(gamma.loc[ids].to_numpy(), design, cl, cluster_vcov=cluster_vcov), design


def quantile_table(gamma: np.ndarray, design: pd.DataFrame, terms: list[str], clusters: np.ndarray | None = None) -> pd.DataFrame:
    """``cate_by_quantile`` for each of ``terms``, stacked (column ``term``)."""
    return pd.concat([cate_by_quantile(gamma, design[t].to_numpy(), clusters=clusters).assign(term=t) for t in terms], ignore_index=True)


def attenuation_vs_truth(blp: pd.DataFrame, gamma: pd.Series, truth: pd.DataFrame, design: pd.DataFrame) -> pd.DataFrame:
    """The same projection on the simulator's true fractions (``frac_<code>_first`` / ``_last``
    columns of its unit truth): ratio = classified / true coefficient, how much misclassification
    attenuates each one."""
    codes = sorted({int(c.split("_")[1]) for c in truth.columns if c.startswith("frac_")})
    long = pd.concat(
        [
            pd.DataFrame({f"frac_{c}": truth.loc[design.index, f"frac_{c}_{when}"].to_numpy() for c in codes}).assign(
                unit_id=design.index, date=d
            )
            for when, d in (("first", "0"), ("last", "1"))
        ],
        ignore_index=True,
    )
    true_blp, _ = attribute(long, gamma, None, int(design.attrs["reference"]))
    merged = blp.merge(true_blp[["term", "estimate"]], on="term", how="inner", suffixes=("", "_true"))
    merged["ratio"] = merged["estimate"] / merged["estimate_true"]
    return merged[["feature", "estimate", "estimate_true", "ratio"]]
