"""Debiasing: one wealth map, corrected once upstream (LCC, Tweedie), used by many trials."""
from pathlib import Path

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import xarray as xr
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score

from assets.ingest import simulated_truth
from assets.metadata import figure_md, table_md
from models.debias import LinearCalibrationCorrection, TweedieCorrection, diagnostics
from models.generalization import embed_places, grid_cells, grid_extent, to_grid, write_grid_geotiff
from models.many_trials import METHODS, evaluate, simulate_trials, trial_ates
from models.plots import metric_bars, raster_panels
from models.rct import locate_units, read_table
from models.training import fold_of, load_encoders, load_sequences
from pipelines.resources import ComputeResource, StorageResource

GROUP = "debiasing"
SPLITS = {0: "train", 1: "train", 2: "train", 3: "calibration", 4: "test"}


class WealthModelConfig(dg.Config):
    """Ridge on the sequence encoder's embeddings (the encoder's first model); 60/20/20 split by id."""

    seed: int = 0


@dg.multi_asset(
    group_name=GROUP,
    outs={"wealth_model": dg.AssetOut(kinds={"sklearn", "json"}), "survey_predictions": dg.AssetOut(kinds={"parquet"})},
)
def wealth_model(context: dg.AssetExecutionContext, config: WealthModelConfig, study_inputs: dict, imagery_catalog: pd.DataFrame, sequence_encoder: Path, unit_image_sequences: xr.Dataset, storage: StorageResource, compute: ComputeResource):
    """Wealth from imagery, trained on survey locations with a clean three-way split (train,
    calibration for the corrections, test for honest R^2). The model is stored as JSON coefficients."""
    if not study_inputs.get("survey_table"):
        raise ValueError("no survey table configured (StudySource.survey_table): the wealth map needs surveyed wealth")
    survey = read_table(study_inputs["survey_table"]).rename(columns={"survey_id": "unit_id"})
    if survey[["lon", "lat", "wealth"]].isna().any().any():
        raise ValueError("survey table has missing lon, lat or wealth values")
    survey, outside = locate_units(survey, imagery_catalog)
    fitted = load_encoders(sequence_encoder)
    with storage.staging() as folder:
        kept, per_model = embed_places(survey[["unit_id", "lon", "lat"]], imagery_catalog, fitted, unit_image_sequences.sizes["x"], folder, compute.torch_device())
    X, y = per_model[0], survey.set_index("unit_id").loc[kept["unit_id"], "wealth"].to_numpy()
    split = pd.Series(fold_of(kept["unit_id"].to_numpy(), 5, config.seed)).map(SPLITS).to_numpy()
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(X[split == "train"], y[split == "train"])
    prediction = ridge.predict(X)
    r2 = {s: float(r2_score(y[split == s], prediction[split == s])) for s in ("train", "calibration", "test")}
    model = {"coef": ridge.coef_.tolist(), "intercept": float(ridge.intercept_), "alpha": float(ridge.alpha_), "r2": r2, "encoder_model": 0}
    predictions = pd.DataFrame({"survey_id": kept["unit_id"], "lon": kept["lon"], "lat": kept["lat"], "wealth": y, "prediction": prediction, "split": split})
    yield dg.Output(model, output_name="wealth_model", metadata={"r2_test": r2["test"], "r2_calibration": r2["calibration"], "alpha": model["alpha"]})
    yield dg.Output(predictions, output_name="survey_predictions", metadata={"locations": len(predictions), "outside_imagery": len(outside), "splits": table_md(predictions["split"].value_counts().rename_axis("split").reset_index())})


def _ridge_predict(model: dict, X: np.ndarray) -> np.ndarray:
    return X @ np.asarray(model["coef"]) + model["intercept"]


class WealthMapConfig(dg.Config):
    step_px: int = 32


