"""Generalization: the CATE model applied to a regular grid over the whole study region."""

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from assets.metadata import figure_md
from assets.partitions import trials
from models.analyst.plots import cate_map as cate_map_figure
from models.causal.cate import Learner, LearnerConfig, feature_matrix, fit_full
from models.generalization.prediction import cate_map as predict_cate_map
from models.generalization.prediction import training_sample
from models.ingest.design import cluster_groups, trial_frame
from models.io.manifest import StudyManifest
from models.io.truth import read_unit_truth
from models.representation.grid import GridEmbedding
from pipelines.resources import Config, StorageResource, StudySource

GROUP = "generalization"


class CateMapConfig(Config):
    """The learner (the grid is ``grid_embeddings``'s), and at most how many trial units it is
    fitted on (a seeded sample of whole clusters above that; 0 = every unit)."""

    learner: Learner = "causal_forest"
    n_estimators: int = LearnerConfig.n_estimators
    max_fit_units: int = 100_000  # all 100,000 units: 248 s, PEHE 0.167; a 20,000 sample: 39 s, 0.239 (benchmarks/results/cate_100k.json)
    seed: int = LearnerConfig.seed


@dg.asset(group_name=GROUP, kinds={"geotiff", "econml"}, partitions_def=trials, io_manager_key="geotiff_io")
def cate_map(
    config: CateMapConfig,
    grid_embeddings: xr.Dataset,
    rct_units: gpd.GeoDataFrame,
    embeddings_image_sequence: pd.DataFrame,
    study_inputs: StudyManifest,
    source: StudySource,
    storage: StorageResource,
):
    """CATE on a grid over the whole region (bands: cate, extrapolation_ratio, outside_support).

    The image-sequence model is used because covariates are unknown off-trial. Each cell of
    ``grid_embeddings`` is embedded by every fold encoder, and its predictions averaged.
    ``extrapolation_ratio`` > 1 (``outside_support`` = 1) marks cells farther from the nearest
    trial unit in feature space than 95% of trial units are from theirs. Above ``max_fit_units``
    the model is fitted on a sample (``fit_units``); the extrapolation measure uses every unit.
    """
    trial = trial_frame(rct_units, source.outcomes[0], embeddings_image_sequence["unit_id"])
    X = feature_matrix(embeddings_image_sequence, trial["unit_id"])
    cfg = LearnerConfig(n_estimators=config.n_estimators, seed=config.seed)
    rows = training_sample(len(trial), config.max_fit_units, config.seed, cluster_groups(trial))
    fit = trial.iloc[rows]
    T, Y, propensity = (fit[c].to_numpy() for c in ("treatment", "outcome", "propensity"))
    model = fit_full(config.learner, X[rows], T, Y, propensity, cfg, cluster_groups(fit))
    with storage.staging() as stage:
        grid = GridEmbedding.from_dataset(grid_embeddings)
        result = predict_cate_map(model, X, grid)
        staged = stage.output("cate_map.tif")
        result.write(staged.path)
        tau, outside = result.layers["cate"], result.layers["outside_support"]
        truth = read_unit_truth(study_inputs.truth.units)  # the demo's true CATEs, for the plot only
        figure = cate_map_figure(
            tau,
            outside,
            result.extent,
            f"CATE ({config.learner}, image sequence)",
            units=rct_units,
            crs=result.crs,
            truth=None if truth is None else truth["tau"],
        )
        yield dg.Output(
            staged,
            metadata={
                "cells": tau.size,
                "fit_units": len(fit),
                "cells_with_imagery": len(grid.cells),
                "share_outside_support": float(np.nanmean(outside)),
                "cate_range": dg.MetadataValue.json([float(np.nanmin(tau)), float(np.nanmax(tau))]),
                "map": figure_md(figure, "CATE map"),
            },
        )
