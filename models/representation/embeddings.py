"""Embedding tables: one row per unit, ``unit_id``, ``fold`` (cross-fitted encoders) and features.

The same layout for every data choice (tabular, image, image sequence, both), so the CATE code
treats them alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from models.ingest.units import standardize


def prognostic_target(cube: xr.Dataset, units: pd.DataFrame, outcome: str) -> np.ndarray:
    """The outcome of control units (NaN for treated ones), in cube order: the prognostic objective's target."""
    table = pd.DataFrame(units.drop(columns="geometry", errors="ignore")).set_index("unit_id").reindex(cube["unit"].values.tolist())
    return np.where(table["treatment"].to_numpy() == 0, table[outcome].to_numpy(dtype=float), np.nan)


def _frame(unit_ids, values: np.ndarray, prefix: str) -> pd.DataFrame:
    cols = {f"{prefix}{i:03d}": values[:, i].astype(np.float32) for i in range(values.shape[1])}
    return pd.DataFrame({"unit_id": np.asarray(unit_ids, dtype=str), **cols})


def embedding_table(fitted, cube: xr.Dataset, device, block: int = 4096, clusters: pd.Series | None = None) -> pd.DataFrame:
    """Every unit of a cube embedded by its own fold's encoder: unit_id, fold, e000, e001, ...
    (``clusters``, indexed by unit id, for encoders cross-fitted by cluster).

    Streamed ``block`` units at a time, so memory does not grow with the trial."""
    parts = []
    for data in fitted.blocks(cube, block):
        values, folds = fitted.transform(data, device, clusters)
        part = _frame(data.unit_ids, values, "e")
        part.insert(1, "fold", folds)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def tabular_embeddings(features: pd.DataFrame) -> pd.DataFrame:
    """The covariate matrix standardized: the tabular data choice."""
    return pd.concat([features[["unit_id"]], standardize(features.drop(columns="unit_id"))], axis=1)


def combine(sequence: pd.DataFrame, tabular: pd.DataFrame) -> pd.DataFrame:
    """Image-sequence embeddings beside the standardized covariates (prefixed ``x_``), units in both."""
    tab = tabular.rename(columns={c: f"x_{c}" for c in tabular.columns if c != "unit_id"})
    return sequence.merge(tab, on="unit_id", how="inner")
