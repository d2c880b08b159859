"""Pruning the step outputs of graph-backed assets (``<root>/.runs/<run id>/``).

A run's folder is what a re-execution from failure reads (the steps that succeeded are not run
again). Once a run has succeeded, or a re-execution of it has, nothing can re-execute from it:
its folder (and its failed ancestors') goes. Failed runs keep their folders, the newest
``StorageResource.keep_failed_runs`` of them; older ones go. Runs still going, and folders of runs
this instance does not know (another instance's), are left alone.
"""

import shutil

import dagster as dg

from pipelines.resources import StorageResource

FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def _succeeded_chains(instance: dg.DagsterInstance, records: list[dg.RunRecord]) -> set[str]:
    """Root run ids of the re-execution chains that have a successful run, among the runs created
    since the oldest of ``records`` (one query, however many failed runs there are)."""
    since = min(r.create_timestamp for r in records)
    succeeded = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS], created_after=since))
    return {r.root_run_id or r.run_id for r in succeeded}


def prunable_runs(instance: dg.DagsterInstance, run_ids: list[str], keep_failed: int) -> list[str]:
    """Which of ``run_ids`` (folders under ``.runs``) can be deleted."""
    records = instance.get_run_records(dg.RunsFilter(run_ids=run_ids)) if run_ids else []
    if not records:
        return []
    runs = {r.dagster_run.run_id: r.dagster_run for r in records}
    ended = {r.dagster_run.run_id: r.end_time or 0.0 for r in records}
    done = _succeeded_chains(instance, records)
    failed = [rid for rid, r in runs.items() if r.status in FINISHED - {dg.DagsterRunStatus.SUCCESS} and (r.root_run_id or rid) not in done]
    kept = set(sorted(failed, key=ended.get, reverse=True)[:keep_failed])
    return sorted(rid for rid, r in runs.items() if r.status in FINISHED and rid not in kept)


def prune_run_outputs(instance: dg.DagsterInstance, storage: StorageResource) -> list[str]:
    """Delete the prunable run folders under ``<root>/.runs``; returns their run ids."""
    folder = storage.path(".runs")
    present = [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    pruned = prunable_runs(instance, present, storage.keep_failed_runs)
    for run_id in pruned:
        shutil.rmtree(folder / run_id, ignore_errors=True)
    return pruned


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS, monitor_all_code_locations=False, default_status=dg.DefaultSensorStatus.RUNNING
)
def prune_runs_on_success(context: dg.RunStatusSensorContext, storage: StorageResource):
    """After a run succeeds, its step outputs (and those of the failed runs it re-executed) are pruned."""
    pruned = prune_run_outputs(context.instance, storage)
    context.log.info(f"pruned step outputs of {len(pruned)} run(s): {', '.join(pruned) or 'none'}")


@dg.run_failure_sensor(monitor_all_code_locations=False, default_status=dg.DefaultSensorStatus.RUNNING)
def prune_runs_on_failure(context: dg.RunFailureSensorContext, storage: StorageResource):
    """After a run fails, only the newest ``keep_failed_runs`` failed runs keep their step outputs."""
    prune_run_outputs(context.instance, storage)
