"""Generalization: the CATE model applied to a regular grid over the whole study region."""
from pathlib import Path

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd

from assets.causal import trial_frame
from assets.metadata import figure_md
from models.cate import LearnerConfig, fit_full
from models.generalization import embed_places, extrapolation_ratio, grid_cells, grid_extent, to_grid, write_grid_geotiff
from models.plots import cate_map as cate_map_figure
from models.training import load_encoders
from pipelines.resources import ComputeResource, StorageResource, StudySource

GROUP = "generalization"


class CateMapConfig(dg.Config):
    """Grid spacing (pixels of the first scene; default one chip) and the learner."""

    step_px: int = 32
    learner: str = "causal_forest"
    n_estimators: int = 200
    seed: int = 0


@dg.asset(group_name=GROUP, kinds={"geotiff", "econml"})
def cate_map(
    context: dg.AssetExecutionContext,
    config: CateMapConfig,
    imagery_catalog: pd.DataFrame,
    rct_units: gpd.GeoDataFrame,
    sequence_encoder: Path,
    embeddings_image_sequence: pd.DataFrame,
    unit_image_sequences,
    source: StudySource,
    storage: StorageResource,
    compute: ComputeResource,
):
    """CATE on a grid over the whole region (bands: cate, extrapolation_ratio, outside_support).

    The image-sequence model is used because covariates are unknown off-trial. Each cell's chip
    sequence is read like a unit's, embedded by every fold encoder, and its predictions averaged.
    ``extrapolation_ratio`` > 1 (``outside_support`` = 1) marks cells farther from the nearest trial
    unit in feature space than 95% of trial units are from theirs.
    """
    scene = imagery_catalog.iloc[0]
    cells, transform, shape = grid_cells(scene, config.step_px)
    fitted = load_encoders(sequence_encoder)
    chip = unit_image_sequences.sizes["x"]
    trial = trial_frame(rct_units, source.outcomes[0]).set_index("unit_id").loc[embeddings_image_sequence["unit_id"]]
    X = embeddings_image_sequence.drop(columns=["unit_id", "fold"]).to_numpy()
    model = fit_full(config.learner, X, trial["treatment"].to_numpy(), trial["outcome"].to_numpy(), trial["propensity"].to_numpy(), LearnerConfig(n_estimators=config.n_estimators, seed=config.seed))
    with storage.staging() as folder:
        located, per_model = embed_places(cells, imagery_catalog, fitted, chip, folder, compute.torch_device())
        tau = np.mean([model.effect(e) for e in per_model], axis=0)
        ratio = np.mean([extrapolation_ratio(X, e) for e in per_model], axis=0)
        layers = {name: to_grid(v, located, shape) for name, v in (("cate", tau), ("extrapolation_ratio", ratio), ("outside_support", (ratio > 1).astype(float)))}
        path = write_grid_geotiff(folder / "cate_map.tif", layers, transform, scene["crs"])
        extent = grid_extent(transform, shape)
        yield dg.Output(
            path,
            metadata={
                "cells": int(np.prod(shape)),
                "cells_with_imagery": len(located),
                "share_outside_support": float(np.mean(ratio > 1)),
                "cate_range": dg.MetadataValue.json([float(np.nanmin(tau)), float(np.nanmax(tau))]),
                "map": figure_md(cate_map_figure(layers["cate"], layers["outside_support"], extent, f"CATE ({config.learner}, image sequence)"), "CATE map"),
            },
        )
