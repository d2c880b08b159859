"""Ingest + representation materialized on CPU (the shared ``evidence`` fixture): encoders, then every embedding table."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from assets.ingest import ChipsConfig
from models.representation.training import load_encoders
from tests.assets.conftest import DEMO, FOLDS, MAX_TRAIN_UNITS


@pytest.mark.slow
def test_encoders_and_embeddings_materialize(evidence):
    tmp_path, result = evidence
    assert result.success
    cube_units = set(xr.open_zarr(tmp_path / "unit_image_sequences" / "west.zarr", consolidated=False)["unit"].values.tolist())
    seq = pd.read_parquet(tmp_path / "embeddings_image_sequence" / "west.parquet")
    img = pd.read_parquet(tmp_path / "embeddings_image" / "west.parquet")
    tab = pd.read_parquet(tmp_path / "embeddings_tabular" / "west.parquet")
    both = pd.read_parquet(tmp_path / "embeddings_image_sequence_tabular" / "west.parquet")
    assert set(seq["unit_id"]) == cube_units == set(img["unit_id"])
    assert sorted(seq["fold"].unique()) == list(range(FOLDS)) and set(img["fold"]) == {0}
    assert seq.filter(regex=r"^e\d+$").shape[1] == 32 and np.isfinite(seq.filter(regex=r"^e\d+$").to_numpy()).all()
    assert len(both) == len(seq) and both.shape[1] == seq.shape[1] + tab.shape[1] - 1
    np.testing.assert_allclose(tab.drop(columns="unit_id").mean().to_numpy(), 0, atol=1e-9)
    fitted = load_encoders(tmp_path / "sequence_encoder" / "west.safetensors")
    assert fitted.folds == FOLDS and fitted.objective == "prognostic" and fitted.frames is None and fitted.chip_size == 16
    assert load_encoders(tmp_path / "image_encoder" / "west.safetensors").frames == [-1]
    meta = result.asset_materializations_for_node("sequence_encoder")[0].metadata
    assert meta["parameters"].value > 10_000 and "data:image/png;base64" in meta["training_curve"].value
    # trained on a sample of the trial (the cap), yet every unit is embedded (above)
    assert meta["units_trained_on"].value == MAX_TRAIN_UNITS < meta["units"].value == len(cube_units)
    assert "data:image/png;base64" in result.asset_materializations_for_node("embeddings_image_sequence")[0].metadata["pca"].value
    # the map's encoder is shared: trained once on the surveyed places, outcome-free, stored without a trial
    shared = load_encoders(tmp_path / "map_encoder.safetensors")
    assert shared.objective == "contrastive" and shared.folds == 1 and shared.chip_size == 16
    survey = xr.open_zarr(tmp_path / "survey_image_sequences.zarr", consolidated=False)  # extracted once, shared
    # every surveyed place with a valid pixel (the few without any are dropped, at most max_all_nodata_share)
    assert DEMO.n_survey * (1 - ChipsConfig().max_all_nodata_share) <= survey.sizes["unit"] <= DEMO.n_survey and survey.sizes["x"] == 16
    assert result.asset_materializations_for_node("map_encoder")[0].metadata["survey_places"].value == survey.sizes["unit"]
    assert (tmp_path / "map_grid_embeddings.zarr").is_dir() and (tmp_path / "grid_embeddings" / "west.zarr").is_dir()
