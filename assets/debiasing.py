"""Debiasing: one wealth map, corrected once upstream (LCC, Tweedie), used by many trials."""

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from assets.metadata import figure_md, lineage, source_version, table_md
from assets.partitions import trials
from models.analyst.plots import bias_by_response, estimate_distributions, metric_bars, raster_panels, wealth_calibration
from models.debiasing import corrections, imagery_study, trial_effects, trust
from models.debiasing.corrections import (
    DEBIASED_MAP_PURPOSE,
    BandwidthRule,
    TweedieCorrection,
    corrections_from_dict,
    debias_map,
    per_place_rmse,
)
from models.debiasing.imagery_study import PostTreatmentImagery, survey_pool_trials
from models.debiasing.trial_effects import (
    METHODS,
    CalibrationDraws,
    TrialDesign,
    TweedieDensity,
    evaluate,
    observed_trial,
    response_ratios,
    simulate_trials,
)
from models.debiasing.trust import CorrectionDiagnostics, corrections_disagreement, fit_corrections, measured_wealth, trial_diagnostics
from models.debiasing.wealth_map import WealthModel, fit_on_survey, predict_map, predict_places, survey_places
from models.ingest.units import MEASURED_WEALTH
from models.io.manifest import StudyManifest
from models.io.rasters import Raster
from models.io.tables import read_table
from models.io.truth import read_unit_truth
from models.representation import grid as grid_source
from models.representation.grid import GridEmbedding, GridMap
from models.representation.training import FittedEncoders
from pipelines.resources import ComputeResource, Config, StorageResource

GROUP = "debiasing"


class WealthModelConfig(Config):
    """Ridge on the map encoder's embeddings; 60/20/20 split by id."""

    seed: int = WealthModel.seed


@dg.multi_asset(
    group_name=GROUP,
    outs={
        "wealth_model": dg.AssetOut(
            kinds={"sklearn", "json"}, description="Ridge coefficients on the map encoder's embeddings, alpha and R^2 per split (JSON)."
        ),
        "survey_predictions": dg.AssetOut(
            kinds={"parquet"}, description="Predicted and surveyed wealth at every survey place, with its train / calibration / test split."
        ),
    },
)
def wealth_model(
    config: WealthModelConfig,
    study_inputs: StudyManifest,
    imagery_catalog: pd.DataFrame,
    survey_image_sequences: xr.Dataset,
    map_encoder: FittedEncoders,
    compute: ComputeResource,
):
    """Wealth from imagery, trained on survey locations with a clean three-way split (train,
    calibration for the corrections, test for honest R^2). The model is stored as JSON coefficients."""
    if not study_inputs.survey_table:
        raise ValueError("no survey table configured (StudySource.survey_table): the wealth map needs surveyed wealth")
    survey = read_table(study_inputs.survey_table, field="StudySource.survey_table")
    places, outside = survey_places(survey, imagery_catalog)
    model, predictions = fit_on_survey(places, survey_image_sequences, map_encoder, compute.torch_device(), config.seed)
    yield dg.Output(
        model.to_dict(),
        output_name="wealth_model",
        metadata={"r2_test": model.r2_["test"], "r2_calibration": model.r2_["calibration"], "alpha": model.alpha_},
    )
    splits = table_md(predictions["split"].value_counts().rename_axis("split").reset_index())
    yield dg.Output(
        predictions,
        output_name="survey_predictions",
        metadata={
            "locations": len(predictions),
            "outside_imagery": len(outside),
            "splits": splits,
            "calibration_plot": figure_md(wealth_calibration(predictions), "predicted vs surveyed"),
        },
    )


