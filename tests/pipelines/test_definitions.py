"""The code location loads, and its schedule and sensor behave."""

import json
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq
import pytest

from models.analyst.data_dictionary import describe
from pipelines.automation import new_imagery_sensor
from pipelines.definitions import defs
from pipelines.resources import StudySource
from tests.conftest import GRID, UTM36, ramp, write_raster
from tests.tiny_demo import UNITS

ROOT = Path(__file__).resolve().parents[2]


def test_definitions_load_with_groups_and_checks():
    defs.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name, key
        assert node.description, f"{key.to_user_string()} lacks a docstring"
    checks = {k.name for k in graph.asset_check_keys}
    assert {"treatment_share_matches_design", "units_inside_imagery", "chips_have_data"} <= checks
    assert defs.resolve_job_def("eotrials_job") and defs.resolve_schedule_def("weekly_map_refresh")


def test_the_shared_maps_encoder_cannot_be_trained_on_outcomes():
    """Every trial uses the map: the Launchpad refuses an outcome-trained (prognostic) map encoder."""
    job = defs.resolve_job_def("map_job")
    assert dg.validate_run_config(job, {"ops": {"map_encoder": {"config": {"objective": "random"}}}})
    with pytest.raises(dg.DagsterInvalidConfigError, match="prognostic"):
        dg.validate_run_config(job, {"ops": {"map_encoder": {"config": {"objective": "prognostic"}}}})


def test_sensor_requests_a_run_only_when_scenes_change(tmp_path):
    folder = tmp_path / "imagery"
    folder.mkdir()
    write_raster(folder / "scene_2020-01-01.tif", ramp(), UTM36, GRID)
    source = StudySource(trials="trials", imagery=str(folder))
    first = new_imagery_sensor(dg.build_sensor_context(resources={"source": source}))
    assert isinstance(first, dg.RunRequest)
    ctx = dg.build_sensor_context(
        resources={"source": source},
        cursor=json.dumps({str(folder / "scene_2020-01-01.tif"): (folder / "scene_2020-01-01.tif").stat().st_mtime}),
    )
    assert isinstance(new_imagery_sensor(ctx), dg.SkipReason)
    write_raster(folder / "scene_2021-01-01.tif", ramp(), UTM36, GRID)
    again = new_imagery_sensor(ctx)
    assert isinstance(again, dg.RunRequest) and again.tags["changed_scenes"] == "scene_2021-01-01.tif"
    assert isinstance(new_imagery_sensor(dg.build_sensor_context(resources={"source": StudySource()})), dg.SkipReason)


@pytest.mark.slow
def test_cli_materializes_the_whole_graph(tiny_demo):
    """The README's main command (`python -m pipelines.demo`), on the tiny demo of two trials, in a fresh Dagster home."""
    home, data, done = tiny_demo.home, tiny_demo.data, tiny_demo
    assert "trials run: east, west" in done.stdout
    with dg.DagsterInstance.from_config(str(home)) as instance:  # the partitions the sensor would have added
        assert sorted(instance.get_dynamic_partitions("trials")) == ["east", "west"]
    west, east = (gpd.read_parquet(data / "rct_units" / f"{t}.parquet") for t in ("west", "east"))
    assert len(west) == len(east) == UNITS and west["x"].max() < east["x"].min() + 30  # side by side (to a pixel)
    assert (data / "unit_image_sequences" / "west.zarr").is_dir() and (data / "cate_map" / "east.tif").exists()
    assert len(pd.read_parquet(data / "embeddings_image_sequence_tabular" / "west.parquet")) == UNITS
    assert len(pd.read_parquet(data / "simulation_study.parquet")) == 4
    assert (data / "wealth_map.tif").exists() and not (data / "wealth_map").exists()  # one map for every trial
    evaluation = pd.read_parquet(data / "debiasing_evaluation.parquet")  # response x method x true effect
    assert (
        (data / "debiased_wealth_map.tif").exists()
        and len(evaluation) == 3 * 5 * 2
        and set(evaluation["response"]) == {"imagery: scattered, last date", "imagery: ring, last 3 dates", "linear shortcut"}
    )
    assert list((data / ".staging").iterdir()) == []  # scratch cubes and staged outputs are all gone
    assert list((data / ".runs").iterdir()) == []  # every run succeeded: no step outputs kept for a re-execution
    import duckdb  # the analyst's database: a view per table, reading the Parquet in place

    with duckdb.connect(str(data / "analyst_database.duckdb"), read_only=True) as con:
        assert con.execute("SELECT trial, count(*) FROM rct_units GROUP BY trial ORDER BY trial").fetchall() == [
            ("east", UNITS),
            ("west", UNITS),
        ]
        assert con.execute("SELECT count(DISTINCT learner) FROM heterogeneity_evaluation").fetchone()[0] == 1
    report = (data / "trial_report" / "west.html").read_text()  # one self-contained page: figures inlined, no scripts
    assert report.count('src="data:image/png;base64,') >= 4 and "<script" not in report
    assert "TOC curves with 95% bands" in report and "naive vs debiased" in report
    tables = [*data.glob("*.parquet"), *data.glob("*/west.parquet")]
    for table in sorted(tables):  # every column of every table is in the data dictionary
        name = table.parent.name if table.stem == "west" else table.stem
        undescribed = [c for c in pq.read_schema(table).names if describe(c, name) is None]
        assert not undescribed, (table, undescribed)


@pytest.mark.slow
def test_a_study_without_a_survey_gets_its_causal_evidence_and_says_why_debiasing_is_skipped(tiny_demo, tmp_path):
    """The README's own-study example has no survey: the same main command must still give the
    trial's causal evidence and report, with the debiasing group skipped and the reason stated."""
    import html
    import os
    import shutil
    import subprocess
    import sys

    from models.io.manifest import NO_SURVEY
    from tests.tiny_demo import CONFIG

    study = tmp_path / "study"
    for part in ("trials", "imagery"):
        shutil.copytree(tiny_demo.data / "demo_study" / part, study / part)
    labels = sorted((tiny_demo.data / "demo_study" / "truth" / "landcover").glob("*.tif"))[-1]  # a user's land-cover raster
    ops = {name: value for name, value in CONFIG["ops"].items() if name != "study_inputs"}
    ops["land_cover_maps"] = {"config": {"labels": "raster", "label_path": str(labels)}}
    config = {
        **CONFIG,
        "ops": ops,
        "resources": {**CONFIG["resources"], "source": {"config": {"trials": str(study / "trials"), "imagery": str(study / "imagery")}}},
    }
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "EOTRIALS_DATA": str(data), "EOTRIALS_DEVICE": "cpu"}
    cmd = [sys.executable, "-m", "pipelines.demo", "--config-json", json.dumps(config), "--trial", "west"]
    done = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "trials run: west" in done.stdout
    assert len(pd.read_parquet(data / "heterogeneity_evaluation" / "west.parquet")) and (data / "cate_map" / "west.tif").exists()
    assert not (data / "survey_image_sequences.zarr").exists() and not (data / "wealth_map.tif").exists()  # skipped, not failed
    assert pd.read_parquet(data / "wealth_effects" / "west.parquet").empty
    report = (data / "trial_report" / "west.html").read_text()
    assert html.escape(NO_SURVEY) in report and "Average treatment effect (doubly robust)" in report
    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("unit_wealth_predictions"))
        assert event.asset_materialization.metadata["skipped"].value == NO_SURVEY
        assert instance.get_latest_materialization_event(dg.AssetKey("map_encoder")) is None
