"""Generalization: the CATE model applied to a regular grid over the whole study region."""

from pathlib import Path

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd

from assets.metadata import figure_md
from models.cate import Learner, LearnerConfig, feature_matrix, fit_full
from models.design import trial_frame
from models.generalization import cate_map as predict_cate_map
from models.grid import embed_grid
from models.plots import cate_map as cate_map_figure
from models.simulate import read_unit_truth
from models.training import load_encoders
from pipelines.resources import ComputeResource, StorageResource, StudySource

GROUP = "generalization"


class CateMapConfig(dg.Config):
    """Grid spacing (pixels of the first scene; default one demo chip) and the learner."""

    step_px: int = 32
    learner: Learner = "causal_forest"
    n_estimators: int = LearnerConfig.n_estimators
    seed: int = LearnerConfig.seed


@dg.asset(group_name=GROUP, kinds={"geotiff", "econml"})
def cate_map(
    config: CateMapConfig,
    imagery_catalog: pd.DataFrame,
    rct_units: gpd.GeoDataFrame,
    sequence_encoder: Path,
    embeddings_image_sequence: pd.DataFrame,
    study_inputs: dict,
    source: StudySource,
    storage: StorageResource,
    compute: ComputeResource,
):
    """CATE on a grid over the whole region (bands: cate, extrapolation_ratio, outside_support).

    The image-sequence model is used because covariates are unknown off-trial. Each cell's chip
    sequence is read like a unit's (at the encoder's chip size), embedded by every fold encoder,
    and its predictions averaged. ``extrapolation_ratio`` > 1 (``outside_support`` = 1) marks cells
    farther from the nearest trial unit in feature space than 95% of trial units are from theirs.
    """
    trial = trial_frame(rct_units, source.outcomes[0], embeddings_image_sequence["unit_id"])
    X = feature_matrix(embeddings_image_sequence, trial["unit_id"])
    cfg = LearnerConfig(n_estimators=config.n_estimators, seed=config.seed)
    model = fit_full(config.learner, X, trial["treatment"].to_numpy(), trial["outcome"].to_numpy(), trial["propensity"].to_numpy(), cfg)
    with storage.staging() as stage:
        grid = embed_grid(imagery_catalog, load_encoders(sequence_encoder), config.step_px, stage.folder, compute.torch_device())
        result = predict_cate_map(model, X, grid)
        staged = stage.output("cate_map.tif")
        result.write(staged.path)
        tau, outside = result.layers["cate"], result.layers["outside_support"]
        truth = read_unit_truth(study_inputs["truth"].get("units"))  # the demo's true CATEs, for the plot only
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
                "cells_with_imagery": len(grid.cells),
                "share_outside_support": float(np.nanmean(outside)),
                "cate_range": dg.MetadataValue.json([float(np.nanmin(tau)), float(np.nanmax(tau))]),
                "map": figure_md(figure, "CATE map"),
            },
        )