@dg.asset(group_name=GROUP, kinds={"geotiff"}, io_manager_key="geotiff_io")
def wealth_map(wealth_model: dict, map_grid_embeddings: xr.Dataset, storage: StorageResource):
    """The one map that many trials can use as an outcome: predicted wealth on a grid over the whole
    region (GeoTIFF, float32, nodata NaN), from the map encoder's grid (``map_grid_embeddings``)."""
    with storage.staging() as stage:
        result = predict_map(WealthModel.from_dict(wealth_model), GridEmbedding.from_dataset(map_grid_embeddings))
        staged = stage.output("wealth_map.tif")
        result.write(staged.path)
        grid = result.layers["wealth_prediction"]
        figure = figure_md(raster_panels({"predicted wealth": grid}, result.extent, crs=result.crs, label="wealth index"), "wealth map")
        yield dg.Output(staged, metadata={"cells": grid.size, "cells_with_imagery": int(np.isfinite(grid).sum()), "map": figure})


class WealthCorrectionsConfig(Config):
    """Tweedie's KDE bandwidth: ``scott`` (scipy's default, the source study's) or ``silverman_derivative``."""

    bandwidth: BandwidthRule = TweedieCorrection().bandwidth


# Trial outcomes follow the map: a new wealth model or new corrections re-run them (and their
# evaluation) once every upstream is fresh, unless a blocking check upstream failed (an unbalanced
# trial, corrections not warranted): the daemon's automation sensor evaluates this.
FOLLOW_THE_MAP = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()


@dg.asset(group_name=GROUP, kinds={"json"}, code_version=source_version(corrections, trust))
def wealth_corrections(config: WealthCorrectionsConfig, survey_predictions: pd.DataFrame) -> dg.Output:
    """LCC and Tweedie's correction, fitted once on the calibration split, with the diagnostics that
    say whether a correction is warranted and which one to trust (cross-fitted held-out effect
    slopes, the overshoot flag, the prediction density's shape). Every trial reuses these: no new
    ground truth."""
    out = fit_corrections(survey_predictions[survey_predictions["split"] == "calibration"], config.bandwidth)
    lcc, tweedie, trusted = out["lcc"], out["tweedie"], CorrectionDiagnostics.from_dict(out["trust"])
    meta = {
        "a": lcc["a"],
        "b": lcc["b"],
        "b_se": lcc["b_se"],
        "sigma": tweedie["sigma"],
        "bandwidth": tweedie["bandwidth"],
        **out["diagnostics"],
        "variance_inflation": trusted.variance_inflation,
        "skewness": trusted.skewness,
        "excess_kurtosis": trusted.excess_kurtosis,
    }
    meta = {k: v if isinstance(v, bool) else float(v) for k, v in meta.items()}
    return dg.Output(
        out,
        metadata=meta
        | {
            "favoured_correction": trusted.favoured,
            "trust": dg.MetadataValue.md(trusted.verdict),
            "heldout_effect_slopes": table_md(trusted.table()),
        },
    )


@dg.asset_check(asset=wealth_corrections, blocking=True, description="The calibration split shows attenuation worth correcting.")
def correction_warranted(wealth_corrections: dict) -> dg.AssetCheckResult:
    """Blocks trial outcomes when the map is not measurably shrunk (the upper 95% bound of the slope
    of prediction on truth reaches 0.95 and the variance ratio is at least 0.9): a correction would
    then only add noise."""
    diagnostics = wealth_corrections["diagnostics"]
    return dg.AssetCheckResult(
        passed=bool(diagnostics["correction_warranted"]),
        metadata={k: v if isinstance(v, bool) else float(v) for k, v in diagnostics.items()},
    )


