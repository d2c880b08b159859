"""Causal: CATEs per data choice and learner, heterogeneity evaluation, ATE, and randomization checks."""

import dataclasses
from typing import Literal

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd

from assets.config import LearnerName, shared_config, values
from assets.metadata import figure_md, lineage, source_version, table_md
from assets.partitions import trials
from models.analyst.plots import gates_calibration, toc_bands
from models.causal import cate
from models.causal.cate import (
    DATA_CHOICES,
    ESTIMATE_COLUMNS,
    LEARNERS,
    SCORE_CHOICE,
    LearnerConfig,
    check_arm_sizes,
    feature_matrix,
    fit_choice,
    shared_scores,
)
from models.causal.heterogeneity import ate_table, evaluate_choices, gates_by_choice, heterogeneity_statistic, toc_by_choice
from models.ingest.design import cluster_groups, standardized_differences, trial_frame, unit_clusters
from models.io.manifest import StudyManifest
from models.io.truth import read_unit_truth
from pipelines.resources import Config, CrossFittingResource, StudySource

GROUP = "causal"


class CateConfig(Config):
    """Learners to fit on every data choice (the folds come from the ``cross_fitting`` resource)."""

    learners: list[LearnerName] = list(LEARNERS)
    n_estimators: int = LearnerConfig.n_estimators
    # Each tree's subsample capped at 25,000 units: binds only where a fit has over 55,555 units (grf's
    # 0.45 of them), so trials up to 50,000 units (5 folds) fit exactly as without; at 100,000 one forest
    # takes 130 s instead of 248 s, PEHE 0.179 vs 0.167 (benchmarks/results/cate_100k_tree_cap.json).
    max_tree_units: int | None = 25_000
    # Features tried per forest split (None: all). A large trial's speed setting: 28 of 64 halve the forests'
    # time, at a PEHE cost that grows with the signal's sparsity (figures in LearnerConfig's docstring).
    mtry: int | None = None
    # Each leaf holds at least this share of its tree's units (0: grf's fixed 5 only): shallower trees for
    # large trials, the forests 28% faster at 50,000 units for a PEHE change of -0.002 to +0.008 (LearnerConfig).
    leaf_share: float = LearnerConfig.leaf_share
    n_jobs: int = LearnerConfig.n_jobs  # each fit's threads: -1 every core; 1 when the executor runs a fit per core
    seed: int = LearnerConfig.seed
    sequential_rate: bool = True  # also fit grf's rate_cv scheme (fold k from folds < k): about 30% more fitting

    def learner_config(self) -> LearnerConfig:
        """The learners' settings (``models.causal.cate.LearnerConfig``): every field the two share,
        so a learner setting added here reaches the learners without a second list."""
        shared = {f.name for f in dataclasses.fields(LearnerConfig)} & set(type(self).model_fields)
        return LearnerConfig(**{name: getattr(self, name) for name in shared})


