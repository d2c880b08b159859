"""The code location loads, and its schedule and sensor behave."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq
import pytest

from models.data_dictionary import describe
from pipelines.automation import new_imagery_sensor
from pipelines.definitions import defs
from pipelines.resources import StudySource
from tests.conftest import GRID, UTM36, ramp, write_raster

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load_with_groups_and_checks():
    defs.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name, key
        assert node.description, f"{key.to_user_string()} lacks a docstring"
    checks = {k.name for k in graph.asset_check_keys}
    assert {"treatment_share_matches_design", "units_inside_imagery", "chips_have_data"} <= checks
    assert defs.resolve_job_def("eotrials_job") and defs.resolve_schedule_def("weekly_refresh")


def test_sensor_requests_a_run_only_when_scenes_change(tmp_path):
    folder = tmp_path / "imagery"
    folder.mkdir()
    write_raster(folder / "scene_2020-01-01.tif", ramp(), UTM36, GRID)
    source = StudySource(rct_table="x.csv", imagery=str(folder))
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
def test_cli_materializes_the_whole_graph(tmp_path):
    """The README's main command, on a small demo, in a fresh Dagster home."""
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    config = {
        "resources": {"cross_fitting": {"config": {"folds": 2}}},
        "ops": {
            "study_inputs": {"config": {"n_units": 80, "n_survey": 300, "n_dates": 3, "region_px": 192, "chip_size": 16}},
            "unit_image_sequences": {"config": {"chip_size": 16}},
            "sequence_encoder": {"config": {"epochs": 1}},
            "image_encoder": {"config": {"epochs": 1}},
            "cate_estimates": {"config": {"learners": ["t_learner"]}},
            "cate_map": {"config": {"n_estimators": 20}},
            "grid_embeddings": {"config": {"step_px": 32}},
            "trial_outcomes": {"config": {"n_trials": 10, "units_per_trial": 40, "effects": [0.0, 1.0], "calibration_boot": 20}},
            "simulation_study": {
                "config": {
                    "seeds": [0],
                    "n_units": [100],
                    "heterogeneity": ["change"],
                    "encoders": [{"capacity": "small", "objective": "random"}],
                    "region_px": 96,
                    "n_dates": 2,
                }
            },
        },
    }
    env = {**os.environ, "DAGSTER_HOME": str(home), "EOTRIALS_DATA": str(data)}
    cmd = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "pipelines.definitions",
        "--select",
        "*",
        "--config-json",
        json.dumps(config),
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(gpd.read_parquet(data / "rct_units.parquet")) == 80
    assert (data / "unit_image_sequences.zarr").is_dir()
    assert len(pd.read_parquet(data / "embeddings_image_sequence_tabular.parquet")) == 80
    assert (data / "cate_map.tif").exists() and len(pd.read_parquet(data / "simulation_study.parquet")) == 4
    evaluation = pd.read_parquet(data / "debiasing_evaluation.parquet")  # response x method x true effect
    assert (
        (data / "debiased_wealth_map.tif").exists()
        and len(evaluation) == 2 * 5 * 2
        and set(evaluation["response"]) == {"imagery", "linear shortcut"}
    )
    assert list((data / ".staging").iterdir()) == []  # scratch cubes and staged outputs are all gone
    import duckdb  # the analyst's database: a view per table, reading the Parquet in place

    with duckdb.connect(str(data / "analyst_database.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM rct_units").fetchone()[0] == 80
        assert con.execute("SELECT count(DISTINCT learner) FROM heterogeneity_evaluation").fetchone()[0] == 1
    report = (data / "trial_report.html").read_text()  # one self-contained page: figures inlined, no scripts
    assert report.count('src="data:image/png;base64,') >= 4 and "<script" not in report
    assert "TOC curves with 95% bands" in report and "naive vs debiased" in report
    for table in sorted(data.glob("*.parquet")):  # every column of every table is in the data dictionary
        undescribed = [c for c in pq.read_schema(table).names if describe(c, table.stem) is None]
        assert not undescribed, (table.name, undescribed)