@dg.asset_check(asset=wealth_corrections, description="LCC and Tweedie agree on held-out places, and neither is red-flagged.")
def corrections_agree(wealth_corrections: dict) -> dg.AssetCheckResult:
    """Warns when the cross-fitted held-out effect slopes of LCC and Tweedie differ (by more than
    0.1 per unit of effect and beyond their 95% interval), or when the map is strongly shrunk with a
    skewed density (Tweedie's overshoot case). The page names the correction the diagnostics favour."""
    trusted = CorrectionDiagnostics.from_dict(wealth_corrections["trust"])
    return dg.AssetCheckResult(
        passed=trusted.agree and not trusted.overshoot_risk,
        severity=dg.AssetCheckSeverity.WARN,
        description=trusted.verdict,
        metadata={
            "favoured": trusted.favoured,
            "disagreement": trusted.disagreement,
            "disagreement_se": trusted.disagreement_se,
            "overshoot_risk": trusted.overshoot_risk,
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"geotiff"},
    io_manager_key="geotiff_io",
    code_version=source_version(corrections, grid_source),
    automation_condition=FOLLOW_THE_MAP,
)
def debiased_wealth_map(wealth_map: Raster, wealth_corrections: dict, survey_predictions: pd.DataFrame, storage: StorageResource):
    """The wealth map with both corrections applied once (bands: naive, lcc, tweedie), for effect
    estimation, not for reading one place's wealth (``use`` in the metadata and the GeoTIFF's
    PURPOSE tag): the per-place RMSE on the survey's held-out places is in the metadata."""
    naive = GridMap.read(wealth_map.path)
    corrections = corrections_from_dict(wealth_corrections)
    result = GridMap(debias_map(naive.layers["wealth_prediction"], *corrections), naive.transform, naive.crs)
    test = survey_predictions[survey_predictions["split"] == "test"]
    rmse = per_place_rmse(test["prediction"].to_numpy(), test["wealth"].to_numpy(), *corrections)
    with storage.staging() as stage:
        staged = stage.output("debiased_wealth_map.tif")
        result.write(staged.path, tags={"PURPOSE": DEBIASED_MAP_PURPOSE})
        sd = {k: float(np.nanstd(v)) for k, v in result.layers.items()}
        yield dg.Output(
            staged,
            metadata={
                "use": dg.MetadataValue.md(f"**{DEBIASED_MAP_PURPOSE}**"),
                "per_place_rmse_test": table_md(pd.DataFrame({"band": list(rmse), "rmse_vs_survey": list(rmse.values())})),
                "sd": dg.MetadataValue.json(sd),
                "maps": figure_md(raster_panels(result.layers, result.extent, crs=result.crs, label="wealth index"), "debiased maps"),
            },
        )


@dg.asset(
    group_name=GROUP,
    kinds={"parquet"},
    partitions_def=trials,
    code_version=source_version(corrections, grid_source),
    automation_condition=FOLLOW_THE_MAP,
)
def unit_wealth_predictions(
    context: dg.AssetExecutionContext,
    wealth_model: dict | None,
    wealth_corrections: dict | None,
    map_encoder: FittedEncoders | None,
    rct_units: gpd.GeoDataFrame,
    imagery_catalog: pd.DataFrame,
    survey_predictions: pd.DataFrame | None,
    study_inputs: StudyManifest,
    storage: StorageResource,
    compute: ComputeResource,
) -> dg.Output:
    """The trial's debiased outcomes: the shared map's predicted wealth at every unit (from the
    unit's chips at the map encoder's chip size), naive and with each correction (columns
    ``prediction``, ``lcc``, ``tweedie``). A new map or new corrections re-run every trial's.
    Without a survey (so without a map) the table is empty and ``skipped`` says why."""
    if skipped := _no_map(study_inputs, wealth_model, wealth_corrections, map_encoder, survey_predictions):
        return _skipped(context, skipped, {"unit_id": "object", "prediction": "float64", "lcc": "float64", "tweedie": "float64"})
    places = pd.DataFrame(rct_units[["unit_id", "lon", "lat"]])
    with storage.staging() as stage:
        table = predict_places(
            WealthModel.from_dict(wealth_model), map_encoder, places, imagery_catalog, stage.folder, compute.torch_device()
        )
    layers = debias_map(table["prediction"].to_numpy(), *corrections_from_dict(wealth_corrections))
    table = table.assign(lcc=layers["lcc"], tweedie=layers["tweedie"])
    calibration = survey_predictions.loc[survey_predictions["split"] == "calibration", "survey_id"]
    return dg.Output(table, metadata={"trial": context.partition_key, "units": len(table), **lineage(imagery_catalog, calibration)})


