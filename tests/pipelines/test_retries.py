"""Retries with backoff on transient I/O errors, and re-execution from failure, on the real ingest assets."""

from __future__ import annotations

import errno
import os

import dagster as dg
import pytest

from assets import ingest
from assets.ingest import ChipsConfig, DemoStudyConfig
from assets.partitions import trials
from pipelines.definitions import resources
from pipelines.resources import ComputeResource, StorageResource
from pipelines.run_outputs import prune_run_outputs

SMALL_DEMO = DemoStudyConfig(n_units=120, n_survey=50, n_dates=3, region_px=256, chip_size=16, seed=5)
OPS = {"study_inputs": SMALL_DEMO, "unit_image_sequences": ChipsConfig(chip_size=16)}


def ingest_definitions(root: str) -> dg.Definitions:
    return dg.Definitions(
        assets=dg.load_assets_from_modules([ingest]),
        asset_checks=dg.load_asset_checks_from_modules([ingest]),
        resources=resources(StorageResource(root=root), None, ComputeResource(device="cpu")),
        jobs=[dg.define_asset_job("ingest", executor_def=dg.in_process_executor, config=dg.RunConfig(ops=OPS))],
    )


def in_process_ingest_job() -> dg.JobDefinition:
    """The ingest group as a reconstructable job (re-execution needs one), in this process so a
    test's monkeypatch reaches its steps; the storage root comes from the environment."""
    return ingest_definitions(os.environ["EOTRIALS_TEST_ROOT"]).resolve_job_def("ingest")


def fail_first_call(monkeypatch, module, name: str, error: Exception) -> list[int]:
    """Make ``module.name`` raise ``error`` on its first call only; returns the call counter."""
    real, calls = getattr(module, name), []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)
    return calls


def materialize_catalog(root):
    defs = ingest_definitions(str(root))
    return dg.materialize(
        [*dg.load_assets_from_modules([ingest])],
        selection=["study_inputs", "imagery_catalog"],
        resources=defs.resources,
        run_config=dg.RunConfig(ops={"study_inputs": SMALL_DEMO}),
        raise_on_error=False,
    )


def step_events(result, event_type: dg.DagsterEventType, step: str) -> list:
    return [e for e in result.all_events if e.event_type == event_type and e.step_key == step]


def test_transient_io_error_is_retried_after_a_wait(tmp_path, monkeypatch):
    calls = fail_first_call(monkeypatch, ingest, "build_catalog", OSError(errno.EIO, "Input/output error", "scene.tif"))
    result = materialize_catalog(tmp_path)
    assert result.success and len(calls) == 2
    retries = step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY, "imagery_catalog")
    assert len(retries) == 1 and retries[0].event_specific_data.seconds_to_wait == 2
    assert (tmp_path / "imagery_catalog.parquet").exists()


def test_permanent_error_fails_at_once(tmp_path, monkeypatch):
    calls = fail_first_call(monkeypatch, ingest, "build_catalog", FileNotFoundError(errno.ENOENT, "No such file", "scene.tif"))
    result = materialize_catalog(tmp_path)
    assert not result.success and len(calls) == 1
    assert not step_events(result, dg.DagsterEventType.STEP_UP_FOR_RETRY, "imagery_catalog")
    assert not (tmp_path / "imagery_catalog.parquet").exists()


@pytest.fixture
def instance(tmp_path, monkeypatch):
    monkeypatch.setenv("EOTRIALS_TEST_ROOT", str(tmp_path / "data"))
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        instance.add_dynamic_partitions(trials.name, ["west"])
        yield instance


@pytest.mark.slow  # two runs of the ingest graph
def test_reexecution_from_failure_reuses_what_succeeded(tmp_path, instance, monkeypatch):
    calls = fail_first_call(monkeypatch, ingest, "tabular_matrix", RuntimeError("covariates unavailable"))
    job = dg.reconstructable(in_process_ingest_job)
    first = dg.execute_job(job, instance, tags={"dagster/partition": "west"})
    assert not first.success and len(calls) == 1
    succeeded = {e.step_key for e in first.all_events if e.event_type == dg.DagsterEventType.STEP_SUCCESS}
    assert {"study_inputs", "imagery_catalog", "rct_units", "unit_image_sequences.assemble_chip_cube"} <= succeeded
    assert any(s.startswith("unit_image_sequences.extract_chip_chunk[") for s in succeeded)  # the chunk steps, too
    outputs = {
        str(p.relative_to(tmp_path / "data")): p.stat().st_mtime_ns
        for p in [*(tmp_path / "data").iterdir(), *(tmp_path / "data").glob("*/west.*")]
        if p.suffix in (".parquet", ".zarr", ".json")
    }
    assert "rct_units/west.parquet" in outputs
    storage = StorageResource(root=str(tmp_path / "data"))
    assert prune_run_outputs(instance, storage) == [] and (tmp_path / "data" / ".runs" / first.run_id).is_dir()  # kept to re-execute

    options = dg.ReexecutionOptions.from_failure(first.run_id, instance)
    again = dg.execute_job(job, instance, tags={"dagster/partition": "west"}, reexecution_options=options)
    assert again.success and len(calls) == 2
    rerun = {e.step_key for e in again.all_events if e.event_type == dg.DagsterEventType.STEP_START}
    assert "tabular_features" in rerun and not rerun & succeeded, rerun
    assert (tmp_path / "data" / "tabular_features" / "west.parquet").exists()
    # what succeeded the first time was read from storage, not written again
    for name, mtime in outputs.items():
        assert (tmp_path / "data" / name).stat().st_mtime_ns == mtime, name
    # the re-execution succeeded: nothing can re-execute from either run, so both folders go
    pruned = prune_run_outputs(instance, storage)
    assert first.run_id in pruned and list((tmp_path / "data" / ".runs").iterdir()) == []


@dg.op
def boom():
    raise RuntimeError("boom")


@dg.job
def failing_job():
    boom()


def test_only_the_newest_failed_runs_keep_their_step_outputs(tmp_path):
    storage = StorageResource(root=str(tmp_path / "data"), keep_failed_runs=2)
    with dg.instance_for_test() as instance:
        runs = [failing_job.execute_in_process(instance=instance, raise_on_error=False).run_id for _ in range(4)]
        for run_id in [*runs, "not-a-run-of-this-instance"]:
            (storage.path(".runs", run_id)).mkdir(parents=True)
        assert sorted(prune_run_outputs(instance, storage)) == sorted(runs[:2])
        assert sorted(p.name for p in storage.path(".runs").iterdir()) == sorted([*runs[2:], "not-a-run-of-this-instance"])
