"""Representation: trained image and image-sequence encoders, and one embedding table per data choice."""

from typing import Literal

import dagster as dg
import geopandas as gpd
import pandas as pd
import xarray as xr

from assets.config import shared_config
from assets.metadata import figure_md
from assets.partitions import trials
from assets.retries import retry_transient_io
from models.analyst.plots import embedding_pca, training_curves
from models.ingest.chips import CHUNK_PX
from models.ingest.design import unit_clusters
from models.io.manifest import StudyManifest
from models.io.truth import dominant_landcover, read_unit_truth
from models.representation.embeddings import combine, embedding_table, prognostic_target, tabular_embeddings
from models.representation.encoders import Aggregator, Capacity, EncoderSpec
from models.representation.grid import assemble_grid, embed_square, grid_squares
from models.representation.training import (
    FittedEncoders,
    Objective,
    TrainConfig,
    fit_encoders,
    load_sequences,
    save_encoders,
    training_sample,
)
from pipelines.resources import ComputeResource, Config, CrossFittingResource, StorageResource, StudySource

GROUP = "representation"


class EncoderConfig(Config):
    """Capacity, aggregator and objective of an encoder (``random`` = untrained baseline); the
    cross-fitting folds of the ``prognostic`` objective come from the ``cross_fitting`` resource."""

    capacity: Capacity = EncoderSpec.capacity
    aggregator: Aggregator = EncoderSpec.aggregator
    objective: Objective = "contrastive"
    epochs: int = TrainConfig.epochs
    batch_size: int = TrainConfig.batch_size
    lr: float = TrainConfig.lr
    seed: int = TrainConfig.seed
    amp: bool = TrainConfig.amp
    compile: bool = TrainConfig.compile
    max_train_units: int | None = 20_000  # trained on a random sample above this; every unit is still embedded


class ImageEncoderConfig(EncoderConfig):
    """As ``EncoderConfig``, on one date: the baseline frame (default the last, pre-treatment)."""

    baseline_frame: int = -1


def _train(
    context, config: EncoderConfig, cube, compute, cross_fitting, storage, frames, target=None, extra: dict | None = None, clusters=None
):
    sample = training_sample(cube.sizes["unit"], config.max_train_units, config.seed)
    data = load_sequences(cube, frames=frames, units=sample)
    target = target if target is None or sample is None else target[sample]
    spec = EncoderSpec(in_channels=cube.sizes["band"], capacity=config.capacity, aggregator=config.aggregator)
    train = TrainConfig(
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed, amp=config.amp, compile=config.compile
    )
    log = lambda row: context.log.info(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))  # noqa: E731
    fitted = fit_encoders(
        spec,
        data,
        config.objective,
        train,
        compute.torch_device(),
        target=target,
        cross_fitting=cross_fitting.scheme(),
        frames=frames,
        log=log,
        clusters=clusters,
    )
    meta = fitted.meta
    curve = (
        figure_md(training_curves(meta["history"], f"{spec.capacity} {spec.aggregator}, {meta['objective']}"))
        if any(meta["history"])
        else dg.MetadataValue.md("_untrained (random weights)_")
    )
    with storage.staging() as stage:
        staged = stage.output("encoder.safetensors")
        save_encoders(fitted, staged.path)
        keys = ("parameters", "device", "seconds", "objective", "folds", "fold_by", "chip_size", "data_hash")
        trained = {"units_trained_on": len(data.unit_ids), "units": cube.sizes["unit"]}
        yield dg.Output(staged, metadata={**{k: meta[k] for k in keys}, **trained, "training_curve": curve, **(extra or {})})


def _train_trial(context, config: EncoderConfig, cube, units, source, compute, cross_fitting, storage, frames):
    """A trial's encoder: the prognostic target from its outcome, folds that keep its clusters whole."""
    target = prognostic_target(cube, units, source.outcomes[0]) if config.objective == "prognostic" else None
    yield from _train(context, config, cube, compute, cross_fitting, storage, frames, target=target, clusters=unit_clusters(units))


@dg.asset(group_name=GROUP, kinds={"torch", "safetensors"}, pool="gpu", partitions_def=trials, io_manager_key="encoder_io")
def sequence_encoder(
    context: dg.AssetExecutionContext,
    config: EncoderConfig,
    unit_image_sequences: xr.Dataset,
    rct_units: gpd.GeoDataFrame,
    source: StudySource,
    compute: ComputeResource,
    cross_fitting: CrossFittingResource,
    storage: StorageResource,
):
    """The trial's image-sequence encoder (per-frame CNN, temporal transformer or GRU, pooling) as
    safetensors, trained on the trial's own chips.

    Supervised (prognostic) encoders are cross-fitted: one model per fold, none trained on the
    outcomes of the units it embeds.
    """
    yield from _train_trial(context, config, unit_image_sequences, rct_units, source, compute, cross_fitting, storage, frames=None)