def _no_map(study_inputs: StudyManifest, *shared) -> str | None:
    """Why a trial's debiasing cannot run (no survey, or the shared map not materialized yet), or None."""
    if reason := study_inputs.without_survey:
        return reason
    if any(value is None for value in shared):
        return "debiasing skipped: the shared wealth map and its corrections have not been materialized; run map_job first"
    return None


def _skipped(context: dg.AssetExecutionContext, reason: str, columns: dict[str, str]) -> dg.Output:
    """An empty table with the asset's columns (name -> dtype), and the reason on the asset page and in the log."""
    context.log.warning(f"trial {context.partition_key}: {reason}")
    empty = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})
    return dg.Output(empty, metadata={"skipped": reason, "units": 0})


def _calibration_draws(survey_predictions: pd.DataFrame, design: TrialDesign, tweedie: TweedieCorrection):
    """The calibration split and the corrections refitted on its bootstrap resamples: what puts the
    calibration step's error into a corrected ATE's interval."""
    calibration = survey_predictions[survey_predictions["split"] == "calibration"]
    draws = CalibrationDraws.fit(
        calibration["prediction"].to_numpy(), calibration["wealth"].to_numpy(), design.calibration_boot, design.seed, tweedie.bandwidth
    )
    return calibration, draws


class WealthEffectsConfig(Config):
    """PPI's labelled share (where the truth is known), the calibration resamples in the corrected
    intervals, and the density Tweedie's correction uses."""

    labeled_share: float = TrialDesign.labeled_share
    tweedie_density: TweedieDensity = TrialDesign.tweedie_density
    calibration_boot: int = TrialDesign.calibration_boot
    seed: int = TrialDesign.seed


@dg.asset(
    group_name=GROUP,
    kinds={"parquet"},
    partitions_def=trials,
    code_version=source_version(corrections, trial_effects),
    automation_condition=FOLLOW_THE_MAP,
)
def wealth_effects(
    context: dg.AssetExecutionContext,
    config: WealthEffectsConfig,
    unit_wealth_predictions: pd.DataFrame,
    rct_units: gpd.GeoDataFrame,
    wealth_corrections: dict | None,
    survey_predictions: pd.DataFrame | None,
    imagery_catalog: pd.DataFrame,
    study_inputs: StudyManifest,
) -> dg.Output:
    """The trial's ATE on mapped wealth by naive use, LCC and Tweedie (intervals include the
    calibration step); where the simulator knows each unit's wealth, the oracle and PPI++ on a
    labelled share; where the trial table has a ``wealth`` column (measured for some units), PPI++
    on those labels, the honest default then. The page says which method to use and why
    (``verdict``), the trial's diagnostics (support, LCC vs Tweedie against the trial's SE) and the
    label budget (labels PPI++ needs for each method's interval width). On the demo the true effect
    on wealth is 0: treatment does not change the imagery. Without a survey the table is empty and
    ``skipped`` says why."""
    if skipped := _no_map(
        study_inputs, unit_wealth_predictions if len(unit_wealth_predictions) else None, wealth_corrections, survey_predictions
    ):
        return _skipped(
            context,
            skipped,
            {
                "trial": "object",
                "method": "object",
                "estimate": "float64",
                "std_error": "float64",
                "labels": "int64",
                "true_effect": "float64",
                "covered": "bool",
            },
        )
    lcc, tweedie = corrections_from_dict(wealth_corrections)
    design = TrialDesign(**config.model_dump())
    calibration, draws = _calibration_draws(survey_predictions, design, tweedie)
    units = unit_wealth_predictions.merge(rct_units.drop(columns="geometry"), on="unit_id")
    wealth, true_effect = _unit_wealth(units, study_inputs)
    table = observed_trial(
        context.partition_key,
        wealth,
        units["prediction"].to_numpy(),
        units["treatment"].to_numpy(),
        lcc,
        tweedie,
        design,
        true_effect=true_effect,
        draws=draws,
        clusters=units["cluster"].to_numpy() if "cluster" in units else None,
    )
    diagnostics = trial_diagnostics(unit_wealth_predictions, table, wealth_corrections)
    meta = {
        "trial": context.partition_key,
        "effects": table_md(table),
        **diagnostics.metadata(),
        "verdict": dg.MetadataValue.md(f"**{diagnostics.verdict}**"),
        "label_budget": table_md(diagnostics.budget),
        **lineage(imagery_catalog, calibration["survey_id"]),
    }
    return dg.Output(table, metadata=meta)