@dg.multi_asset(
    group_name=GROUP,
    outs={"wealth_map": dg.AssetOut(kinds={"geotiff"}), "unit_wealth_predictions": dg.AssetOut(kinds={"parquet"})},
)
def wealth_map(config: WealthMapConfig, wealth_model: dict, imagery_catalog: pd.DataFrame, sequence_encoder: Path, unit_image_sequences: xr.Dataset, storage: StorageResource, compute: ComputeResource):
    """Predicted wealth on a grid over the whole region (GeoTIFF, float32, nodata NaN) and at every
    trial unit: the one map that many trials can use as an outcome."""
    scene = imagery_catalog.iloc[0]
    cells, transform, shape = grid_cells(scene, config.step_px)
    fitted = load_encoders(sequence_encoder)
    chip = unit_image_sequences.sizes["x"]
    with storage.staging() as folder:
        located, per_model = embed_places(cells, imagery_catalog, fitted, chip, folder / "grid", compute.torch_device())
        grid = to_grid(_ridge_predict(wealth_model, per_model[wealth_model["encoder_model"]]), located, shape)
        path = write_grid_geotiff(folder / "wealth_map.tif", {"wealth_prediction": grid}, transform, scene["crs"])
        extent = grid_extent(transform, shape)
        yield dg.Output(path, output_name="wealth_map", metadata={"cells": int(np.prod(shape)), "cells_with_imagery": len(located), "map": figure_md(raster_panels({"predicted wealth": grid}, extent), "wealth map")})
    # trial units: their chips are already in the cube, no need to read the rasters again
    data = load_sequences(unit_image_sequences, frames=fitted.frames, stats=(fitted.band_mean, fitted.band_std))
    unit_emb = fitted.transform_each(data, compute.torch_device())[wealth_model["encoder_model"]]
    units_pred = pd.DataFrame({"unit_id": data.unit_ids.astype(str), "prediction": _ridge_predict(wealth_model, unit_emb)})
    yield dg.Output(units_pred, output_name="unit_wealth_predictions", metadata={"units": len(units_pred)})


@dg.asset(group_name=GROUP, kinds={"json"})
def wealth_corrections(survey_predictions: pd.DataFrame) -> dg.Output:
    """LCC and Tweedie's correction, fitted once on the calibration split, with the diagnostics that
    say whether a correction is warranted. Every trial reuses these: no new ground truth."""
    calib = survey_predictions[survey_predictions["split"] == "calibration"]
    pred, truth = calib["prediction"].to_numpy(), calib["wealth"].to_numpy()
    lcc, tweedie = LinearCalibrationCorrection().fit(pred, truth), TweedieCorrection().fit(pred, truth)
    diag = diagnostics(pred, truth)
    out = {"lcc": lcc.to_dict(), "tweedie": tweedie.to_dict(), "diagnostics": diag, "calibration_points": len(calib)}
    meta = {"a": lcc.a_, "b": lcc.b_, "b_se": lcc.b_se_, "sigma": tweedie.sigma_, "bandwidth": tweedie.bandwidth_, **{k: v for k, v in diag.items()}}
    return dg.Output(out, metadata={k: float(v) if not isinstance(v, bool) else v for k, v in meta.items()})


def _corrections(d: dict) -> tuple[LinearCalibrationCorrection, TweedieCorrection]:
    return LinearCalibrationCorrection.from_dict(d["lcc"]), TweedieCorrection.from_dict(d["tweedie"])


