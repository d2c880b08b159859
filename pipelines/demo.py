"""``python -m pipelines.demo``: the demo as the team runs it, in this process: the shared map once,
then every trial in the trials folder as its own partition, then the analyst's database.

The trials are registered as the ``trial_tables_sensor`` would (its ``trial_requests``), so the UI
afterwards shows the same partitions the daemon would have added. ``--config-json`` takes run
config as ``dagster asset materialize`` does; each job gets the ops it has. With a ``source``
resource in it, the same command runs a user's own study (its trials folder, imagery, survey or none).
"""

import argparse
import json

import dagster as dg

from assets.partitions import trials
from pipelines.automation import trial_requests, trial_state, trials_folder
from pipelines.definitions import defs
from pipelines.resources import StudySource
from pipelines.run_outputs import prune_run_outputs


def job_config(job: dg.JobDefinition, config: dict) -> dict:
    """``config`` with only the ``ops`` entries that ``job`` has (a job refuses config for others)."""
    ops = {name: value for name, value in config.get("ops", {}).items() if job.graph.has_node_named(name)}
    return {**config, "ops": ops}


def execute(name: str, instance: dg.DagsterInstance, config: dict, partition_key: str | None = None) -> None:
    job = defs.resolve_job_def(name)
    job.execute_in_process(run_config=job_config(job, config), instance=instance, partition_key=partition_key)
    prune_run_outputs(instance, defs.resources["storage"])  # as the daemon's run-status sensors do


def study_source(config: dict) -> StudySource:
    """The run config's ``source`` resource (a user's own study), else the code location's (the demo)."""
    given = config.get("resources", {}).get("source", {}).get("config")
    return StudySource(**given) if given is not None else defs.resources["source"]


def run_demo(instance: dg.DagsterInstance, config: dict | None = None, only: list[str] | None = None) -> list[str]:
    """Materialize the map, register and run every trial (or ``only`` those), build the database;
    returns the trials run. Stops at the first failed run."""
    config = config or {}
    execute("map_job", instance, config)
    folder = trials_folder(study_source(config), defs.resources["storage"])
    state = trial_state(folder)
    new, _ = trial_requests(state, {}, set(instance.get_dynamic_partitions(trials.name)))
    instance.add_dynamic_partitions(trials.name, new)
    keys = [key for key in state if only is None or key in only]
    for key in keys:
        execute("trial_job", instance, config, partition_key=key)
    execute("analyst_job", instance, config)
    return keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-json", default="{}", help="run config (resources, ops) as JSON")
    parser.add_argument("--trial", action="append", help="run only this trial (repeatable); default every trial")
    args = parser.parse_args()
    with dg.DagsterInstance.get() as instance:
        print("trials run:", ", ".join(run_demo(instance, json.loads(args.config_json), args.trial)))


if __name__ == "__main__":
    main()
