"""The trial's design quantities: known assignment probabilities and covariate balance."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def assignment_probability(units: pd.DataFrame) -> np.ndarray:
    """The design's P(T=1) per unit: ``assignment_probability`` if given, else the treated share of
    the unit's stratum (exact under complete randomization within strata), else the overall share."""
    if "assignment_probability" in units:
        return units["assignment_probability"].to_numpy(dtype=float)
    if "stratum" in units:
        return units.groupby("stratum")["treatment"].transform("mean").to_numpy(dtype=float)
    return np.full(len(units), units["treatment"].mean())


def standardized_differences(features: pd.DataFrame, treatment: np.ndarray) -> pd.DataFrame:
    """Per covariate: standardized mean difference between arms (pooled sd) and a Welch t-test
    p-value, Bonferroni-adjusted over covariates: imbalance beyond chance shows as a tiny p."""
    rows = []
    for col in features.columns:
        x1, x0 = features.loc[treatment == 1, col], features.loc[treatment == 0, col]
        pooled = np.sqrt((x1.var(ddof=1) + x0.var(ddof=1)) / 2)
        p = stats.ttest_ind(x1, x0, equal_var=False).pvalue if pooled > 0 else 1.0
        rows.append({"covariate": col, "mean_treated": x1.mean(), "mean_control": x0.mean(), "smd": (x1.mean() - x0.mean()) / pooled if pooled > 0 else 0.0, "p_adjusted": min(1.0, p * features.shape[1])})
    return pd.DataFrame(rows)