def _arrays(design: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """A design table's features, treatment, outcome, propensity and folds as arrays."""
    X = design.filter(regex=r"^f\d+$").to_numpy(dtype=float)
    return X, *(design[c].to_numpy() for c in ("treatment", "outcome", "propensity", "fold"))


@dg.op(out={"scoring": dg.Out(pd.DataFrame), "fits": dg.DynamicOut(pd.DataFrame)})
def plan_cate_fits(
    config: CateConfig,
    rct_units: gpd.GeoDataFrame,
    embeddings_tabular: pd.DataFrame,
    embeddings_image: pd.DataFrame,
    embeddings_image_sequence: pd.DataFrame,
    embeddings_image_sequence_tabular: pd.DataFrame,
    source: StudySource,
    cross_fitting: CrossFittingResource,
):
    """The units every data choice has, their folds (checked against the cross-fitted encoders'),
    and one design table (unit_id, treatment, outcome, propensity, fold, cluster if any, f000...) for the shared DR
    scores and for each data choice x learner: a fit step each."""
    received = (embeddings_tabular, embeddings_image, embeddings_image_sequence, embeddings_image_sequence_tabular)
    tables = dict(zip(DATA_CHOICES, received, strict=True))
    common = set.intersection(*(set(t["unit_id"]) for t in tables.values()))
    trial = trial_frame(rct_units, source.outcomes[0])
    trial = trial[trial["unit_id"].isin(common)].reset_index(drop=True)
    ids = trial["unit_id"].to_numpy()
    trial["fold"] = cross_fitting.scheme().check(ids, tables, unit_clusters(rct_units))  # whole clusters per fold
    check_arm_sizes(trial["treatment"].to_numpy(), trial["fold"].to_numpy())  # before 12 fits fail one by one
    base = trial[["unit_id", "treatment", "outcome", "propensity", "fold", *(["cluster"] if "cluster" in trial else [])]]

    def design(choice: str) -> pd.DataFrame:
        X = feature_matrix(tables[choice], ids)
        return pd.concat([base, pd.DataFrame(X, columns=[f"f{i:03d}" for i in range(X.shape[1])])], axis=1)

    designs = {choice: design(choice) for choice in DATA_CHOICES}
    yield dg.Output(designs[SCORE_CHOICE], output_name="scoring")
    for choice, table in designs.items():
        for learner in values(config.learners):
            yield dg.DynamicOutput(table, output_name="fits", mapping_key=f"{choice}__{learner}")


@dg.op
def score_units(config: CateConfig, scoring: pd.DataFrame) -> pd.DataFrame:
    """Each unit's DR score ``gamma`` from out-of-fold outcome models on the richest features,
    shared by every data choice so that their RATEs compare."""
    return pd.DataFrame({"unit_id": scoring["unit_id"], "gamma": shared_scores(*_arrays(scoring), config.learner_config())})


@dg.op
def fit_cate(context: dg.OpExecutionContext, config: CateConfig, design: pd.DataFrame) -> pd.DataFrame:
    """One data choice x learner (the step's mapping key, ``<choice>__<learner>``) fitted out of fold."""
    choice, learner = context.get_mapping_key().split("__")
    est, record = fit_choice(
        learner, *_arrays(design), config.learner_config(), sequential=config.sequential_rate, groups=cluster_groups(design)
    )
    context.log.info(f"{choice} x {learner}: {record['seconds']:.1f}s")
    return est.assign(unit_id=design["unit_id"].to_numpy(), data_choice=choice, learner=learner, seconds=record["seconds"])


@dg.op
def assemble_cate_estimates(
    context: dg.OpExecutionContext, fits: list[pd.DataFrame], scores: pd.DataFrame, imagery_catalog: pd.DataFrame
) -> dg.Output:
    """The fits in one table with every unit's DR score, in data-choice order, and their fit times."""
    estimates = pd.concat(fits, ignore_index=True).merge(scores, on="unit_id", how="left", validate="many_to_one")
    order = {choice: i for i, choice in enumerate(DATA_CHOICES)}
    estimates = estimates.sort_values("data_choice", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
    records = estimates.groupby(["data_choice", "learner"], sort=False).agg(
        seconds=("seconds", "first"), mean_tau=("tau", "mean"), sd_tau=("tau", "std")
    )
    columns = ESTIMATE_COLUMNS + [c for c in ("tau_sequential",) if c in estimates]
    meta = {"trial": context.partition_key, "units": len(scores), **lineage(imagery_catalog), "fits": table_md(records.reset_index())}
    return dg.Output(estimates[columns], metadata=meta)


@dg.graph_asset(
    group_name=GROUP,
    kinds={"econml", "parquet"},
    partitions_def=trials,
    code_version=source_version(cate),
    config=shared_config(CateConfig, ("plan_cate_fits", "score_units", "fit_cate")),
)
def cate_estimates(
    rct_units: gpd.GeoDataFrame,
    imagery_catalog: pd.DataFrame,
    embeddings_tabular: pd.DataFrame,
    embeddings_image: pd.DataFrame,
    embeddings_image_sequence: pd.DataFrame,
    embeddings_image_sequence_tabular: pd.DataFrame,
):
    """Out-of-fold CATE (tau, se, interval, fold) per unit, data choice and learner, plus each unit's
    DR score ``gamma`` for evaluation.

    Every choice uses the same units and the same folds as the cross-fitted encoders (checked).
    The propensity is the design's, never estimated. DR scores come from out-of-fold outcome models
    on the richest features (image sequence + tabular), shared by all choices. Each data choice x
    learner is a step of its own, which the executor runs in parallel (processes, Celery workers).
    """
    scoring, fits = plan_cate_fits(
        rct_units, embeddings_tabular, embeddings_image, embeddings_image_sequence, embeddings_image_sequence_tabular
    )
    return assemble_cate_estimates(fits.map(fit_cate).collect(), score_units(scoring), imagery_catalog)


@dg.asset_check(
    asset="tabular_features",
    additional_ins={"rct_units": dg.AssetIn("rct_units")},
    blocking=True,
    partitions_def=trials,
    description="Arms are balanced on covariates (no Bonferroni-adjusted p < 0.001).",
)
def covariates_balanced(tabular_features: pd.DataFrame, rct_units: gpd.GeoDataFrame) -> dg.AssetCheckResult:
    """A randomization check: imbalance beyond chance means the assignment or the data is broken."""
    treatment = rct_units.set_index("unit_id").loc[tabular_features["unit_id"], "treatment"].to_numpy()
    balance = standardized_differences(tabular_features.drop(columns="unit_id"), treatment)
    imbalanced = balance.loc[balance["p_adjusted"] < 1e-3, "covariate"].tolist()
    return dg.AssetCheckResult(
        passed=not imbalanced,
        severity=dg.AssetCheckSeverity.ERROR,
        description="far beyond chance: broken data or a post-treatment variable; drop it from StudySource.covariates"
        if imbalanced
        else None,
        metadata={
            "imbalanced": ", ".join(imbalanced) or "none",
            "max_abs_smd": float(balance["smd"].abs().max()),
            "min_p_adjusted": float(balance["p_adjusted"].min()),
            "balance": table_md(balance),
        },
    )


CLUSTER_VCOV_NAMES = {
    "CR3": "CR3: clustered HC3, grf's best_linear_projection default (sandwich::vcovCL type HC3)",
    "CR1": "CR1: G/(G-1) (n-1)/(n-k), grf's vcov.type = 'HC1', statsmodels' and Stata's cluster",
}


class HeterogeneityConfig(Config):
    """Cluster-robust standard errors of the BLP test and the GATES when the trial has clusters:
    ``CR3`` (grf's default) or ``CR1`` (what this project used before, and grf's ``vcov.type = "HC1"``)."""

    cluster_vcov: Literal["CR3", "CR1"] = "CR3"


@dg.multi_asset(
    group_name=GROUP,
    partitions_def=trials,
    outs={
        "heterogeneity_evaluation": dg.AssetOut(
            kinds={"parquet"},
            description="RATE (AUTOC, Qini) with SEs and 95% intervals, the BLP calibration test with SEs, and truth metrics "
            "(PEHE, rank correlation, coverage of per-unit and of GATE intervals) per data choice and learner.",
        ),
        "rate_differences": dg.AssetOut(
            kinds={"parquet"},
            description="Paired differences in RATE between data choices under each learner, from the same half-sample draws, "
            "with 95% intervals and p-values.",
        ),
        "toc_curves": dg.AssetOut(
            kinds={"parquet"}, description="TOC at q = 5%..100% with pointwise 95% bands, per data choice and learner."
        ),
        "gates": dg.AssetOut(
            kinds={"parquet"}, description="Group ATEs by quintile of the predicted CATE with 95% intervals (the calibration plot)."
        ),
    },
)
def heterogeneity_evaluation(
    config: HeterogeneityConfig, cate_estimates: pd.DataFrame, rct_units: gpd.GeoDataFrame, study_inputs: StudyManifest
):
    """Is there heterogeneity, and which data choice finds it? Everything out of fold, from the
    shared DR scores, with half-sample bootstrap (RATE, TOC) or HC3 (BLP, GATES) uncertainty,
    clustered when the trial has clusters (half the clusters per draw; BLP and GATES with
    ``cluster_vcov``, grf's clustered HC3 by default). Per-unit CATE intervals carry variance only,
    so their coverage of the true CATE is reported beside that of the GATE intervals, which do cover."""
    truth = read_unit_truth(study_inputs.truth.units)
    clusters = rct_units.set_index("unit_id")["cluster"] if "cluster" in rct_units else None
    table, differences = evaluate_choices(
        cate_estimates, clusters, truth["tau"] if truth is not None else None, cluster_vcov=config.cluster_vcov
    )
    bands = toc_by_choice(cate_estimates, clusters)
    groups = gates_by_choice(cate_estimates, clusters, cluster_vcov=config.cluster_vcov)
    best = table.iloc[0]
    headline = differences[differences["target"] == "AUTOC"]
    yield dg.Output(
        table,
        output_name="heterogeneity_evaluation",
        metadata={
            "rate": table_md(table),
            "best": f"{best['data_choice']} / {best['learner']}: AUTOC {best['autoc']:.3f} [{best['autoc_lower']:.3f}, {best['autoc_upper']:.3f}]",
            "clustered": clusters is not None,
            "blp_standard_errors": CLUSTER_VCOV_NAMES[config.cluster_vcov] if clusters is not None else "HC3 (no clusters)",
        },
    )
    yield dg.Output(
        differences,
        output_name="rate_differences",
        metadata={"autoc_differences": table_md(headline.drop(columns="target"))},
    )
    yield dg.Output(bands, output_name="toc_curves", metadata={"toc": figure_md(toc_bands(bands), "TOC with bands")})
    yield dg.Output(
        groups,
        output_name="gates",
        metadata={
            f"calibration_{learner}": figure_md(gates_calibration(groups, learner), f"GATES {learner}")
            for learner in groups["learner"].unique()
        }
        | {"gates": table_md(groups)},
    )


@dg.asset_check(
    asset="heterogeneity_evaluation",
    partitions_def=trials,
    description="At least one data choice finds heterogeneity (sequential RATE t, or the AUTOC RATE ratio, > 1.96).",
)
def rate_is_significant(heterogeneity_evaluation: pd.DataFrame) -> dg.AssetCheckResult:
    """The best data choice's RATE against the two-sided 5% normal threshold: its cross-fitted
    sequential t (grf's rate_cv) when computed, the test whose level holds; else the pooled ratio."""
    best = heterogeneity_evaluation.iloc[0]
    test, value = heterogeneity_statistic(best)
    return dg.AssetCheckResult(
        passed=bool(value > 1.96),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "best": f"{best['data_choice']} / {best['learner']}",
            "autoc_ratio": float(best["autoc_ratio"]),
            "statistic": value,
            "test": test,
        },
    )


@dg.asset_check(
    asset="heterogeneity_evaluation",
    partitions_def=trials,
    description="Where the simulator knows the true CATE: coverage of the nominal 95% per-unit intervals and of the GATE intervals.",
)
def interval_coverage(heterogeneity_evaluation: pd.DataFrame) -> dg.AssetCheckResult:
    """Per-unit CATE intervals carry the learner's variance, not the bias of imperfect features:
    they under-cover and are for ranking, not inference on one unit. GATE intervals should cover.
    Fails (WARN) when any GATE coverage is below 60% (a group interval that misses is a real
    problem); per-unit coverage is reported, not judged. Passes with a note when there is no truth."""
    if "gates_coverage" not in heterogeneity_evaluation:
        return dg.AssetCheckResult(passed=True, metadata={"truth": "unknown: coverage cannot be checked on a real trial"})
    table = heterogeneity_evaluation[["data_choice", "learner", "unit_interval_coverage", "gates_coverage"]]
    return dg.AssetCheckResult(
        passed=bool((table["gates_coverage"] >= 0.6).all()),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "coverage": table_md(table),
            "min_unit_interval_coverage": float(table["unit_interval_coverage"].min()),
            "min_gates_coverage": float(table["gates_coverage"].min()),
        },
    )


@dg.asset(group_name=GROUP, kinds={"parquet"}, partitions_def=trials)
def ate_summary(cate_estimates: pd.DataFrame, rct_units: gpd.GeoDataFrame, study_inputs: StudyManifest, source: StudySource) -> dg.Output:
    """The ATE from the doubly robust scores with a 95% interval, beside the difference in means
    (and the true mean CATE where the simulator knows it)."""
    first = cate_estimates.drop_duplicates("unit_id")
    trial = trial_frame(rct_units, source.outcomes[0], first["unit_id"])
    truth = read_unit_truth(study_inputs.truth.units)
    table = ate_table(
        first["gamma"].to_numpy(),
        trial["outcome"].to_numpy(),
        trial["treatment"].to_numpy(),
        truth["tau"].loc[first["unit_id"]].to_numpy() if truth is not None else None,
    )
    return dg.Output(table, metadata={"ate": table_md(table), "units": len(first)})
