"""The answer first: a few sentences an analyst can quote, from the trial's evidence tables."""

from __future__ import annotations

import pandas as pd

from models.causal.heterogeneity import heterogeneity_statistic
from models.debiasing.trust import TrialDiagnostics

RATE_THRESHOLD = 1.96  # two-sided 5% on the RATE ratio (estimate / standard error)


def _interval(row: pd.Series, value: str = "estimate") -> str:
    return f"{row[value]:.3g} [{row['ci_lower']:.3g}, {row['ci_upper']:.3g}]"


def ate_sentence(ate: pd.DataFrame) -> str:
    rows = ate.set_index("method")
    dr = rows.loc["doubly robust (AIPW)"]
    text = f"Average treatment effect (doubly robust): {dr['estimate']:.3g}, 95% CI [{dr['ci_lower']:.3g}, {dr['ci_upper']:.3g}]"
    if "difference in means" in rows.index:
        text += f" (difference in means {_interval(rows.loc['difference in means'])})"
    return text + "."


def _strongest(evaluation: pd.DataFrame) -> pd.Series:
    """The data choice and learner with the largest RATE (AUTOC) ratio."""
    return evaluation.loc[evaluation["autoc_ratio"].idxmax()]


def heterogeneity_sentence(evaluation: pd.DataFrame) -> str:
    """Whether the best data choice's RATE (AUTOC) shows heterogeneity. With sequential priorities
    the verdict is the cross-fitted sequential RATE's (grf's rate_cv), the test whose level holds;
    the pooled out-of-fold RATE ratio ranks the choices but its interval under-covers."""
    best = _strongest(evaluation)
    found = f"{best['data_choice']} with the {best['learner']}: AUTOC {best['autoc']:.3g} [{best['autoc_lower']:.3g}, {best['autoc_upper']:.3g}], RATE ratio {best['autoc_ratio']:.2f}"
    kind, value = heterogeneity_statistic(best)
    test = "sequential RATE (grf's rate_cv)" if kind == "sequential" else "RATE"
    if kind == "sequential":
        found += f", sequential t {value:.2f}"
    if value > RATE_THRESHOLD:
        return f"Heterogeneity detected ({test}, two-sided 5%): strongest with {found}."
    return f"No heterogeneity detected at 5% ({test}): the strongest is {found}, below {RATE_THRESHOLD}."


def best_choice_sentence(evaluation: pd.DataFrame, differences: pd.DataFrame) -> str:
    """The best data choice against the runner-up under the same learner: the paired AUTOC difference."""
    best = _strongest(evaluation)
    same = evaluation[(evaluation["learner"] == best["learner"]) & (evaluation["data_choice"] != best["data_choice"])]
    if same.empty:
        return f"Only one data choice ({best['data_choice']}) was compared."
    runner = _strongest(same)["data_choice"]
    pair = differences[(differences["target"] == "AUTOC") & (differences["learner"] == best["learner"])]
    row = pair[(pair["data_choice_a"] == best["data_choice"]) & (pair["data_choice_b"] == runner)]
    sign = 1
    if row.empty:
        row, sign = pair[(pair["data_choice_a"] == runner) & (pair["data_choice_b"] == best["data_choice"])], -1
    row = row.iloc[0]
    low, high = sorted((sign * row["ci_lower"], sign * row["ci_upper"]))
    verdict = "a difference" if low > 0 or high < 0 else "not distinguishable at 5%"
    return (
        f"Best data choice: {best['data_choice']} beats {runner} ({best['learner']}) by {sign * row['difference']:.3g} in AUTOC, "
        f"95% CI [{low:.3g}, {high:.3g}], paired on the same half-samples: {verdict}."
    )


def drivers_sentence(attribution: pd.DataFrame, alpha: float = 0.05) -> str:
    """The land-cover terms whose Bonferroni-adjusted p-value stays below ``alpha``."""
    kept = attribution[attribution["p_bonferroni"] < alpha]
    if kept.empty:
        return f"No land-cover driver survives Bonferroni correction at {alpha:.0%} ({len(attribution)} terms tested)."
    terms = "; ".join(
        f"{r['feature']} {r['per_10pp']:+.3g} per 10 pp [{r['per_10pp_lower']:.3g}, {r['per_10pp_upper']:.3g}]" for _, r in kept.iterrows()
    )
    return f"Land-cover drivers surviving Bonferroni correction at {alpha:.0%} ({len(kept)} of {len(attribution)} terms): {terms}."


def debiasing_sentence(
    wealth_effects: pd.DataFrame, corrections: dict | None, skipped: str | None, diagnostics: TrialDiagnostics | None = None
) -> str:
    """Whether the debiased outcomes are warranted for this trial, from the map's calibration
    diagnostics, and which method to use (``diagnostics.verdict``)."""
    if skipped or corrections is None or wealth_effects.empty:
        return skipped or "Debiased outcomes: not available (the shared wealth map has not been materialized)."
    d = corrections["diagnostics"]
    shrink = f"calibration slope b = {d['slope_b']:.2f} (SE {d['slope_se']:.2f}), variance ratio {d['variance_ratio']:.2f}"
    effects = wealth_effects.set_index("method")
    shown = ", ".join(f"{m} {effects.loc[m, 'estimate']:.3g}" for m in ("naive", "lcc", "tweedie") if m in effects.index)
    if not d["correction_warranted"]:
        return f"Debiased outcomes are not warranted: the map is not measurably shrunk ({shrink}); use the naive outcome ({shown})."
    advice = f" {diagnostics.verdict}" if diagnostics is not None else ""
    return f"Debiased outcomes are warranted: the map shrinks effects ({shrink}); this trial's effect on mapped wealth: {shown}.{advice}"


def trial_summary(
    ate: pd.DataFrame,
    evaluation: pd.DataFrame,
    differences: pd.DataFrame,
    attribution: pd.DataFrame,
    wealth_effects: pd.DataFrame,
    corrections: dict | None = None,
    debiasing_skipped: str | None = None,
    debiasing: TrialDiagnostics | None = None,
) -> list[str]:
    """The report's opening: the ATE, whether heterogeneity is detected and by which data choice
    best, the land-cover drivers that survive multiplicity, and whether debiasing is warranted."""
    return [
        ate_sentence(ate),
        heterogeneity_sentence(evaluation),
        best_choice_sentence(evaluation, differences),
        drivers_sentence(attribution),
        debiasing_sentence(wealth_effects, corrections, debiasing_skipped, debiasing),
    ]
