"""Representation: trained image and image-sequence encoders, and one embedding table per data choice."""
from pathlib import Path
from typing import Literal

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from assets.ingest import simulated_truth
from assets.metadata import figure_md
from models.encoders import EncoderSpec
from models.plots import embedding_pca, training_curves
from models.rct import standardize
from models.training import FittedEncoders, TrainConfig, fit_encoders, load_encoders, load_sequences, save_encoders
from pipelines.resources import ComputeResource, StorageResource, StudySource

GROUP = "representation"


class EncoderConfig(dg.Config):
    """Capacity, aggregator and objective of an encoder (``random`` = untrained baseline)."""

    capacity: Literal["small", "medium", "large"] = "small"
    aggregator: Literal["transformer", "gru"] = "transformer"
    objective: Literal["contrastive", "prognostic", "random"] = "contrastive"
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    folds: int = 5  # cross-fitting folds for the supervised (prognostic) objective
    seed: int = 0
    amp: bool = True
    compile: bool = False


class ImageEncoderConfig(EncoderConfig):
    """As ``EncoderConfig``, on one date: the baseline frame (default the last, pre-treatment)."""

    baseline_frame: int = -1


def _prognostic_target(cube: xr.Dataset, units: gpd.GeoDataFrame, outcome: str) -> np.ndarray:
    """The outcome of control units (NaN for treated ones), in cube order."""
    table = pd.DataFrame(units.drop(columns="geometry")).set_index("unit_id").reindex(cube["unit"].values.tolist())
    return np.where(table["treatment"].to_numpy() == 0, table[outcome].to_numpy(dtype=float), np.nan)


def _train(context, config: EncoderConfig, cube, units, source, compute, storage, frames):
    device = compute.torch_device()
    data = load_sequences(cube, frames=frames)
    spec = EncoderSpec(in_channels=cube.sizes["band"], capacity=config.capacity, aggregator=config.aggregator)
    train = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed, amp=config.amp, compile=config.compile)
    target = _prognostic_target(cube, units, source.outcomes[0]) if config.objective == "prognostic" else None
    log = lambda row: context.log.info(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))  # noqa: E731
    fitted = fit_encoders(spec, data, config.objective, train, device, target=target, folds=config.folds, frames=frames, log=log)
    with storage.staging() as folder:
        path = save_encoders(fitted, folder / "encoder.safetensors")
        meta = fitted.meta
        yield dg.Output(
            path,
            metadata={
                "parameters": meta["parameters"],
                "device": meta["device"],
                "seconds": meta["seconds"],
                "objective": meta["objective"],
                "folds": meta["folds"],
                "data_hash": meta["data_hash"],
                "training_curve": figure_md(training_curves(meta["history"], f"{spec.capacity} {spec.aggregator}, {meta['objective']}")) if any(meta["history"]) else dg.MetadataValue.md("_untrained (random weights)_"),
            },
        )


@dg.asset(group_name=GROUP, kinds={"torch", "safetensors"}, pool="gpu")
def sequence_encoder(context: dg.AssetExecutionContext, config: EncoderConfig, unit_image_sequences: xr.Dataset, rct_units: gpd.GeoDataFrame, source: StudySource, compute: ComputeResource, storage: StorageResource):
    """An image-sequence encoder (per-frame CNN, temporal transformer or GRU, pooling) as safetensors.

    Supervised (prognostic) encoders are cross-fitted: one model per fold, none trained on the
    outcomes of the units it embeds.
    """
    yield from _train(context, config, unit_image_sequences, rct_units, source, compute, storage, frames=None)


@dg.asset(group_name=GROUP, kinds={"torch", "safetensors"}, pool="gpu")
def image_encoder(context: dg.AssetExecutionContext, config: ImageEncoderConfig, unit_image_sequences: xr.Dataset, rct_units: gpd.GeoDataFrame, source: StudySource, compute: ComputeResource, storage: StorageResource):
    """The same architecture on a single image (the baseline frame), for image vs sequence comparisons."""
    yield from _train(context, config, unit_image_sequences, rct_units, source, compute, storage, frames=[config.baseline_frame])


def _embedding_frame(unit_ids, values: np.ndarray, prefix: str) -> pd.DataFrame:
    cols = {f"{prefix}{i:03d}": values[:, i].astype(np.float32) for i in range(values.shape[1])}
    return pd.DataFrame({"unit_id": np.asarray(unit_ids, dtype=str), **cols})


