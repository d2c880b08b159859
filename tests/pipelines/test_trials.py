"""Many trials: a folder of trial tables, the sensor that turns each into a partition, the weekly
re-run of every trial, and the analyst's view across trials."""

import json
import os

import dagster as dg
import duckdb
import pandas as pd
import pytest

from assets.partitions import trials
from models.analyst.database import build_database
from models.ingest.trial_folder import TrialFolderError, scan_trials, trial_table, trial_tables
from pipelines.automation import trial_requests, trial_tables_sensor, weekly_trials_refresh
from pipelines.resources import StorageResource, StudySource


def write_trial(folder, key: str, suffix: str = ".csv") -> None:
    table = pd.DataFrame({"unit_id": ["a", "b"], "lon": [33.0, 33.1], "lat": [0.4, 0.5], "treatment": [0, 1], "outcome": [1.0, 2.0]})
    table.to_csv(folder / f"{key}{suffix}", index=False) if suffix == ".csv" else table.to_parquet(folder / f"{key}{suffix}")


def test_a_trial_is_a_table_named_by_its_key(tmp_path):
    write_trial(tmp_path, "kenya-2019")
    write_trial(tmp_path, "uganda_2021", ".parquet")
    (tmp_path / ".~lock.kenya-2019.csv#").write_text("an editor's lock file")
    assert list(trial_tables(tmp_path)) == ["kenya-2019", "uganda_2021"] and scan_trials(tmp_path).problems == {}
    assert trial_table(tmp_path, "uganda_2021").suffix == ".parquet"
    with pytest.raises(TrialFolderError, match=r"trial 'togo' has no table .*kenya-2019"):
        trial_table(tmp_path, "togo")


def test_files_that_are_not_trials_are_named_with_their_fix_and_block_no_trial(tmp_path):
    write_trial(tmp_path, "west")
    write_trial(tmp_path, "east")
    (tmp_path / "north.xlsx").write_bytes(b"PK")
    (tmp_path / "notes.txt").write_text("not a trial")
    write_trial(tmp_path, "kenya 2019")
    write_trial(tmp_path, "côte-d'ivoire")
    write_trial(tmp_path, "east", ".parquet")  # a second table for east: neither is taken
    scan = scan_trials(tmp_path)
    assert list(scan.tables) == ["west"]
    assert scan.problems["north.xlsx"] == "Excel workbooks are not read: save the trial's sheet as north.csv or .parquet"
    assert "not a trial table" in scan.problems["notes.txt"] and "*.csv or *.parquet" in scan.problems["notes.txt"]
    assert scan.problems["kenya 2019.csv"].endswith("rename it, e.g. to kenya_2019.csv")
    assert scan.problems["côte-d'ivoire.csv"].endswith("rename it, e.g. to cote-d_ivoire.csv")
    assert "a second table for trial 'east' beside east.csv" in scan.problems["east.parquet"]
    assert trial_table(tmp_path, "west").name == "west.csv"  # the others never block a trial
    with pytest.raises(TrialFolderError, match=r"trial 'north' has no table .*north.xlsx: Excel workbooks are not read"):
        trial_table(tmp_path, "north")


def test_a_missing_folder_names_the_setting(tmp_path):
    with pytest.raises(TrialFolderError, match=r"StudySource.trials.*\*\.csv or \*\.parquet"):
        trial_tables(tmp_path / "nowhere")


def test_requests_add_new_trials_and_rerun_changed_ones():
    new, run = trial_requests({"a": 1.0, "b": 2.0, "c": 3.0}, previous={"b": 2.0, "c": 1.0}, known={"b", "c"})
    assert new == ["a"] and run == ["a", "c"]
    assert trial_requests({"b": 2.0}, previous={}, known={"b"}) == ([], [])  # known, never seen changing: left alone


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        yield instance


def test_sensor_adds_a_partition_per_new_table_and_reruns_a_changed_one(tmp_path, instance):
    folder = tmp_path / "trials"
    folder.mkdir()
    resources = {"source": StudySource(trials=str(folder), imagery="imagery"), "storage": StorageResource(root=str(tmp_path))}

    def evaluate(cursor=None):
        context = dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
        return trial_tables_sensor(context), context.cursor

    result, cursor = evaluate()
    assert isinstance(result, dg.SkipReason) and f"the trials folder {folder} is empty" in result.skip_message
    assert "*.csv or *.parquet" in result.skip_message
    write_trial(folder, "west")
    write_trial(folder, "east")
    result, _ = evaluate(cursor)
    assert [r.partition_key for r in result.run_requests] == ["east", "west"]
    assert result.dynamic_partitions_requests[0].partition_keys == ["east", "west"]
    instance.add_dynamic_partitions(trials.name, ["east", "west"])  # what the daemon does with the request
    cursor = result.cursor
    result, cursor = evaluate(cursor)
    assert isinstance(result, dg.SkipReason)
    os.utime(folder / "east.csv", (2e9, 2e9))  # the east table is replaced
    result, _ = evaluate(cursor)
    assert [r.partition_key for r in result.run_requests] == ["east"] and not result.dynamic_partitions_requests
    assert json.loads(result.cursor)["east"] == 2e9


