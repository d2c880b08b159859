"""Representation: trained image and image-sequence encoders, and one embedding table per data choice."""

from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd
import xarray as xr

from assets.metadata import figure_md
from models.embeddings import combine, embedding_table, prognostic_target, tabular_embeddings
from models.encoders import Aggregator, Capacity, EncoderSpec
from models.plots import embedding_pca, training_curves
from models.simulate import dominant_landcover, read_unit_truth
from models.training import Objective, TrainConfig, fit_encoders, load_encoders, load_sequences, save_encoders
from pipelines.resources import ComputeResource, CrossFittingResource, StorageResource, StudySource

GROUP = "representation"


class EncoderConfig(dg.Config):
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


class ImageEncoderConfig(EncoderConfig):
    """As ``EncoderConfig``, on one date: the baseline frame (default the last, pre-treatment)."""

    baseline_frame: int = -1


def _train(context, config: EncoderConfig, cube, units, source, compute, cross_fitting, storage, frames):
    data = load_sequences(cube, frames=frames)
    spec = EncoderSpec(in_channels=cube.sizes["band"], capacity=config.capacity, aggregator=config.aggregator)
    train = TrainConfig(
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed, amp=config.amp, compile=config.compile
    )
    target = prognostic_target(cube, units, source.outcomes[0]) if config.objective == "prognostic" else None
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
        keys = ("parameters", "device", "seconds", "objective", "folds", "chip_size", "data_hash")
        yield dg.Output(staged, metadata={**{k: meta[k] for k in keys}, "training_curve": curve})


@dg.asset(group_name=GROUP, kinds={"torch", "safetensors"}, pool="gpu")
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
    """An image-sequence encoder (per-frame CNN, temporal transformer or GRU, pooling) as safetensors.

    Supervised (prognostic) encoders are cross-fitted: one model per fold, none trained on the
    outcomes of the units it embeds.
    """
    yield from _train(context, config, unit_image_sequences, rct_units, source, compute, cross_fitting, storage, frames=None)


@dg.asset(group_name=GROUP, kinds={"torch", "safetensors"}, pool="gpu")
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
    yield from _train(
        context, config, unit_image_sequences, rct_units, source, compute, cross_fitting, storage, frames=[config.baseline_frame]
    )


def _embedding_output(table: pd.DataFrame, units: gpd.GeoDataFrame, study_inputs: dict, title: str, extra: dict | None = None) -> dg.Output:
    values = table.drop(columns=[c for c in ("unit_id", "fold") if c in table]).to_numpy()
    colours = {"treatment": units.set_index("unit_id").loc[table["unit_id"], "treatment"].to_numpy()}
    truth = read_unit_truth(study_inputs["truth"].get("units"))
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


def _embed(encoder_path: Path, cube: xr.Dataset, units, study_inputs, compute: ComputeResource, title: str) -> dg.Output:
    fitted = load_encoders(encoder_path)
    table = embedding_table(fitted, cube, compute.torch_device())
    return _embedding_output(table, units, study_inputs, title, {"objective": fitted.objective, "parameters": fitted.meta["parameters"]})


@dg.asset(group_name=GROUP, kinds={"parquet"})
def embeddings_tabular(tabular_features: pd.DataFrame, rct_units: gpd.GeoDataFrame, study_inputs: dict) -> dg.Output:
    """Tabular-only representation: the covariates, standardized."""
    return _embedding_output(tabular_embeddings(tabular_features), rct_units, study_inputs, "tabular")


@dg.asset(group_name=GROUP, kinds={"parquet", "torch"})
def embeddings_image(
    image_encoder: Path, unit_image_sequences: xr.Dataset, rct_units: gpd.GeoDataFrame, study_inputs: dict, compute: ComputeResource
) -> dg.Output:
    """Single-image embeddings (baseline frame), each unit embedded by its own fold's model."""
    return _embed(image_encoder, unit_image_sequences, rct_units, study_inputs, compute, "image")


@dg.asset(group_name=GROUP, kinds={"parquet", "torch"})
def embeddings_image_sequence(
    sequence_encoder: Path, unit_image_sequences: xr.Dataset, rct_units: gpd.GeoDataFrame, study_inputs: dict, compute: ComputeResource
) -> dg.Output:
    """Image-sequence embeddings, each unit embedded by its own fold's model."""
    return _embed(sequence_encoder, unit_image_sequences, rct_units, study_inputs, compute, "image sequence")


@dg.asset(group_name=GROUP, kinds={"parquet"})
def embeddings_image_sequence_tabular(
    embeddings_image_sequence: pd.DataFrame, embeddings_tabular: pd.DataFrame, rct_units: gpd.GeoDataFrame, study_inputs: dict
) -> dg.Output:
    """Image-sequence embeddings and standardized covariates side by side (units present in both)."""
    table = combine(embeddings_image_sequence, embeddings_tabular)
    return _embedding_output(
        table, rct_units, study_inputs, "image sequence + tabular", {"dropped": len(embeddings_image_sequence) - len(table)}
    )
