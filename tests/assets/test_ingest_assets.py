"""The ingest half of the asset graph, materialized for real with dagster.materialize."""

import json
import shutil
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd
import pytest
import xarray as xr

from assets import ingest
from assets.ingest import ChipsConfig, DemoStudyConfig, SurveyChipsConfig, UnitsConfig, imagery_covers_trial
from models.io.manifest import NO_SURVEY, StudyManifest
from pipelines.resources import StorageResource, StudySource
from tests.conftest import materialize_modules

SMALL_DEMO = DemoStudyConfig(n_units=120, n_survey=50, n_dates=4, region_px=256, chip_size=16, seed=3)


def materialize(root, source=None, ops=None, raise_on_error=True):
    ops = {"study_inputs": SMALL_DEMO, "unit_image_sequences": ChipsConfig(chip_size=16, chunk_px=128), **(ops or {})}
    return materialize_modules([ingest], root, source, ops, raise_on_error)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return root, materialize(root)


def test_demo_ingest_writes_readable_outputs(demo_run):
    root, result = demo_run
    assert result.success
    units = gpd.read_parquet(root / "rct_units" / "west.parquet")
    assert units.crs.to_epsg() == 4326 and len(units) == SMALL_DEMO.n_units
    catalog = pd.read_parquet(root / "imagery_catalog.parquet")
    assert len(catalog) == SMALL_DEMO.n_dates and list(catalog["band_names"][0]) == ["blue", "green", "red", "nir", "swir1", "swir2"]
    cube = xr.open_zarr(root / "unit_image_sequences" / "west.zarr", consolidated=False)
    assert dict(cube["reflectance"].sizes) == {"unit": len(units), "time": 4, "band": 6, "y": 16, "x": 16}
    assert set(cube["unit"].values) == set(units["unit_id"])
    features = pd.read_parquet(root / "tabular_features" / "west.parquet")
    assert list(features["unit_id"]) == list(units["unit_id"]) and "outcome" not in features
    assert not (root / ".staging").exists() or not any((root / ".staging").iterdir())
    inputs = json.loads((root / "study_inputs.json").read_text())
    paths = [inputs["trials"], inputs["imagery"], inputs["survey_table"], *inputs["truth"].values()]
    assert all(Path(p).is_absolute() and Path(p).exists() for p in paths)  # readable from any working directory


def test_metadata_and_checks_reach_the_ui(demo_run):
    _, result = demo_run
    meta = result.asset_materializations_for_node("rct_units")[0].metadata
    assert meta["units"].value == SMALL_DEMO.n_units and "data:image/png;base64" in meta["study_area"].value
    cube_meta = result.asset_materializations_for_node("unit_image_sequences")[0].metadata
    assert "data:image/png;base64" in cube_meta["sequence"].value and 0.5 < cube_meta["valid_fraction"].value <= 1
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["units_inside_imagery"] and checks["chips_have_data"] and checks["imagery_covers_trial"]


def test_imagery_coverage_blocks_a_trial_whose_chips_are_mostly_empty(demo_run):
    root, _ = demo_run
    cube = xr.open_zarr(root / "unit_image_sequences" / "west.zarr", consolidated=False)
    assert imagery_covers_trial(cube).passed
    cube.attrs["extraction"] = {**cube.attrs["extraction"], "valid_fraction": 0.3}  # clouds over most of the trial
    result = imagery_covers_trial(cube)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR and result.metadata["valid_fraction"].value == 0.3


def test_chips_are_extracted_square_by_square_as_separate_steps(demo_run):
    root, result = demo_run
    steps = {e.step_key for e in result.all_events if e.is_step_success}
    chunk_steps = sorted(s for s in steps if s.startswith("unit_image_sequences.extract_chip_chunk["))
    assert chunk_steps == [
        f"unit_image_sequences.extract_chip_chunk[r{r}_c0]" for r in (0, 1)
    ]  # the west trial: 128 px squares of the west half
    assert result.asset_materializations_for_node("unit_image_sequences")[0].metadata["chunks"].value == 2
    cube = xr.open_zarr(root / "unit_image_sequences" / "west.zarr", consolidated=False)
    assert cube.attrs["extraction"]["n_units"] == cube.sizes["unit"] and cube.sizes["unit"] == SMALL_DEMO.n_units
    run_dir = root / ".runs" / result.run_id
    assert not list(run_dir.rglob("*.zarr"))  # the chunks' cubes are removed once assembled