def test_sensor_names_each_bad_file_and_still_runs_the_good_trials(tmp_path, instance):
    folder = tmp_path / "trials"
    folder.mkdir()
    resources = {"source": StudySource(trials=str(folder), imagery="imagery"), "storage": StorageResource(root=str(tmp_path))}
    (folder / "north.xlsx").write_bytes(b"PK")
    result = trial_tables_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(result, dg.SkipReason) and "north.xlsx: Excel workbooks are not read: save" in result.skip_message
    write_trial(folder, "west")
    write_trial(folder, "my trial")
    context = dg.build_sensor_context(instance=instance, resources=resources)
    result = trial_tables_sensor(context)
    assert [r.partition_key for r in result.run_requests] == ["west"]  # the bad names block nothing
    instance.add_dynamic_partitions(trials.name, ["west", "gone"])
    (folder / "west.csv").unlink()
    result = trial_tables_sensor(dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
    assert isinstance(result, dg.SkipReason) and "Retired (table gone): gone, west" in result.skip_message
    assert "my trial.csv: a trial's file name is its key" in result.skip_message


def test_a_missing_trials_folder_says_where_and_what_it_looked_for(tmp_path, instance):
    resources = {"source": StudySource(trials=str(tmp_path / "nowhere"), imagery="imagery"), "storage": StorageResource(root=str(tmp_path))}
    result = trial_tables_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert (
        isinstance(result, dg.SkipReason)
        and str(tmp_path / "nowhere") in result.skip_message
        and "*.csv or *.parquet" in result.skip_message
    )


def test_the_demo_folder_is_watched_when_no_trials_are_configured(tmp_path, instance):
    resources = {"source": StudySource(), "storage": StorageResource(root=str(tmp_path))}
    result = trial_tables_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(result, dg.SkipReason) and "demo_study" in result.skip_message
    (tmp_path / "demo_study" / "trials").mkdir(parents=True)
    write_trial(tmp_path / "demo_study" / "trials", "west")
    result = trial_tables_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert [r.partition_key for r in result.run_requests] == ["west"]


def test_weekly_refresh_reruns_every_trial_that_still_has_a_table(tmp_path, instance):
    folder = tmp_path / "trials"
    folder.mkdir()
    resources = {"source": StudySource(trials=str(folder), imagery="imagery"), "storage": StorageResource(root=str(tmp_path))}
    when = pd.Timestamp("2026-12-07 05:00", tz="UTC")
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when, resources=resources)
    assert isinstance(weekly_trials_refresh(context), dg.SkipReason)
    instance.add_dynamic_partitions(trials.name, ["west", "east", "retired"])
    write_trial(folder, "west")
    write_trial(folder, "east")
    requests = weekly_trials_refresh(dg.build_schedule_context(instance=instance, scheduled_execution_time=when, resources=resources))
    assert sorted(r.partition_key for r in requests) == ["east", "west"] and requests[0].run_key.endswith("-20261207")


def test_the_analyst_database_unites_every_trials_table(tmp_path):
    folder = tmp_path / "cate_estimates"
    folder.mkdir()
    pd.DataFrame({"unit_id": ["U1", "U2"], "tau": [0.5, 0.1]}).to_parquet(folder / "west.parquet")
    pd.DataFrame({"unit_id": ["U3"], "tau": [2.0]}).to_parquet(folder / "east.parquet")
    pd.DataFrame({"trial": ["west"], "method": ["naive"]}).to_parquet(tmp_path / "effects.parquet")
    (tmp_path / "wealth_effects").mkdir()
    pd.DataFrame({"trial": ["west"], "estimate": [0.1]}).to_parquet(tmp_path / "wealth_effects" / "west.parquet")
    tables = {"cate_estimates": folder, "trial_outcomes": tmp_path / "effects.parquet", "wealth_effects": tmp_path / "wealth_effects"}
    assert build_database(tables, tmp_path / "db.duckdb") == ["cate_estimates", "trial_outcomes", "wealth_effects"]
    with duckdb.connect(str(tmp_path / "db.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT trial, count(*), round(avg(tau), 2) FROM cate_estimates GROUP BY trial ORDER BY trial").fetchall()
        assert rows == [("east", 1, 2.0), ("west", 2, 0.3)]
        assert con.execute("SELECT * FROM wealth_effects").fetchall() == [("west", 0.1)]  # its own trial column, once