def _unit_wealth(units: pd.DataFrame, study_inputs: StudyManifest) -> tuple[np.ndarray | None, float]:
    """Each unit's wealth where it is known, and the true effect on it: the simulator's truth (the
    demo's treatment does not change the imagery: true effect 0), else a ``wealth`` column of the
    trial table (measured for some units, empty elsewhere: PPI++'s labels; effect unknown)."""
    truth = read_unit_truth(study_inputs.truth.units)
    if truth is not None:
        return truth.loc[units["unit_id"], "wealth"].to_numpy(), 0.0
    if MEASURED_WEALTH in units:
        return measured_wealth(units), np.nan
    return None, np.nan


@dg.asset_check(
    asset=wealth_effects,
    partitions_def=trials,
    description="LCC's and Tweedie's ATEs differ by less than the trial's standard error.",
)
def corrections_agree_in_trial(wealth_effects: pd.DataFrame) -> dg.AssetCheckResult:
    """Warns when the two corrections' ATEs on this trial differ by more than the smaller of their
    standard errors: the choice of correction then changes the answer, and the map-level diagnostics
    (or PPI++ with labels) must decide. Passes with a note when debiasing was skipped."""
    if wealth_effects.empty:
        return dg.AssetCheckResult(passed=True, metadata={"skipped": "no debiased outcomes for this trial"})
    difference, trial_se = corrections_disagreement(wealth_effects)
    return dg.AssetCheckResult(
        passed=abs(difference) <= trial_se,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"lcc_tweedie_difference": difference, "trial_se": trial_se},
    )


class TrialOutcomesConfig(Config):
    """Simulated trials drawn from the survey's held-out (test) locations."""

    n_trials: int = TrialDesign.n_trials
    units_per_trial: int = TrialDesign.units_per_trial
    effects: list[float] = list(TrialDesign.effects)
    labeled_share: float = TrialDesign.labeled_share
    tweedie_density: TweedieDensity = TrialDesign.tweedie_density
    calibration_boot: int = TrialDesign.calibration_boot
    seed: int = TrialDesign.seed


