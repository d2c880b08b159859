"""The one ``Definitions`` object of the eotrials code location."""

import dagster as dg

from assets import analyst, causal, debiasing, generalization, ingest, interpretation, representation, simulation
from pipelines.automation import (
    all_assets_job,
    analyst_job,
    evidence_job,
    map_job,
    new_imagery_sensor,
    trial_job,
    trial_tables_sensor,
    weekly_map_refresh,
    weekly_trials_refresh,
)
from pipelines.executors import executor
from pipelines.io_managers import io_managers
from pipelines.resources import ComputeResource, CrossFittingResource, StorageResource, StudySource
from pipelines.run_outputs import prune_runs_on_failure, prune_runs_on_success

ASSET_MODULES = [ingest, representation, causal, interpretation, generalization, simulation, debiasing, analyst]


def resources(storage: StorageResource, source: StudySource | None = None, compute: ComputeResource | None = None) -> dict:
    """Every resource the assets ask for, around one storage root (tests swap the root and the source)."""
    return {
        **io_managers(storage),
        "storage": storage,
        "source": source or StudySource(),
        "compute": compute or ComputeResource(device=dg.EnvVar("EOTRIALS_DEVICE").get_value("auto")),
        "cross_fitting": CrossFittingResource(),
    }


defs = dg.Definitions(
    assets=dg.load_assets_from_modules(ASSET_MODULES),
    asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
    jobs=[all_assets_job, map_job, trial_job, evidence_job, analyst_job],
    schedules=[weekly_map_refresh, weekly_trials_refresh],
    sensors=[new_imagery_sensor, trial_tables_sensor, prune_runs_on_success, prune_runs_on_failure],
    executor=executor(),
    resources=resources(StorageResource(root=dg.EnvVar("EOTRIALS_DATA").get_value("data"))),
)