@dg.asset(group_name=GROUP, kinds={"geotiff"})
def debiased_wealth_map(wealth_map: Path, wealth_corrections: dict, storage: StorageResource):
    """The wealth map with both corrections applied once (bands: naive, lcc, tweedie)."""
    lcc, tweedie = _corrections(wealth_corrections)
    with rasterio.open(wealth_map) as src:
        naive, transform, crs = src.read(1), src.transform, src.crs.to_string()
    ok = np.isfinite(naive)
    layers = {"naive": naive, "lcc": np.where(ok, lcc.transform(np.nan_to_num(naive)), np.nan), "tweedie": np.where(ok, tweedie.transform(np.nan_to_num(naive)), np.nan)}
    with storage.staging() as folder:
        path = write_grid_geotiff(folder / "debiased_wealth_map.tif", layers, transform, crs)
        extent = grid_extent(transform, naive.shape)
        yield dg.Output(path, metadata={"sd": dg.MetadataValue.json({k: float(np.nanstd(v)) for k, v in layers.items()}), "maps": figure_md(raster_panels(layers, extent), "debiased maps")})


class TrialOutcomesConfig(dg.Config):
    """Simulated trials drawn from the survey's held-out (test) locations."""

    n_trials: int = 200
    units_per_trial: int = 150
    effect: float = 0.5
    labeled_share: float = 0.1  # PPI's extra labeled data per trial
    seed: int = 0


@dg.asset(group_name=GROUP, kinds={"parquet"})
def trial_outcomes(config: TrialOutcomesConfig, survey_predictions: pd.DataFrame, unit_wealth_predictions: pd.DataFrame, wealth_corrections: dict, rct_units: gpd.GeoDataFrame, study_inputs: dict) -> dg.Output:
    """The ATE on the wealth outcome, per trial and method (oracle, naive, LCC, Tweedie, PPI): the
    demo RCT (true effect on wealth 0: treatment does not change the imagery) plus simulated trials."""
    lcc, tweedie = _corrections(wealth_corrections)
    pool = survey_predictions[survey_predictions["split"] == "test"].rename(columns={"wealth": "truth"})
    simulated = simulate_trials(pool, lcc, tweedie, config.n_trials, config.units_per_trial, config.effect, config.labeled_share, config.seed).assign(trial=lambda d: "sim_" + d["trial"].astype(str))
    rows = [simulated]
    truth = simulated_truth(study_inputs)
    if truth is not None:
        demo = unit_wealth_predictions.merge(rct_units[["unit_id", "treatment"]], on="unit_id").merge(truth[["wealth"]].reset_index(), on="unit_id")
        labeled = np.random.default_rng(config.seed).random(len(demo)) < config.labeled_share
        ests = trial_ates(demo["wealth"].to_numpy(), demo["prediction"].to_numpy(), demo["treatment"].to_numpy(), lcc, tweedie, labeled)
        rows.append(pd.DataFrame([{"trial": "demo_rct", "method": m, "estimate": e.estimate, "std_error": e.se, "true_effect": 0.0, "covered": e.ci[0] <= 0 <= e.ci[1]} for m, e in ests.items()]))
    table = pd.concat(rows, ignore_index=True)
    return dg.Output(table, metadata={"trials": table["trial"].nunique(), "demo_rct": table_md(table[table["trial"] == "demo_rct"])})


@dg.asset(group_name=GROUP, kinds={"parquet"})
def debiasing_evaluation(trial_outcomes: pd.DataFrame, wealth_corrections: dict) -> dg.Output:
    """Bias, RMSE and CI coverage of each method over the simulated trials with a known effect.
    Naive estimates should be attenuated by about the calibration slope b; LCC and Tweedie not."""
    simulated = trial_outcomes[trial_outcomes["trial"].str.startswith("sim_")]
    summary = evaluate(simulated)
    b = wealth_corrections["lcc"]["b"]
    summary["expected_naive_estimate"] = np.where(summary["method"] == "naive", b * simulated["true_effect"].iloc[0], np.nan)
    plot = metric_bars(simulated.assign(error=simulated["estimate"] - simulated["true_effect"], group="all trials"), "error", "method", "group", "estimate - true effect (mean, sd over trials)")
    return dg.Output(summary, metadata={"evaluation": table_md(summary), "calibration_slope_b": float(b), "errors": figure_md(plot, "errors"), "methods": ", ".join(METHODS)})
