"""Causal: CATEs per data choice and learner, heterogeneity evaluation, ATE, and randomization checks."""
import time

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd

from assets.ingest import simulated_truth
from assets.metadata import figure_md, table_md
from models.cate import LEARNERS, LearnerConfig, cross_fit_cate, outcome_predictions
from models.design import assignment_probability, standardized_differences
from models.heterogeneity import ate, calibration_test, difference_in_means, dr_scores, rate, toc, truth_metrics
from models.plots import toc_curves
from models.training import fold_of
from pipelines.resources import StudySource

GROUP = "causal"
DATA_CHOICES = ("tabular", "image", "image_sequence", "image_sequence_tabular")
EVALUATION_FEATURES = "image_sequence_tabular"


class CateConfig(dg.Config):
    """Learners to fit on every data choice, and the cross-fitting folds."""

    learners: list[str] = list(LEARNERS)
    folds: int = 5
    n_estimators: int = 200
    seed: int = 0


def trial_frame(units: gpd.GeoDataFrame, outcome: str) -> pd.DataFrame:
    """unit_id, treatment, outcome, propensity (design), cluster (if any)."""
    frame = pd.DataFrame({"unit_id": units["unit_id"], "treatment": units["treatment"].astype(int), "outcome": units[outcome].astype(float), "propensity": assignment_probability(units)})
    if "cluster" in units:
        frame["cluster"] = units["cluster"].to_numpy()
    return frame


def _features(table: pd.DataFrame, unit_ids) -> np.ndarray:
    return table.set_index("unit_id").loc[list(unit_ids)].drop(columns=["fold"], errors="ignore").to_numpy(dtype=float)


@dg.asset(group_name=GROUP, kinds={"econml", "parquet"})
def cate_estimates(
    context: dg.AssetExecutionContext,
    config: CateConfig,
    rct_units: gpd.GeoDataFrame,
    embeddings_tabular: pd.DataFrame,
    embeddings_image: pd.DataFrame,
    embeddings_image_sequence: pd.DataFrame,
    embeddings_image_sequence_tabular: pd.DataFrame,
    source: StudySource,
) -> dg.Output:
    """Out-of-fold CATE (tau, se, interval, fold) per unit, data choice and learner, plus each unit's
    DR score ``gamma`` for evaluation.

    Every choice uses the same units and folds. The propensity is the design's, never estimated.
    DR scores come from out-of-fold outcome models on the richest features (image sequence +
    tabular), shared by all choices so their RATEs are comparable.
    """
    tables = dict(zip(DATA_CHOICES, (embeddings_tabular, embeddings_image, embeddings_image_sequence, embeddings_image_sequence_tabular)))
    common = set.intersection(*(set(t["unit_id"]) for t in tables.values()))
    trial = trial_frame(rct_units, source.outcomes[0])
    trial = trial[trial["unit_id"].isin(common)].reset_index(drop=True)
    T, Y, e = trial["treatment"].to_numpy(), trial["outcome"].to_numpy(), trial["propensity"].to_numpy()
    folds = fold_of(trial["unit_id"].to_numpy(), config.folds, config.seed)
    cfg = LearnerConfig(n_estimators=config.n_estimators, seed=config.seed)
    mu0, mu1 = outcome_predictions(_features(tables[EVALUATION_FEATURES], trial["unit_id"]), T, Y, folds, cfg)
    gamma = dr_scores(Y, T, mu0, mu1, e)
    parts, timings = [], []
    for choice, table in tables.items():
        X = _features(table, trial["unit_id"])
        for learner in config.learners:
            started = time.perf_counter()
            est = cross_fit_cate(learner, X, T, Y, e, folds, cfg)
            timings.append({"data_choice": choice, "learner": learner, "seconds": time.perf_counter() - started, "mean_tau": est["tau"].mean(), "sd_tau": est["tau"].std()})
            context.log.info(f"{choice} x {learner}: {timings[-1]['seconds']:.1f}s")
            parts.append(est.assign(unit_id=trial["unit_id"], data_choice=choice, learner=learner, gamma=gamma))
    out = pd.concat(parts, ignore_index=True)[["unit_id", "data_choice", "learner", "tau", "se", "lower", "upper", "fold", "gamma"]]
    return dg.Output(out, metadata={"units": len(trial), "fits": table_md(pd.DataFrame(timings))})