def _true_landcover(study_inputs: dict, unit_ids) -> np.ndarray | None:
    """Dominant true land-cover class at the last date, where the simulator's truth exists (plots only)."""
    truth = simulated_truth(study_inputs)
    if truth is None:
        return None
    truth = truth.reindex(list(unit_ids))
    cols = [c for c in truth.columns if c.startswith("frac_") and c.endswith("_last")]
    return np.array([int(c.split("_")[1]) for c in cols])[np.argmax(truth[cols].to_numpy(), axis=1)]


def _embedding_output(table: pd.DataFrame, units: gpd.GeoDataFrame, study_inputs: dict, title: str, extra: dict | None = None) -> dg.Output:
    values = table.drop(columns=[c for c in ("unit_id", "fold") if c in table]).to_numpy()
    arms = units.set_index("unit_id").loc[table["unit_id"], "treatment"].to_numpy()
    colours = {"treatment": arms}
    landcover = _true_landcover(study_inputs, table["unit_id"])
    if landcover is not None:
        colours["land cover"] = landcover
    return dg.Output(table, metadata={"units": len(table), "dimensions": values.shape[1], "pca": figure_md(embedding_pca(values, colours, title), "PCA"), **(extra or {})})


def _embed(encoder_path: Path, cube: xr.Dataset, compute: ComputeResource) -> tuple[FittedEncoders, pd.DataFrame]:
    fitted = load_encoders(encoder_path)
    data = load_sequences(cube, frames=fitted.frames, stats=(fitted.band_mean, fitted.band_std))
    values, folds = fitted.transform(data, compute.torch_device())
    table = _embedding_frame(data.unit_ids, values, "e")
    table.insert(1, "fold", folds)
    return fitted, table


@dg.asset(group_name=GROUP, kinds={"parquet"})
def embeddings_tabular(tabular_features: pd.DataFrame, rct_units: gpd.GeoDataFrame, study_inputs: dict) -> dg.Output:
    """Tabular-only representation: the covariates, standardized."""
    table = pd.concat([tabular_features[["unit_id"]], standardize(tabular_features.drop(columns="unit_id"))], axis=1)
    return _embedding_output(table, rct_units, study_inputs, "tabular")


@dg.asset(group_name=GROUP, kinds={"parquet", "torch"})
def embeddings_image(image_encoder: Path, unit_image_sequences: xr.Dataset, rct_units: gpd.GeoDataFrame, study_inputs: dict, compute: ComputeResource) -> dg.Output:
    """Single-image embeddings (baseline frame), each unit embedded by its own fold's model."""
    fitted, table = _embed(image_encoder, unit_image_sequences, compute)
    return _embedding_output(table, rct_units, study_inputs, "image", {"objective": fitted.objective, "parameters": fitted.meta["parameters"]})


@dg.asset(group_name=GROUP, kinds={"parquet", "torch"})
def embeddings_image_sequence(sequence_encoder: Path, unit_image_sequences: xr.Dataset, rct_units: gpd.GeoDataFrame, study_inputs: dict, compute: ComputeResource) -> dg.Output:
    """Image-sequence embeddings, each unit embedded by its own fold's model."""
    fitted, table = _embed(sequence_encoder, unit_image_sequences, compute)
    return _embedding_output(table, rct_units, study_inputs, "image sequence", {"objective": fitted.objective, "parameters": fitted.meta["parameters"]})


@dg.asset(group_name=GROUP, kinds={"parquet"})
def embeddings_image_sequence_tabular(embeddings_image_sequence: pd.DataFrame, embeddings_tabular: pd.DataFrame, rct_units: gpd.GeoDataFrame, study_inputs: dict) -> dg.Output:
    """Image-sequence embeddings and standardized covariates side by side (units present in both)."""
    tab = embeddings_tabular.rename(columns={c: f"x_{c}" for c in embeddings_tabular.columns if c != "unit_id"})
    table = embeddings_image_sequence.merge(tab, on="unit_id", how="inner")
    return _embedding_output(table, rct_units, study_inputs, "image sequence + tabular", {"dropped": len(embeddings_image_sequence) - len(table)})
