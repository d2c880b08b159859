"""The trial's design quantities: assignment probabilities, the trial frame, randomization checks."""

from __future__ import annotations

from dataclasses import dataclass

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


def unit_clusters(units: pd.DataFrame) -> pd.Series | None:
    """Each unit's cluster label indexed by unit id, or None when the trial is not clustered: what
    cross-fitting keeps whole per fold."""
    return units.set_index("unit_id")["cluster"] if "cluster" in units else None


def cluster_groups(frame: pd.DataFrame) -> np.ndarray | None:
    """A trial frame's cluster column as econml's ``groups`` (its nuisance folds keep each whole),
    or None when the trial is not clustered."""
    return frame["cluster"].to_numpy() if "cluster" in frame else None


def trial_frame(units: pd.DataFrame, outcome: str, unit_ids=None) -> pd.DataFrame:
    """unit_id, treatment, outcome, propensity (the design's), cluster (if any); in ``unit_ids`` order if given."""
    frame = pd.DataFrame(
        {
            "unit_id": units["unit_id"].to_numpy(),
            "treatment": units["treatment"].astype(int).to_numpy(),
            "outcome": units[outcome].astype(float).to_numpy(),
            "propensity": assignment_probability(units),
        }
    )
    if "cluster" in units:
        frame["cluster"] = units["cluster"].to_numpy()
    if unit_ids is not None:
        frame = frame.set_index("unit_id").loc[list(unit_ids)].reset_index()
    return frame


@dataclass(frozen=True)
class RandomizationTest:
    """Treated count against the design's expectation; ``tested`` is False when the design
    probability was itself read off the treated share, which leaves nothing to test."""

    treated: int
    units: int
    expected: float
    p_value: float
    tested: bool
    rule: str


def randomization_test(units: pd.DataFrame) -> RandomizationTest:
    """Is the treated count consistent with the design's assignment probabilities?

    Uses the same probabilities as every estimator (:func:`assignment_probability`). With an
    ``assignment_probability`` column: an exact binomial test when it is constant, else a normal
    test of the Poisson-binomial count. Without it, the probability is the observed (stratum)
    share, so the count matches by construction and the test reports ``tested=False``.
    """
    p = assignment_probability(units)
    treated, n = int(units["treatment"].sum()), len(units)
    if "assignment_probability" not in units:
        rule = "stratum treated share" if "stratum" in units else "overall treated share"
        return RandomizationTest(
            treated, n, float(p.sum()), 1.0, False, f"{rule} (no assignment_probability column: nothing to test against)"
        )
    if np.ptp(p) == 0:
        return RandomizationTest(treated, n, float(p.sum()), float(stats.binomtest(treated, n, float(p[0])).pvalue), True, "exact binomial")
    z = (treated - p.sum()) / np.sqrt(np.sum(p * (1 - p)))
    return RandomizationTest(
        treated, n, float(p.sum()), float(2 * stats.norm.sf(abs(z))), True, "normal approximation (unit-specific probabilities)"
    )


def standardized_differences(features: pd.DataFrame, treatment: np.ndarray) -> pd.DataFrame:
    """Per covariate: standardized mean difference between arms (pooled sd) and a Welch t-test
    p-value, Bonferroni-adjusted over covariates: imbalance beyond chance shows as a tiny p."""
    rows = []
    for col in features.columns:
        x1, x0 = features.loc[treatment == 1, col], features.loc[treatment == 0, col]
        pooled = np.sqrt((x1.var(ddof=1) + x0.var(ddof=1)) / 2)
        p = stats.ttest_ind(x1, x0, equal_var=False).pvalue if pooled > 0 else 1.0
        rows.append(
            {
                "covariate": col,
                "mean_treated": x1.mean(),
                "mean_control": x0.mean(),
                "smd": (x1.mean() - x0.mean()) / pooled if pooled > 0 else 0.0,
                "p_adjusted": min(1.0, p * features.shape[1]),
            }
        )
    return pd.DataFrame(rows)