@dg.asset(
    group_name=GROUP,
    kinds={"parquet"},
    code_version=source_version(corrections, trial_effects, imagery_study),
    automation_condition=FOLLOW_THE_MAP,
)
def trial_outcomes(
    context: dg.AssetExecutionContext,
    config: TrialOutcomesConfig,
    survey_predictions: pd.DataFrame,
    wealth_corrections: dict,
    wealth_model: dict,
    map_encoder: FittedEncoders,
    imagery_catalog: pd.DataFrame,
    study_inputs: StudyManifest,
    storage: StorageResource,
    compute: ComputeResource,
) -> dg.Output:
    """The ATE on the wealth outcome, per trial and method (oracle, naive, LCC, Tweedie, PPI), over
    simulated trials drawn from the survey's held-out places with several true effects: where the
    simulator wrote post-treatment imagery, treated units' outcomes are the map's predictions from
    it (``response = "imagery"``); the linear shortcut (predictions moved by the
    calibration slope times the effect) is kept as a labelled sensitivity analysis. Each real
    trial's own effects are ``wealth_effects``. Corrected ATEs' intervals
    include the calibration step (``calibration_boot`` resamples); cluster-robust with clusters."""
    lcc, tweedie = corrections_from_dict(wealth_corrections)
    design = TrialDesign(**config.model_dump() | {"effects": tuple(config.effects)})
    calibration, draws = _calibration_draws(survey_predictions, design, tweedie)
    test = survey_predictions[survey_predictions["split"] == "test"]
    rows = [simulate_trials(test.rename(columns={"wealth": "truth"}), lcc, tweedie, design, draws)]
    post_treatment = study_inputs.truth.post_treatment
    for imagery in PostTreatmentImagery.read(post_treatment) if post_treatment else ():
        if left_out := [e for e in design.effects if e != 0 and e not in imagery.scenes]:
            context.log.warning(f"{imagery.setting}: no post-treatment imagery for effects {left_out}; they are left out")
        with storage.staging() as stage:
            rows.append(
                survey_pool_trials(
                    test,
                    imagery_catalog,
                    imagery,
                    map_encoder,
                    WealthModel.from_dict(wealth_model),
                    lcc,
                    tweedie,
                    design,
                    draws,
                    stage.folder,
                    compute.torch_device(),
                )
            )
    rows = [r.assign(trial="sim_" + r["response"].str.replace(r"\W+", "_", regex=True) + "_" + r["trial"].astype(str)) for r in rows]
    table = pd.concat(rows, ignore_index=True)
    return dg.Output(
        table,
        metadata={
            "trials": table["trial"].nunique(),
            "responses": ", ".join(table["response"].unique()),
            **lineage(imagery_catalog, calibration["survey_id"]),
            "calibration_slope_b": float(lcc.b_),
        },
    )


@dg.asset(group_name=GROUP, kinds={"parquet"}, code_version=source_version(trial_effects), automation_condition=FOLLOW_THE_MAP)
def debiasing_evaluation(trial_outcomes: pd.DataFrame, wealth_corrections: dict) -> dg.Output:
    """Bias, RMSE and CI coverage of each method per true effect over the simulated trials, and each
    method's slope of estimated on true effect, per response setting (how the treatment reaches the
    map: each simulator change setting, and the linear shortcut). ``response_ratio`` is the map's
    treatment response (the naive slope) over its calibration slope b: LCC and Tweedie assume 1, and
    the plot shows their bias as the ratio falls. Naive estimates are attenuated by about b times
    the ratio; LCC and Tweedie by the ratio."""
    simulated = trial_outcomes[trial_outcomes["trial"].str.startswith("sim_")]
    summary = evaluate(simulated)
    b = wealth_corrections["lcc"]["b"]
    summary["response_ratio"] = summary["response"].map(response_ratios(summary, b))
    summary["expected_naive_estimate"] = np.where(summary["method"] == "naive", b * summary["true_effect"], np.nan)
    largest = simulated["true_effect"].max()
    errors = simulated[simulated["true_effect"] == largest].assign(error=lambda t: t["estimate"] - t["true_effect"])
    plot = metric_bars(errors, "error", "response", "method", f"estimate - true effect at effect {largest:+.2f} (mean, sd over trials)")
    distributions = figure_md(estimate_distributions(simulated), "trial estimates by method")
    slopes = summary.drop_duplicates(["response", "method"]).pivot(index="response", columns="method", values="slope")
    slopes = slopes.assign(response_ratio=slopes.index.map(response_ratios(summary, b))).reset_index()
    return dg.Output(
        summary,
        metadata={
            "evaluation": table_md(summary),
            "slopes": table_md(slopes),
            "calibration_slope_b": float(b),
            "bias_by_response": figure_md(bias_by_response(summary), "bias vs the map's treatment response"),
            "errors": figure_md(plot, "errors"),
            "estimates": distributions,
            "methods": ", ".join(METHODS),
        },
    )