@dg.asset_check(asset="tabular_features", additional_ins={"rct_units": dg.AssetIn("rct_units")}, blocking=True, description="Arms are balanced on covariates (no Bonferroni-adjusted p < 0.001).")
def covariates_balanced(tabular_features: pd.DataFrame, rct_units: gpd.GeoDataFrame) -> dg.AssetCheckResult:
    """A randomization check: imbalance beyond chance means the assignment or the data is broken."""
    treatment = rct_units.set_index("unit_id").loc[tabular_features["unit_id"], "treatment"].to_numpy()
    balance = standardized_differences(tabular_features.drop(columns="unit_id"), treatment)
    return dg.AssetCheckResult(
        passed=bool(balance["p_adjusted"].min() >= 1e-3), severity=dg.AssetCheckSeverity.ERROR,
        metadata={"max_abs_smd": float(balance["smd"].abs().max()), "min_p_adjusted": float(balance["p_adjusted"].min()), "balance": table_md(balance)},
    )


@dg.asset(group_name=GROUP, kinds={"parquet"})
def heterogeneity_evaluation(cate_estimates: pd.DataFrame, rct_units: gpd.GeoDataFrame, study_inputs: dict) -> dg.Output:
    """RATE (AUTOC and Qini, half-sample bootstrap SEs, the RATE ratio as headline) and the BLP
    calibration test per data choice and learner, all out of fold; PEHE, rank correlation and
    coverage where the simulator's truth exists. The TOC plot compares the data choices."""
    truth = simulated_truth(study_inputs)
    clusters = rct_units.set_index("unit_id")["cluster"] if "cluster" in rct_units else None
    rows, curves = [], {}
    for (choice, learner), part in cate_estimates.groupby(["data_choice", "learner"], sort=False):
        tau_hat, gamma = part["tau"].to_numpy(), part["gamma"].to_numpy()
        cl = clusters.loc[part["unit_id"]].to_numpy() if clusters is not None else None
        autoc, qini = rate(tau_hat, gamma, "AUTOC", cl), rate(tau_hat, gamma, "QINI", cl)
        blp = calibration_test(tau_hat, gamma).set_index("term")
        row = {
            "data_choice": choice, "learner": learner,
            "autoc": autoc.estimate, "autoc_se": autoc.se, "autoc_ratio": autoc.ratio,
            "qini": qini.estimate, "qini_se": qini.se, "qini_ratio": qini.ratio,
            "blp_mean": blp.loc["mean_forest_prediction", "estimate"],
            "blp_differential": blp.loc["differential_forest_prediction", "estimate"],
            "blp_differential_p": blp.loc["differential_forest_prediction", "p_value_one_sided"],
        }
        if truth is not None:
            row |= truth_metrics(tau_hat, truth.loc[part["unit_id"], "tau"].to_numpy(), part["lower"].to_numpy(), part["upper"].to_numpy())
        rows.append(row)
        if learner == cate_estimates["learner"].iloc[0]:
            curves[f"{choice} ({learner})"] = toc(tau_hat, gamma)
    table = pd.DataFrame(rows).sort_values("autoc_ratio", ascending=False)
    return dg.Output(table, metadata={"rate": table_md(table), "toc": figure_md(toc_curves(curves, "TOC by data choice"), "TOC")})


@dg.asset_check(asset=heterogeneity_evaluation, description="At least one data choice finds heterogeneity (AUTOC RATE ratio > 1.96).")
def rate_is_significant(heterogeneity_evaluation: pd.DataFrame) -> dg.AssetCheckResult:
    best = heterogeneity_evaluation.iloc[0]
    return dg.AssetCheckResult(
        passed=bool(best["autoc_ratio"] > 1.96), severity=dg.AssetCheckSeverity.WARN,
        metadata={"best": f"{best['data_choice']} / {best['learner']}", "autoc_ratio": float(best["autoc_ratio"])},
    )


@dg.asset(group_name=GROUP, kinds={"parquet"})
def ate_summary(cate_estimates: pd.DataFrame, rct_units: gpd.GeoDataFrame, study_inputs: dict, source: StudySource) -> dg.Output:
    """The ATE from the doubly robust scores with a 95% interval, beside the difference in means
    (and the true mean CATE where the simulator knows it)."""
    first = cate_estimates.drop_duplicates("unit_id")
    trial = trial_frame(rct_units, source.outcomes[0]).set_index("unit_id").loc[first["unit_id"]]
    estimates = {"doubly robust (AIPW)": ate(first["gamma"].to_numpy()), "difference in means": difference_in_means(trial["outcome"].to_numpy(), trial["treatment"].to_numpy())}
    rows = [{"method": k, "estimate": v.estimate, "std_error": v.se, "ci_lower": v.ci[0], "ci_upper": v.ci[1]} for k, v in estimates.items()]
    truth = simulated_truth(study_inputs)
    if truth is not None:
        rows.append({"method": "truth (mean simulated CATE)", "estimate": float(truth.loc[first["unit_id"], "tau"].mean()), "std_error": np.nan, "ci_lower": np.nan, "ci_upper": np.nan})
    table = pd.DataFrame(rows)
    return dg.Output(table, metadata={"ate": table_md(table), "units": len(first)})