@dg.asset(group_name=GROUP, kinds={"torch", "safetensors"}, pool="gpu", partitions_def=trials, io_manager_key="encoder_io")
def image_encoder(
    context: dg.AssetExecutionContext,
    config: ImageEncoderConfig,
    unit_image_sequences: xr.Dataset,
    rct_units: gpd.GeoDataFrame,
    source: StudySource,
    compute: ComputeResource,
    cross_fitting: CrossFittingResource,
    storage: StorageResource,
):
    """The same architecture on a single image (the baseline frame), for image vs sequence comparisons."""
    frames = [config.baseline_frame]
    yield from _train_trial(context, config, unit_image_sequences, rct_units, source, compute, cross_fitting, storage, frames=frames)


class MapEncoderConfig(EncoderConfig):
    """As ``EncoderConfig``, for the wealth map's encoder: outcome-free (``contrastive`` or
    ``random``; no trial outcome may shape a map that every trial uses)."""

    objective: Literal["contrastive", "random"] = "contrastive"


@dg.asset(group_name=GROUP, kinds={"torch", "safetensors"}, pool="gpu", io_manager_key="encoder_io")
def map_encoder(
    context: dg.AssetExecutionContext,
    config: MapEncoderConfig,
    survey_image_sequences: xr.Dataset,
    compute: ComputeResource,
    cross_fitting: CrossFittingResource,
    storage: StorageResource,
):
    """The wealth map's image-sequence encoder, shared by every trial: trained once on the surveyed
    places' chip sequences (at their chip size), never on a trial's units or outcomes."""
    extra = {"survey_places": survey_image_sequences.sizes["unit"]}
    yield from _train(context, config, survey_image_sequences, compute, cross_fitting, storage, None, extra=extra)


def _embedding_output(
    table: pd.DataFrame, units: gpd.GeoDataFrame, study_inputs: StudyManifest, title: str, extra: dict | None = None
) -> dg.Output:
    values = table.drop(columns=[c for c in ("unit_id", "fold") if c in table]).to_numpy()
    colours = {"treatment": units.set_index("unit_id").loc[table["unit_id"], "treatment"].to_numpy()}
    truth = read_unit_truth(study_inputs.truth.units)
    if truth is not None:
        colours["land cover"] = dominant_landcover(truth, table["unit_id"])
    return dg.Output(
        table,
        metadata={
            "units": len(table),
            "dimensions": values.shape[1],
            "pca": figure_md(embedding_pca(values, colours, title), "PCA"),
            **(extra or {}),
        },
    )


def _embed(fitted: FittedEncoders, cube: xr.Dataset, units, study_inputs, compute: ComputeResource, title: str) -> dg.Output:
    table = embedding_table(fitted, cube, compute.torch_device(), clusters=unit_clusters(units))
    return _embedding_output(table, units, study_inputs, title, {"objective": fitted.objective, "parameters": fitted.meta["parameters"]})


@dg.asset(group_name=GROUP, kinds={"parquet"}, partitions_def=trials)
def embeddings_tabular(tabular_features: pd.DataFrame, rct_units: gpd.GeoDataFrame, study_inputs: StudyManifest) -> dg.Output:
    """Tabular-only representation: the covariates, standardized."""
    return _embedding_output(tabular_embeddings(tabular_features), rct_units, study_inputs, "tabular")


@dg.asset(group_name=GROUP, kinds={"parquet", "torch"}, partitions_def=trials)
def embeddings_image(
    image_encoder: FittedEncoders,
    unit_image_sequences: xr.Dataset,
    rct_units: gpd.GeoDataFrame,
    study_inputs: StudyManifest,
    compute: ComputeResource,
) -> dg.Output:
    """Single-image embeddings (baseline frame), each unit embedded by its own fold's model."""
    return _embed(image_encoder, unit_image_sequences, rct_units, study_inputs, compute, "image")


@dg.asset(group_name=GROUP, kinds={"parquet", "torch"}, partitions_def=trials)
def embeddings_image_sequence(
    sequence_encoder: FittedEncoders,
    unit_image_sequences: xr.Dataset,
    rct_units: gpd.GeoDataFrame,
    study_inputs: StudyManifest,
    compute: ComputeResource,
) -> dg.Output:
    """Image-sequence embeddings, each unit embedded by its own fold's model."""
    return _embed(sequence_encoder, unit_image_sequences, rct_units, study_inputs, compute, "image sequence")