def test_failed_rerun_keeps_previous_materialization(demo_run, tmp_path):
    root, _ = demo_run
    study = tmp_path / "study"
    shutil.copytree(root / "demo_study", study)
    data = tmp_path / "data"
    source = StudySource(trials=str(study / "trials"), imagery=str(study / "imagery"), survey_table=str(study / "survey.csv"))
    assert materialize(data, source).success
    before = pd.read_parquet(data / "rct_units" / "west.parquet")
    table = pd.read_csv(study / "trials" / "west.csv")
    table.loc[3, "treatment"] = 2
    table.to_csv(study / "trials" / "west.csv", index=False)
    result = materialize(data, source, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "treatment must be 0 or 1" in str(failure.event_specific_data.error)
    pd.testing.assert_frame_equal(pd.read_parquet(data / "rct_units" / "west.parquet"), before)
    assert xr.open_zarr(data / "unit_image_sequences" / "west.zarr", consolidated=False).sizes["unit"] == len(before)


def test_too_many_units_outside_imagery_fails_the_run(demo_run, tmp_path):
    root, _ = demo_run
    study = tmp_path / "study"
    shutil.copytree(root / "demo_study", study)
    table = pd.read_csv(study / "trials" / "west.csv")
    table.loc[:19, "lon"] += 5.0
    table.to_csv(study / "trials" / "west.csv", index=False)
    source = StudySource(trials=str(study / "trials"), imagery=str(study / "imagery"), survey_table=str(study / "survey.csv"))
    result = materialize(tmp_path / "data", source, ops={"rct_units": UnitsConfig(max_outside_share=0.1)}, raise_on_error=False)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "20 of 120 units" in str(failure.event_specific_data.error)


def test_a_second_trial_is_its_own_partition_beside_the_first(demo_run, tmp_path):
    """The east trial materializes into its own files; the west trial's are untouched, and a trial
    whose table is gone fails naming the folder's trials."""
    root, _ = demo_run
    study, data = tmp_path / "study", tmp_path / "data"
    shutil.copytree(root / "demo_study", study)
    source = StudySource(trials=str(study / "trials"), imagery=str(study / "imagery"), survey_table=str(study / "survey.csv"))
    assert materialize(data, source).success
    west_before = (data / "rct_units" / "west.parquet").stat().st_mtime_ns
    assert materialize_modules(
        [ingest], data, source, {"unit_image_sequences": ChipsConfig(chip_size=16, chunk_px=128)}, trial="east"
    ).success
    west, east = (gpd.read_parquet(data / "rct_units" / f"{t}.parquet") for t in ("west", "east"))
    assert (data / "rct_units" / "west.parquet").stat().st_mtime_ns == west_before
    assert not set(west["unit_id"]) & set(east["unit_id"]) and west["x"].max() < east["x"].min() + 30  # within a pixel
    cube = xr.open_zarr(data / "unit_image_sequences" / "east.zarr", consolidated=False)
    assert set(cube["unit"].values) == set(east["unit_id"])
    result = materialize_modules([ingest], data, source, {}, raise_on_error=False, trial="north")
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "trial 'north' has no table" in str(failure.event_specific_data.error) and "east" in str(failure.event_specific_data.error)


def test_survey_chips_without_a_survey_are_skipped_and_say_why(tmp_path):
    """No survey: nothing is yielded (the map's assets downstream are skipped, not failed) and the log says why."""
    context = dg.build_asset_context()
    outputs = list(
        ingest.survey_image_sequences(
            context=context,
            config=SurveyChipsConfig(),
            study_inputs=StudyManifest("user", trials=str(tmp_path), imagery=str(tmp_path)),
            imagery_catalog=pd.DataFrame(),
            storage=StorageResource(root=str(tmp_path)),
        )
    )
    assert outputs == [] and not any(tmp_path.iterdir())  # nothing staged or written
    assert ingest.survey_image_sequences.op.output_defs[0].optional and "StudySource.survey_table" in NO_SURVEY


def test_every_trial_output_names_its_table_version_and_a_replaced_table_is_flagged(demo_run, tmp_path):
    root, _ = demo_run
    study, data = tmp_path / "study", tmp_path / "data"
    shutil.copytree(root / "demo_study", study)
    source = StudySource(trials=str(study / "trials"), imagery=str(study / "imagery"), survey_table=str(study / "survey.csv"))
    instance = dg.DagsterInstance.ephemeral()
    ops = {"study_inputs": SMALL_DEMO, "unit_image_sequences": ChipsConfig(chip_size=16, chunk_px=128)}
    first = materialize_modules([ingest], data, source, ops, instance=instance)
    table = pd.read_csv(study / "trials" / "west.csv")
    stamps = {
        node: {k: first.asset_materializations_for_node(node)[0].metadata[k].value for k in ("trial_table_sha256", "trial_table_rows")}
        for node in ("rct_units", "unit_image_sequences", "tabular_features")
    }
    assert len({json.dumps(s, sort_keys=True) for s in stamps.values()}) == 1 and stamps["rct_units"]["trial_table_rows"] == len(table)
    meta = first.asset_materializations_for_node("rct_units")[0].metadata
    assert meta["table_changed"].value.startswith("no")
    table.iloc[:-5].to_csv(study / "trials" / "west.csv", index=False)  # the user replaces the table
    second = materialize_modules([ingest], data, source, ops, instance=instance)
    meta = second.asset_materializations_for_node("rct_units")[0].metadata
    old, new = stamps["rct_units"]["trial_table_sha256"], meta["trial_table_sha256"].value
    assert new != old and meta["trial_table_rows"].value == len(table) - 5
    assert meta["table_changed"].value.startswith(f"the trial table changed since the last materialization (sha256 {old} -> {new})")
    assert second.asset_materializations_for_node("tabular_features")[0].metadata["trial_table_sha256"].value == new
    record = instance.get_latest_materialization_event(dg.AssetKey("rct_units"))
    assert record.asset_materialization.tags["dagster/data_version"] == new  # the UI marks downstream results stale