@dg.asset(group_name=GROUP, kinds={"parquet"}, partitions_def=trials)
def embeddings_image_sequence_tabular(
    embeddings_image_sequence: pd.DataFrame, embeddings_tabular: pd.DataFrame, rct_units: gpd.GeoDataFrame, study_inputs: StudyManifest
) -> dg.Output:
    """Image-sequence embeddings and standardized covariates side by side (units present in both)."""
    table = combine(embeddings_image_sequence, embeddings_tabular)
    return _embedding_output(
        table, rct_units, study_inputs, "image sequence + tabular", {"dropped": len(embeddings_image_sequence) - len(table)}
    )


class GridConfig(Config):
    """The grid the maps are drawn on: a cell every ``step_px`` pixels of the first scene (default
    one demo chip), embedded in ``chunk_px`` squares, one step each."""

    step_px: int = 32
    chunk_px: int = CHUNK_PX


@dg.op(out=dg.DynamicOut(pd.DataFrame))
def plan_grid_squares(config: GridConfig, imagery_catalog: pd.DataFrame):
    """The grid's cells by ``chunk_px`` square of the region: one embedding step each."""
    for key, cells in grid_squares(imagery_catalog.iloc[0], config.step_px, config.chunk_px).items():
        yield dg.DynamicOutput(cells, mapping_key=key)


@dg.op
def embed_grid_square(
    context: dg.OpExecutionContext,
    cells: pd.DataFrame,
    imagery_catalog: pd.DataFrame,
    encoder: FittedEncoders,
    storage: StorageResource,
    compute: ComputeResource,
) -> pd.DataFrame:
    """One square's cells read like trial units and embedded by every fold model."""
    with retry_transient_io(context), storage.staging() as stage:
        return embed_square(cells, imagery_catalog, encoder, stage.folder, compute.torch_device())


@dg.op(out=dg.Out(io_manager_key="zarr_io"))
def assemble_grid_embeddings(config: GridConfig, squares: list[pd.DataFrame], imagery_catalog: pd.DataFrame, storage: StorageResource):
    """The squares' embeddings as one cube."""
    grid = assemble_grid(squares, imagery_catalog.iloc[0], config.step_px)
    with storage.staging() as stage:
        staged = stage.output("grid.zarr")
        grid.to_dataset().to_zarr(staged.path, mode="w", consolidated=False, zarr_format=3)
        yield dg.Output(
            staged,
            metadata={"cells": len(grid.cells), "grid_shape": dg.MetadataValue.json([int(v) for v in grid.shape]), "squares": len(squares)},
        )


def _grid_asset(name: str, encoder: str, partitions_def: dg.PartitionsDefinition | None, description: str) -> dg.AssetsDefinition:
    """A grid-embedding asset: the region's cells embedded by ``encoder``, square by square."""

    @dg.graph_asset(
        name=name,
        group_name=GROUP,
        kinds={"zarr", "torch"},
        ins={"imagery_catalog": dg.AssetIn("imagery_catalog"), "encoder": dg.AssetIn(encoder)},
        partitions_def=partitions_def,
        description=description,
        config=shared_config(GridConfig, ("plan_grid_squares", "embed_grid_square", "assemble_grid_embeddings")),
    )
    def grid(imagery_catalog: pd.DataFrame, encoder: FittedEncoders):
        squares = plan_grid_squares(imagery_catalog)
        return assemble_grid_embeddings(
            squares.map(lambda cells: embed_grid_square(cells, imagery_catalog, encoder)).collect(), imagery_catalog
        )

    return grid


_GRID = """A grid over the whole region, each cell's chip sequence read like a trial unit's (at the
encoder's chip size) and embedded by every fold model of {encoder}. Embedded square by square
(``chunk_px``), each square a separate step the executor runs in parallel. Cube dims model, cell,
feature; cells without imagery are left out; the grid's transform, shape and CRS are in the attributes."""

grid_embeddings = _grid_asset(
    "grid_embeddings",
    "sequence_encoder",
    trials,
    "The trial's grid, what its CATE map predicts from. " + _GRID.format(encoder="the trial's sequence encoder"),
)
map_grid_embeddings = _grid_asset(
    "map_grid_embeddings", "map_encoder", None, "The wealth map's grid, shared by every trial. " + _GRID.format(encoder="the map encoder")
)
